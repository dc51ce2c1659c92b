"""The digits benchmark from the command line (the workflow's ``digits`` rules call these).

    python -m amcli.digits pretrain  CONFIG.yaml
    python -m amcli.digits reference CONFIG.yaml --out reference.json
    python -m amcli.digits base      CONFIG.yaml --guidance W --out base_w.json
    python -m amcli.digits run       CONFIG.yaml --method M --reward-scale L --seed S --run-dir D
                                     [--iterations N]   (a convergence run: another budget)

``CONFIG.yaml`` is the workflow config's ``digits`` section (:class:`DigitsConfig`), validated
before any compute; every error names its key (``digits.train.lr``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from am.train import TrainConfig
from amcli.config import ConfigError, build_dataclass
from amcli.run import atomic_write_text
from baselines.registry import method_class

__all__ = ["DigitsConfig", "parse_digits_config", "training_grid", "main"]


@dataclass(frozen=True)
class DigitsPretrain:
    """The base model's and the classifiers' training (:class:`PretrainConfig`)."""

    flow_steps: int = 1000
    flow_batch: int = 128
    channels: tuple[int, int] = (16, 32)
    classifier_steps: int = 600


@dataclass(frozen=True)
class DigitsEval:
    """``per_class`` generations per class, ``num_steps`` sampling steps on the uniform grid with
    ``diffusion`` (``memoryless``: the process whose marginal Adjoint Matching tilts; ``ode``);
    the reference uses ``reference_per_class`` base samples per class from the same sampler, so
    that its target is the tilt of the sampler the comparison uses."""

    per_class: int = 200
    num_steps: int = 10
    diffusion: str = "memoryless"
    reference_per_class: int = 2000


@dataclass(frozen=True)
class DigitsConvergence:
    """``methods`` are also trained with each budget of ``iterations`` (below ``train``'s, with
    the same schedule spanning each run), for the figure of each statistic's distance to the
    reference against the budget; the grid's own runs are the last point."""

    methods: tuple[str, ...] = ()
    iterations: tuple[int, ...] = ()


@dataclass(frozen=True)
class DigitsConfig:
    """One digits experiment: ``methods`` x ``reward_scales`` x ``seeds`` fine-tuning runs with
    the same ``train`` budget, the base at ``guidance`` weights, and the reference."""

    cache: str = "runs_digits/assets"
    reward_temperature: float = 10.0
    methods: tuple[str, ...] = ("adjoint_matching", "draft")
    reward_scales: tuple[float, ...] = (1.0, 10.0)
    seeds: tuple[int, ...] = (0,)
    guidance: tuple[float, ...] = (2.0, 4.0)
    method_configs: dict = field(default_factory=dict)
    # methods declared to train on another grid than the evaluation's (checked otherwise)
    other_grids: tuple[str, ...] = ()
    train: TrainConfig = TrainConfig(iterations=50, batch_size=40, lr=3e-4)
    pretrain: DigitsPretrain = DigitsPretrain()
    eval: DigitsEval = DigitsEval()
    convergence: DigitsConvergence = DigitsConvergence()


def training_grid(method: str, overrides: dict) -> tuple[int, float]:
    """``(K, warp)`` of the grid ``method`` trains on under ``overrides`` (over its recommended
    config, as :func:`am.finetune` builds it): ``num_steps`` and ``grid_warp`` (0: uniform)."""
    fields = {**vars(method_class(method).recommended_config()), **overrides}
    return int(fields["num_steps"]), float(fields.get("grid_warp", 0.0))


def parse_digits_config(data: dict, key: str = "digits") -> DigitsConfig:
    """A validated :class:`DigitsConfig`; each method's config is built (and checked) too."""
    cfg = build_dataclass(DigitsConfig, data, key)
    for name in cfg.methods:
        try:
            cls = method_class(name)
        except ValueError as e:
            raise ConfigError(f"{key}.methods: {e}") from None
        build_dataclass(
            cls.config_class, cfg.method_configs.get(name, {}), f"{key}.method_configs.{name}"
        )
    _within_methods(cfg, cfg.method_configs, f"{key}.method_configs", key)
    if cfg.eval.diffusion not in ("memoryless", "ode"):
        raise ConfigError(
            f"{key}.eval.diffusion: 'memoryless' or 'ode', got {cfg.eval.diffusion!r}"
        )
    _check_grids(cfg, key)
    _check_convergence(cfg, key)
    return cfg


def _within_methods(cfg: DigitsConfig, names, where: str, key: str) -> None:
    unknown = sorted(set(names) - set(cfg.methods))
    if unknown:
        raise ConfigError(f"{where}: {unknown} are not in {key}.methods")


def _check_grids(cfg: DigitsConfig, key: str) -> None:
    """One discretisation per comparison: every method trains on the grid the evaluation (and
    the reference) samples on, unless declared in ``other_grids``."""
    _within_methods(cfg, cfg.other_grids, f"{key}.other_grids", key)
    wanted = (cfg.eval.num_steps, 0.0)
    for name in cfg.methods:
        got = training_grid(name, cfg.method_configs.get(name, {}))
        if name not in cfg.other_grids and got != wanted:
            raise ConfigError(
                f"{key}.method_configs.{name}: trains on K = {got[0]}, grid_warp {got[1]:g}, "
                f"but the evaluation samples on K = {wanted[0]} (uniform): set num_steps "
                f"{wanted[0]} and grid_warp 0, or declare it in {key}.other_grids"
            )


