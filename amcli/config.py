"""Typed run configs built from plain dicts (YAML), validated before any compute.

Every error names the offending key as a dotted path (``train.lr``, ``method.num_steps``), and an
unknown key lists the valid ones, so a typo fails at once instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from am.fields import FieldError, check_choice, check_int
from am.problems.benchmarks import PROBLEMS
from am.schedules import SCHEDULES
from am.train import TrainConfig
from baselines.registry import method_class

__all__ = [
    "ConfigError",
    "ProblemConfig",
    "ModelConfig",
    "EvalConfig",
    "RunConfig",
    "build_dataclass",
    "split_method",
    "parse_run_config",
    "run_config_to_dict",
]


class ConfigError(ValueError):
    """A config value or key is invalid; the message starts with the dotted key."""


@dataclass(frozen=True)
class ProblemConfig:
    """``name``: a ground-truth problem (:data:`am.problems.benchmarks.PROBLEMS`);
    ``reward_scale``: lambda; ``schedule``: the base's reference path."""

    name: str = "gmm1d_linear"
    reward_scale: float = 1.0
    schedule: str = "flow_matching"

    def __post_init__(self):
        if self.name not in PROBLEMS:
            raise FieldError("name", f"unknown problem {self.name!r}; valid: {sorted(PROBLEMS)}")
        if self.schedule not in SCHEDULES:
            raise FieldError(
                "schedule", f"unknown schedule {self.schedule!r}; valid: {sorted(SCHEDULES)}"
            )
        if not math.isfinite(self.reward_scale):
            raise FieldError(
                "reward_scale", f"reward_scale must be a finite number, got {self.reward_scale!r}"
            )


@dataclass(frozen=True)
class ModelConfig:
    """Residual MLP ``v_ft = v_base + MLP`` (zero-initialised last layer)."""

    hidden: int = 64
    depth: int = 3
    time_features: int = 4

    def __post_init__(self):
        check_int("hidden", self.hidden)
        check_int("depth", self.depth)
        check_int("time_features", self.time_features, minimum=0)


@dataclass(frozen=True)
class EvalConfig:
    """``num_samples`` per sampler; ``sampling_steps`` of the evaluation sampler (fine, so that
    its own discretisation error is small); ``samplers``: diffusions to sample the fine-tuned
    model with (``ode``, ``memoryless`` or a number); ``metric``: ``auto`` (``w1`` in 1-D,
    ``sliced_w1`` otherwise), ``w1``, ``sliced_w1`` or ``energy``; ``repeats``: independent
    pairs of ``num_samples``-sets averaged, both for the distance of each sampler's samples to the
    target (a fresh draw against a fresh target set each time) and for the noise floor (two
    target sets), so that their ratio compares like with like; ``floor_repeats``: pairs for the
    floor alone (``None``: ``repeats``). Why a separate count: the floor depends on the target
    and ``num_samples`` only and costs no model evaluation, and where one pair's distance is
    noisy its mean over a few pairs is too (1-D, 5000 samples: one pair's W1 has a standard
    deviation of a third of its mean, so a 5-pair floor is uncertain by about 15 %; README, "How
    to read a ratio")."""

    num_samples: int = 5000
    sampling_steps: int = 200
    samplers: tuple[str, ...] = ("ode", "memoryless")
    metric: str = "auto"
    seed: int = 12345
    repeats: int = 5
    floor_repeats: int | None = None

    def __post_init__(self):
        check_int("num_samples", self.num_samples, minimum=2)
        check_int("sampling_steps", self.sampling_steps)
        check_int("repeats", self.repeats)
        if self.floor_repeats is not None:
            check_int("floor_repeats", self.floor_repeats)
        check_choice("metric", self.metric, ("auto", "w1", "sliced_w1", "energy"))
        for s in self.samplers:
            if s not in ("ode", "memoryless"):
                try:
                    float(s)
                except ValueError:
                    raise FieldError(
                        "samplers", f"sampler must be 'ode', 'memoryless' or a number, got {s!r}"
                    ) from None


@dataclass(frozen=True)
class RunConfig:
    """One fine-tuning run: problem, method (name + its typed config), model, training, evaluation.
    In YAML ``method`` is a mapping ``{name: ..., <that method's config fields>}``; ``tag`` names
    the setting in tables and paths (the workflow's method tag; empty means the method name)."""

    _internal_fields: typing.ClassVar[tuple[str, ...]] = ("method_config",)

    problem: ProblemConfig = field(default_factory=ProblemConfig)
    method: str = "adjoint_matching"
    method_config: Any = None
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tag: str = ""

    def __post_init__(self):
        if not isinstance(self.tag, str) or (self.tag and not _TAG.fullmatch(self.tag)):
            raise FieldError(
                "tag", f"tag must match {_TAG.pattern} (it becomes a path), got {self.tag!r}"
            )


_TAG = re.compile(r"[A-Za-z0-9_.+-]+")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` against annotation ``tp``; raise :class:`ConfigError` naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None  # before any dataclass arm, which would read null as "all defaults"
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(arms) == 1 and dataclasses.is_dataclass(arms[0]):  # its error names the inner key
            return _check_type(value, arms[0], key)
        errors = []
        for arm in typing.get_args(tp):
            try:
                return _check_type(value, arm, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {tp}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} entries, got {len(value)}")
        return tuple(
            _check_type(v, a, f"{key}[{i}]")
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key)
    return value  # Any


def build_dataclass(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types; ``key`` is the dotted prefix."""
    if isinstance(data, cls):
        return data
    where = key or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    hidden = getattr(cls, "_internal_fields", ())
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in hidden]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {names}")
    kwargs = {}
    for name in names:
        if name in data:
            sub = f"{key}.{name}" if key else name
            kwargs[name] = _check_type(data[name], hints[name], sub)
    try:
        return cls(**kwargs)
    except FieldError as e:  # a field's own check (__post_init__) names the field
        raise ConfigError(f"{key}.{e.field}: {e}" if key else f"{e.field}: {e}") from None
    except (ValueError, TypeError) as e:  # a check across fields: the dataclass's key
        raise ConfigError(f"{where}: {e}") from None


def split_method(data: dict) -> tuple[str, Any, dict]:
    """``(name, method config, the rest)`` of a config mapping whose ``method`` is
    ``{name: <registry key>, <that method's config fields>}``; checked, keys named on error."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping, got {type(data).__name__}")
    data = dict(data)
    method = data.pop("method", None) or {}
    if not isinstance(method, dict):  # `method: adjoint_matching`: say how to write it
        raise ConfigError(
            f"method: expected a mapping such as {{name: {method}, num_steps: 40}}, got {method!r}"
        )
    method = dict(method)
    name = method.pop("name", "adjoint_matching")
    try:
        cls = method_class(name)
    except ValueError as e:
        raise ConfigError(f"method.name: {e}") from None
    return name, build_dataclass(cls.config_class, method, "method"), data


def parse_run_config(data: dict) -> RunConfig:
    """A validated :class:`RunConfig` from a plain dict. ``method`` is a mapping with ``name``
    (a registry key) and that method's config fields."""
    name, method_config, rest = split_method(data)
    base = build_dataclass(RunConfig, rest)
    return dataclasses.replace(base, method=name, method_config=method_config)


def run_config_to_dict(cfg: RunConfig) -> dict:
    """Inverse of :func:`parse_run_config` (YAML-ready plain types)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    out = plain(cfg)
    out.pop("method_config")
    out["method"] = {"name": cfg.method, **plain(cfg.method_config)}
    return out
