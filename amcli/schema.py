"""The workflow config's JSON schema, its typed parts generated from the config dataclasses.

One source of truth per config: the keys and types of ``defaults`` (:class:`RunConfig`'s
sections), of each method's section (its ``config_class``), of ``digits``
(:class:`amcli.digits.DigitsConfig`) and of ``t2i.methods`` come from the dataclasses, and
``workflow/schemas/config.schema.yaml`` holds only what has no dataclass (the grid, paths, the
figure's and the text-to-image runs' lists). Value checks (ranges, choices, checks across
fields) stay in the dataclasses, which name the key of what they refuse
(:mod:`am.fields`, :func:`amcli.config.build_dataclass`).

    python -m amcli.schema > schema.json     # the whole schema Snakemake validates with
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

__all__ = ["dataclass_schema", "type_schema", "workflow_schema", "write_workflow_schema"]

STATIC = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

# YAML 1.1 reads 3e-4 (no dot) as a string; amcli.config takes it as the number it means
_FLOAT_STRING = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def type_schema(tp: Any) -> dict | None:
    """The JSON schema of annotation ``tp``, or ``None`` where YAML cannot express a value of
    it (a Python object, such as an :class:`am.diffusion.Diffusion`)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = [s for s in map(type_schema, typing.get_args(tp)) if s is not None]
        return {"anyOf": arms} if arms else None
    if tp is type(None):
        return {"type": "null"}
    simple = {bool: "boolean", int: "integer", str: "string", dict: "object"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is float:
        return {"anyOf": [{"type": "number"}, {"type": "string", "pattern": _FLOAT_STRING}]}
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0]) or {}}
        items = [type_schema(a) or {} for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items),
                "maxItems": len(items)}  # fmt: skip
    if origin is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    if tp is Any:
        return {}
    return None


def dataclass_schema(cls: type) -> dict:
    """An object with ``cls``'s init fields (those ``build_dataclass`` reads) as properties and
    no other key (or null: all defaults)."""
    hints = typing.get_type_hints(cls)
    hidden = getattr(cls, "_internal_fields", ())
    props = {
        f.name: type_schema(hints[f.name]) or {}
        for f in dataclasses.fields(cls)
        if f.init and f.name not in hidden
    }
    return {"description": f"the fields of {cls.__module__}.{cls.__qualname__}",
            "type": ["object", "null"], "additionalProperties": False,
            "properties": props}  # fmt: skip


def _methods() -> dict[str, dict]:
    from baselines.registry import METHODS

    return {name: dataclass_schema(cls.config_class) for name, cls in METHODS.items()}


def workflow_schema(static: Path = STATIC) -> dict:
    """The static schema with its typed parts filled in from the dataclasses."""
    from am.train import TrainConfig
    from amcli.config import EvalConfig, ModelConfig, ProblemConfig
    from amcli.digits import DigitsConfig

    schema = yaml.safe_load(Path(static).read_text())
    props = schema["properties"]
    sections = {"problem": ProblemConfig, "model": ModelConfig, "train": TrainConfig,
                "eval": EvalConfig}  # fmt: skip
    run = {k: dataclass_schema(c) for k, c in sections.items()}
    props["defaults"]["properties"] = run
    methods = _methods()
    props["methods"]["properties"] = methods
    props["methods"]["additionalProperties"] = False  # a registry key, or a typo
    digits = dataclass_schema(DigitsConfig)
    digits["properties"]["method_configs"] = {
        "type": "object", "additionalProperties": False, "properties": methods,
    }  # fmt: skip
    props["digits"] = digits
    t2i_methods = props["t2i"]["properties"]["methods"]
    t2i_methods["properties"] = methods
    t2i_methods["additionalProperties"] = False
    return schema


def write_workflow_schema(path: str | Path) -> str:
    """Write :func:`workflow_schema` to ``path`` as JSON (for ``snakemake.utils.validate``,
    which reads a file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(workflow_schema(), indent=1)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


if __name__ == "__main__":
    json.dump(workflow_schema(), sys.stdout, indent=1)
    print()
