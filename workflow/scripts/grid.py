"""The run grid of the workflow: which runs exist and each run's config dict.

Methods are *tags*. ``grid.methods: all`` means every key of ``baselines.registry.METHODS`` (so a
newly registered method joins the grid with no workflow edit) followed by every ``variants`` tag;
a list selects tags explicitly. A tag's method settings: ``methods[<registry key>]`` for a plain
key, or the ``variants[<tag>]`` mapping ``{name: <registry key>, <config fields>}``. Either may
hold a ``train`` mapping: training settings for that tag only (e.g. a paper's learning rate or
gradient clipping), applied over ``defaults.train`` and the problem's overrides.

An entry of ``grid.problems`` is a problem name, or a mapping ``{name, methods, reward_scales}``
whose optional lists replace the grid-wide ones for that problem (e.g. a problem that only runs
the Theorem 1 tags).

A run's config = ``defaults``, then ``overrides[problem]``, then the grid point (problem, reward
scale, method tag, seed). Paths: ``runs/<problem>/lam<scale>/<tag>/seed<seed>``.
"""

from __future__ import annotations

import copy
import itertools

from amcli.config import ConfigError, parse_run_config
from baselines.registry import METHODS

__all__ = [
    "lam_tag",
    "method_tags",
    "problem_entries",
    "problem_names",
    "all_runs",
    "run_config_dict",
    "validate_grid",
]

_ENTRY_KEYS = ("name", "methods", "reward_scales")


def lam_tag(scale) -> str:
    return f"{float(scale):g}"


def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _grid(config: dict) -> dict:
    if "grid" not in config:
        raise ConfigError("workflow config: missing key 'grid'")
    grid = config["grid"]
    for key in ("problems", "reward_scales", "seeds"):
        if not isinstance(grid.get(key), list) or not grid[key]:
            raise ConfigError(f"grid.{key}: expected a non-empty list, got {grid.get(key)!r}")
    methods = grid.get("methods")
    if methods != "all" and (not isinstance(methods, list) or not methods):
        raise ConfigError(f"grid.methods: expected 'all' or a non-empty list, got {methods!r}")
    return grid


def method_tags(config: dict) -> dict[str, dict]:
    """``tag -> {name: <registry key>, <config fields>}`` for every tag the grid may use."""
    settings = config.get("methods") or {}
    for key in settings:
        if key not in METHODS:
            raise ConfigError(f"methods.{key}: not a registered method; valid: {sorted(METHODS)}")
    tags = {key: {"name": key, **(settings.get(key) or {})} for key in METHODS}
    for tag, spec in (config.get("variants") or {}).items():
        if tag in tags:
            raise ConfigError(f"variants.{tag}: clashes with a registered method name")
        if not isinstance(spec, dict) or spec.get("name") not in METHODS:
            raise ConfigError(
                f"variants.{tag}.name: expected a registered method, one of {sorted(METHODS)}"
            )
        tags[tag] = dict(spec)
    return tags


def _selected_tags(config: dict) -> list[str]:
    grid, tags = _grid(config), method_tags(config)
    if grid["methods"] == "all":
        return list(tags)
    for tag in grid["methods"]:
        if tag not in tags:
            raise ConfigError(f"grid.methods: unknown method tag {tag!r}; valid: {list(tags)}")
    return list(grid["methods"])


def problem_entries(config: dict) -> list[dict]:
    """``grid.problems`` as ``[{name, methods, reward_scales}]`` with the grid-wide lists filled in."""
    grid, tags = _grid(config), method_tags(config)
    entries = []
    for i, item in enumerate(grid["problems"]):
        entry = {"name": item} if isinstance(item, str) else item
        where = f"grid.problems[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: expected a problem name or a mapping with 'name'")
        for key in entry:
            if key not in _ENTRY_KEYS:
                raise ConfigError(f"{where}.{key}: unknown key; valid: {list(_ENTRY_KEYS)}")
        for key in ("methods", "reward_scales"):
            if key in entry and (not isinstance(entry[key], list) or not entry[key]):
                raise ConfigError(f"{where}.{key}: expected a non-empty list, got {entry[key]!r}")
        for tag in entry.get("methods", []):
            if tag not in tags:
                raise ConfigError(
                    f"{where}.methods: unknown method tag {tag!r}; valid: {list(tags)}"
                )
        entries.append(
            {
                "name": entry["name"],
                "methods": list(entry.get("methods", _selected_tags(config))),
                "reward_scales": list(entry.get("reward_scales", grid["reward_scales"])),
            }
        )
    return entries


def problem_names(config: dict) -> list[str]:
    return [e["name"] for e in problem_entries(config)]


def all_runs(config: dict) -> list[dict]:
    seeds = _grid(config)["seeds"]
    return [
        {"problem": e["name"], "lam": lam_tag(lam), "method": m, "seed": int(s)}
        for e in problem_entries(config)
        for lam, m, s in itertools.product(e["reward_scales"], e["methods"], seeds)
    ]


def run_config_dict(config: dict, problem: str, lam: str, method: str, seed: int) -> dict:
    cfg = _merge(config.get("defaults", {}), (config.get("overrides") or {}).get(problem, {}))
    spec = dict(method_tags(config)[method])
    train = spec.pop("train", None) or {}
    if not isinstance(train, dict):
        raise ConfigError(f"method tag {method}: train must be a mapping, got {train!r}")
    point = {
        "problem": {"name": problem, "reward_scale": float(lam)},
        "method": spec,
        "train": {**train, "seed": int(seed)},
        "tag": method,
    }
    return _merge(cfg, point)


def validate_grid(config: dict) -> None:
    """Parse every run's config; raises :class:`ConfigError` naming the run and the key."""
    for run in all_runs(config):
        try:
            parse_run_config(run_config_dict(config, **run))
        except ConfigError as e:
            raise ConfigError(f"run {run}: {e}") from None
    fig = config.get("figure2") or {}
    for tag in fig.get("methods", []):
        if tag not in _selected_tags(config):
            raise ConfigError(f"figure2.methods: {tag!r} is not in the grid's methods")
