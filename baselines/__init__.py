"""Fine-tuning methods behind one registry.

``METHODS`` maps a method name (the name used in configs and in the workflow) to its class.
A method class has a typed frozen config dataclass (``config_class``) and turns rollouts into a
loss (:class:`am.methods.Method`). Adjoint Matching itself is registered here too. ``am/``
never imports this package.
"""

from baselines.registry import METHODS, finetune, make_method

__all__ = ["METHODS", "finetune", "make_method"]
