"""The run grid of the workflow: which runs exist and each run's config dict. The workflow
(workflow/rules/common.smk) and the tests import it as the installed package's module.

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
scale, method tag, seed). Paths: ``<runs_dir>/<problem>/lam<scale>/<tag>/seed<seed>``, where the
top-level ``runs_dir`` defaults to ``runs``: a second config (the smoke grid, the full reproduction)
names its own, so its runs never overwrite the default reproduction's (a run whose config
changed restarts from scratch).

The ``figure2`` section (Theorem 1) is its own experiment: ``{problems, methods, reward_scale,
seed, overrides}``. Its runs take the grid's settings for their point, then
``figure2.overrides[problem]`` (e.g. a longer budget for the 1-D problem, which the method
comparison must not get: there every method has the same budget). A Theorem 1 run whose config
equals the grid run at the same point *is* that run (trained once); any other lives under
``<runs_dir>/figure2/<problem>/lam<scale>/<tag>/seed<seed>``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json

from amcli.config import ConfigError, parse_run_config
from baselines.registry import METHODS

__all__ = [
    "lam_tag",
    "method_tags",
    "problem_entries",
    "problem_names",
    "runs_dir",
    "all_runs",
    "figure2_runs",
    "run_configs",
    "run_config_dict",
    "run_dirs",
    "validate_grid",
    "floor_file",
]

_ENTRY_KEYS = ("name", "methods", "reward_scales")
_FIGURE2_KEYS = ("problems", "methods", "reward_scale", "seed", "overrides")
RUN_DIR = "{runs}/{problem}/lam{lam}/{method}/seed{seed}"
FIGURE2_DIR = "{runs}/figure2/{problem}/lam{lam}/{method}/seed{seed}"


def runs_dir(config: dict) -> str:
    """The top-level ``runs_dir`` (default ``runs``): a relative path inside the project."""
    value = config.get("runs_dir", "runs")
    if (
        not isinstance(value, str)
        or not value.strip("/")
        or value.startswith("/")
        or ".." in value.split("/")
        or any(c in value for c in "{}*?[] ")
    ):
        raise ConfigError(
            f"runs_dir: expected a relative path inside the project (no '..', spaces or "
            f"wildcards), got {value!r}"
        )
    return value.rstrip("/")


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
    """The comparison grid's runs: ``[{problem, lam, method, seed, dir}]`` in grid order (none
    in a config without a ``grid``, e.g. a text-to-image-only one)."""
    if "grid" not in config:
        return []
    seeds = _grid(config)["seeds"]
    runs = [
        {"problem": e["name"], "lam": lam_tag(lam), "method": m, "seed": int(s)}
        for e in problem_entries(config)
        for lam, m, s in itertools.product(e["reward_scales"], e["methods"], seeds)
    ]
    top = runs_dir(config)
    return [{**r, "dir": RUN_DIR.format(runs=top, **r)} for r in runs]


def _figure2(config: dict) -> dict:
    fig = config.get("figure2")
    if not isinstance(fig, dict):
        raise ConfigError(f"figure2: expected a mapping with keys {list(_FIGURE2_KEYS)}")
    for key in fig:
        if key not in _FIGURE2_KEYS:
            raise ConfigError(f"figure2.{key}: unknown key; valid: {list(_FIGURE2_KEYS)}")
    for key in ("problems", "methods"):
        if not isinstance(fig.get(key), list) or not fig[key]:
            raise ConfigError(f"figure2.{key}: expected a non-empty list, got {fig.get(key)!r}")
    tags = method_tags(config)
    for tag in fig["methods"]:
        if tag not in tags:
            raise ConfigError(f"figure2.methods: unknown method tag {tag!r}; valid: {list(tags)}")
    overrides = fig.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"figure2.overrides: expected a mapping, got {overrides!r}")
    for problem in overrides:
        if problem not in fig["problems"]:
            raise ConfigError(f"figure2.overrides.{problem}: not one of figure2.problems")
    return fig


def _figure2_config_dict(config: dict, problem: str, lam: str, method: str, seed: int) -> dict:
    over = (_figure2(config).get("overrides") or {}).get(problem) or {}
    return _merge(run_config_dict(config, problem, lam, method, seed), over)


def figure2_runs(config: dict, problem: str | None = None) -> list[dict]:
    """The Theorem 1 runs ``[{problem, lam, method, seed, dir}]``: per problem, the figure2 tags
    in their order; ``dir`` is the grid run's when the two configs are equal."""
    if "grid" not in config and "figure2" not in config:
        return []
    fig = _figure2(config)
    lam, seed = lam_tag(fig.get("reward_scale", 1.0)), int(fig.get("seed", 0))
    grid = {(r["problem"], r["lam"], r["method"], r["seed"]): r["dir"] for r in all_runs(config)}
    runs = []
    for p in fig["problems"]:
        if problem is not None and p != problem:
            continue
        for m in fig["methods"]:
            point = {"problem": p, "lam": lam, "method": m, "seed": seed}
            shared = grid.get((p, lam, m, seed))
            same = shared is not None and _figure2_config_dict(
                config, p, lam, m, seed
            ) == run_config_dict(config, p, lam, m, seed)
            own = FIGURE2_DIR.format(runs=runs_dir(config), **point)
            runs.append({**point, "dir": shared if same else own})
    return runs