def _check_convergence(cfg: DigitsConfig, key: str) -> None:
    _within_methods(cfg, cfg.convergence.methods, f"{key}.convergence.methods", key)
    budgets = list(cfg.convergence.iterations)
    if budgets != sorted(set(budgets)) or any(not 0 < n < cfg.train.iterations for n in budgets):
        raise ConfigError(
            f"{key}.convergence.iterations: increasing budgets between 0 and "
            f"{key}.train.iterations ({cfg.train.iterations}), got {budgets}"
        )


def _assets(cfg: DigitsConfig):
    from am.problems.digits_pretrain import PretrainConfig, digits_assets

    pre = PretrainConfig(**dataclasses.asdict(cfg.pretrain))
    return digits_assets(cfg.cache, pre, reward_temperature=cfg.reward_temperature)


def _generate(cfg: DigitsConfig, model, seed: int, per_class: int | None = None):
    from am.problems.digits_eval import generate

    per_class = per_class or cfg.eval.per_class
    diffusion = cfg.eval.diffusion
    return generate(
        model, per_class=per_class, num_steps=cfg.eval.num_steps, diffusion=diffusion, seed=seed
    )


def reference(cfg: DigitsConfig) -> list[dict]:
    """The importance-sampling reference of every ``reward_scale`` (one set of base samples)."""
    from am.problems.digits_eval import tilted_reference

    assets = _assets(cfg)
    x, labels = _generate(cfg, assets.base, seed=12345, per_class=cfg.eval.reference_per_class)
    return [tilted_reference(x, labels, assets, lam) for lam in cfg.reward_scales]


def base_scores(cfg: DigitsConfig, guidance: float) -> dict:
    """The base model's scores, classifier-free guided at ``guidance`` (1 = the base itself)."""
    from am.models import GuidedVelocity
    from am.problems.digits_eval import scores

    assets = _assets(cfg)
    model = GuidedVelocity(assets.base, guidance, torch.tensor([10]))
    x, labels = _generate(cfg, model, seed=0)
    return {"guidance": guidance, **scores(x, labels, assets)}


def run(
    cfg: DigitsConfig,
    *,
    method: str,
    reward_scale: float,
    seed: int,
    run_dir: Path,
    iterations: int | None = None,
) -> dict:
    """Fine-tune (resuming from ``run_dir``), save ``model.safetensors``, score it, and write
    ``eval.json`` and ``samples.pt`` (8 generations per class for the image grids).
    ``iterations``: another budget than ``cfg.train``'s (the convergence runs).

    Through :func:`am.finetune`, which owns the run directory, as for every experiment family:
    a directory trained under other settings (the digits config was edited: the budget, the
    method's config, the base's pretraining or the reward's temperature) starts afresh, and a
    run that diverges is scored at its last good checkpoint with ``status: diverged`` (the
    tables leave it out of the means and count it)."""
    if iterations is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, iterations=iterations))
    from am.conditions import ClassLabels
    from am.problems.digits_eval import scores
    from am.schedules import FlowMatchingSchedule
    from baselines import finetune

    assets = _assets(cfg)
    torch.manual_seed(seed)
    train = dataclasses.replace(cfg.train, seed=seed)
    row = {
        "method": method,
        "reward_scale": reward_scale,
        "seed": seed,
        "iterations": train.iterations,
    }
    result = finetune(
        assets.base,
        assets.reward,
        method=method,
        config=cfg.method_configs.get(method, {}),
        schedule=FlowMatchingSchedule(),
        sample_shape=(1, 8, 8),
        reward_scale=reward_scale,
        conditions=ClassLabels(10),
        null_condition=torch.tensor([10]),  # the UNet's "no class" (guided rollouts)
        train=train,
        run_dir=run_dir,
        settings={"pretrain": cfg.pretrain, "reward_temperature": cfg.reward_temperature},
        on_change="restart",
        derived=("model.safetensors", "eval.json", "samples.pt"),
        on_divergence="last_good",
        progress=False,
    )
    if result.status == "diverged":
        row = {**row, "diverged_at": result.diverged_at, "exported_iteration": result.iterations}
    model = result.model.eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(run_dir / "model.safetensors"))
    x, labels = _generate(cfg, model, seed=1000 + seed)
    k = min(8, cfg.eval.per_class)  # the first k generations of each class, for the grids
    grid = x.reshape(10, -1, 1, 8, 8)[:, :k].clone()
    torch.save({"images": grid, "labels": torch.arange(10)}, run_dir / "samples.pt")
    return {**row, "status": result.status, "seconds": result.seconds, **scores(x, labels, assets)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m amcli.digits", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("pretrain", "reference", "base", "run"):
        p = sub.add_parser(name)
        p.add_argument("config", help="the digits section as YAML")
        if name in ("reference", "base"):
            p.add_argument("--out", required=True)
        if name == "base":
            p.add_argument("--guidance", type=float, default=1.0)
        if name == "run":
            p.add_argument("--method", required=True)
            p.add_argument("--reward-scale", type=float, required=True)
            p.add_argument("--seed", type=int, required=True)
            p.add_argument("--run-dir", required=True)
            p.add_argument("--iterations", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        cfg = parse_digits_config(yaml.safe_load(Path(args.config).read_text()) or {})
    except ConfigError as e:
        print(f"invalid config {args.config}: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    if args.command == "pretrain":
        print(json.dumps(_assets(cfg).accuracy, indent=1))
        return 0
    if args.command == "reference":
        out, result = Path(args.out), reference(cfg)
    elif args.command == "base":
        out, result = Path(args.out), base_scores(cfg, args.guidance)
    else:
        run_dir = Path(args.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        out = run_dir / "eval.json"
        result = run(
            cfg,
            method=args.method,
            reward_scale=args.reward_scale,
            seed=args.seed,
            run_dir=run_dir,
            iterations=args.iterations,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
