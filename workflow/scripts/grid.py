"""The run grid of the workflow: which runs exist and each run's config dict.

A run's config = ``defaults``, then ``overrides[problem]``, then the grid point (problem name,
method name, training diffusion, seed). Diffusion tags in paths: ``memoryless`` or ``sigma<value>``.
"""

from __future__ import annotations

import copy
import itertools

from amcli.config import ConfigError, parse_run_config

__all__ = ["diffusion_tag", "diffusion_value", "all_runs", "run_config_dict", "validate_grid"]


def diffusion_tag(spec) -> str:
    return "memoryless" if spec == "memoryless" else f"sigma{float(spec):g}"


def diffusion_value(tag: str):
    if tag == "memoryless":
        return "memoryless"
    if tag.startswith("sigma"):
        return float(tag[len("sigma") :])
    raise ValueError(f"bad diffusion tag {tag!r}: expected 'memoryless' or 'sigma<number>'")


def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _grid(config: dict) -> dict:
    if "grid" not in config:
        raise ConfigError("workflow config: missing key 'grid'")
    grid = config["grid"]
    for key in ("problems", "methods", "diffusions", "seeds"):
        if not isinstance(grid.get(key), list) or not grid[key]:
            raise ConfigError(f"grid.{key}: expected a non-empty list, got {grid.get(key)!r}")
    return grid


def all_runs(config: dict) -> list[dict]:
    grid = _grid(config)
    return [
        {"problem": p, "method": m, "diffusion": diffusion_tag(d), "seed": int(s)}
        for p, m, d, s in itertools.product(
            grid["problems"], grid["methods"], grid["diffusions"], grid["seeds"]
        )
    ]


def run_config_dict(config: dict, problem: str, method: str, diffusion: str, seed: int) -> dict:
    cfg = _merge(config.get("defaults", {}), (config.get("overrides") or {}).get(problem, {}))
    point = {
        "problem": {"name": problem},
        "method": {"name": method, "diffusion": diffusion_value(diffusion)},
        "train": {"seed": int(seed)},
    }
    return _merge(cfg, point)


def validate_grid(config: dict) -> None:
    """Parse every run's config; raises :class:`ConfigError` naming the run and the key."""
    for run in all_runs(config):
        try:
            parse_run_config(run_config_dict(config, **run))
        except ConfigError as e:
            raise ConfigError(f"run {run}: {e}") from None