def run_configs(config: dict) -> dict[str, dict]:
    """Every run directory of the workflow (grid, then Theorem 1) -> its run config dict."""
    out = {
        r["dir"]: run_config_dict(config, r["problem"], r["lam"], r["method"], r["seed"])
        for r in all_runs(config)
    }
    for r in figure2_runs(config):
        out.setdefault(
            r["dir"], _figure2_config_dict(config, r["problem"], r["lam"], r["method"], r["seed"])
        )
    return out


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


def run_dirs(runs: list[dict]) -> list[str]:
    """The run directories of ``runs`` (records of :func:`all_runs` / :func:`figure2_runs`)."""
    return [r["dir"] for r in runs]


def validate_grid(config: dict) -> None:
    """Parse every run's config; raises :class:`ConfigError` naming the run and the key."""
    for run_dir, cfg in run_configs(config).items():
        try:
            parse_run_config(cfg)
        except ConfigError as e:
            raise ConfigError(f"run {run_dir}: {e}") from None


def estimated_cost(cfg: dict) -> float:
    """A run's training cost up to a constant: iterations x batch x rollout steps x width^2 (the
    network's share per row; at least 64^2, below which a call's fixed overhead dominates). Only
    used to order the jobs, so the constant does not matter."""
    run = parse_run_config(cfg)
    steps = getattr(run.method_config, "num_steps", 40)
    return run.train.iterations * run.train.batch_size * steps * max(run.model.hidden, 64) ** 2


def long_runs(config: dict, factor: float = 3.0) -> list[str]:
    """Run directories whose :func:`estimated_cost` is at least ``factor`` times the median run's.
    Why: Snakemake starts ready jobs of equal priority in no particular order, and a long run
    started last sets the wall time (the default config's three 4500-iteration 1-D runs among
    800-iteration ones); the workflow gives these a higher priority so they start first."""
    costs = {d: estimated_cost(cfg) for d, cfg in run_configs(config).items()}
    if not costs:
        return []
    median = sorted(costs.values())[len(costs) // 2]
    return [d for d, c in costs.items() if c >= factor * median]


def floor_file(config: dict, cfg: dict) -> tuple[str, dict]:
    """Where the noise floor of the run with config dict ``cfg`` goes, and its key
    (:func:`amcli.run.floor_key`): ``<runs_dir>/floors/<problem>/lam<scale>/<digest>.json``.
    Runs with the same target and evaluation settings (every method on one problem) share it:
    it is computed once (rule ``noise_floor``) instead of once per run."""
    from amcli.run import floor_key

    key = floor_key(parse_run_config(cfg))
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    lam = lam_tag(key["reward_scale"])
    return f"{runs_dir(config)}/floors/{key['problem']}/lam{lam}/{digest}.json", key
