# The config, checked before any job, and the names every rule file uses (no rules here).
import os
import re
from pathlib import Path

from snakemake.utils import validate

ROOT = Path(workflow.current_basedir).parents[1]  # this file is workflow/rules/common.smk

from amcli.schema import write_workflow_schema
from amcli.grid import (
    all_runs,
    figure2_runs,
    floor_file,
    lam_tag,
    long_runs,
    run_configs,
    run_dirs,
    runs_dir,
    validate_grid,
)

# The default config applies only when no --configfile is given: a config file passed on the
# command line replaces it as a whole (Snakemake would otherwise merge the two, so keys of the
# default grid, e.g. its per-problem overrides, would leak into a smaller grid). Single keys
# given with --config key=value still apply on top of the default.
if not workflow.configfiles:
    import yaml

    _cli = dict(config)
    config.clear()
    config.update(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    config.update(_cli)

# the schema's typed parts (run sections, each method's fields, digits) are generated from the
# config dataclasses (amcli.schema); Snakemake's validate reads a file, so it is written first
validate(config, write_workflow_schema(Path(".snakemake").resolve() / "am-config.schema.json"))
validate_grid(config)
RESULTS = config.get("results_dir", "results")
# every run directory (comparison grid, then the Theorem 1 runs it does not already hold) -> config
RUN_CONFIGS = run_configs(config)
RUNS = runs_dir(config)
# every run's noise-floor file, and each floor's key (runs on one problem share a floor)
FLOOR_OF, FLOORS = {}, {}
for _d, _cfg in RUN_CONFIGS.items():
    FLOOR_OF[_d], _key = floor_file(config, _cfg)
    FLOORS[FLOOR_OF[_d]] = _key
RUN_DIR = os.path.join(RUNS, "{run}")
ENV = os.path.join(ROOT, "workflow", "envs", "am.yaml")  # documents the software of every rule
# problems of the Theorem 1 experiment, in its order: one figure2_<problem> plot each
FIG2_PROBLEMS = list(dict.fromkeys(r["problem"] for r in figure2_runs(config)))
# The long runs (amcli/grid.py: long_runs) go first: the same job under another rule
# name with a higher priority, since a priority cannot depend on the wildcards.
LONG_RUNS = [d[len(RUNS) + 1 :] for d in long_runs(config)]
# the environment of the rules that load scorer weights: a smoke run's tiny random weights,
# unless AM_WEIGHTS is set (then the user's weights are used)
SCORE_ENV = (
    "AM_WEIGHTS=${AM_WEIGHTS:-"
    + os.path.abspath(os.path.join(RUNS, "t2i", "tiny_weights"))
    + "} "
    if (config.get("t2i") or {}).get("tiny")
    else ""
)


wildcard_constraints:
    run=r"(?!digits/).+/seed\d+",  # <runs_dir>/digits/ belongs to workflow/rules/digits.smk
