"""The text-to-image runs of the workflow config's ``t2i`` section (workflow/rules/t2i.smk)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def t2i_run_config(t2i: dict, method: str, tiny_model: str | None = None, *, root: Path) -> dict:
    """One method's run config (``python -m amcli.t2i``): the file ``t2i["config"]`` with that
    method's section, the tiny model's path when one is built, and the prompt files (relative to
    the config file, as ``python -m amcli.t2i`` reads them) made absolute: the run config is
    written elsewhere, and a cluster job may start anywhere. ``t2i["config"]`` is found from the
    working directory, else from ``root`` (the project's checkout)."""
    path = Path(t2i["config"])
    path = path if path.is_file() else Path(root) / path
    data = yaml.safe_load(path.read_text())
    data["method"] = {"name": method, **(t2i["methods"][method] or {})}
    if tiny_model is not None:
        data["model"] = {**data.get("model", {}), "path": os.path.abspath(tiny_model)}
    for key in ("train", "eval"):
        data["prompts"][key] = str((path.parent / data["prompts"][key]).resolve())
    return data
