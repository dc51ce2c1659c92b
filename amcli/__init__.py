"""The command-line edge: YAML -> typed configs -> registry -> trainer/evaluation.

Dependency direction: ``workflow -> amcli -> baselines -> am``.
"""
