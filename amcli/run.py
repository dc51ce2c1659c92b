"""Fine-tune and evaluate one ground-truth run; the functions the CLI and the workflow call.

Run directory layout::

    run_dir/config.yaml        the resolved, validated config
    run_dir/checkpoint.pt      resumable training state (weights_only loadable)
    run_dir/metrics.jsonl      per-iteration metrics
    run_dir/model.safetensors  the fine-tuned model (written last, atomically)
    run_dir/status.json        finished, or diverged (iteration, message, iteration exported)
    run_dir/eval.json          distances to the exact target, noise floor, rewards
    run_dir/samples.npz        samples for plots (target, base, each sampler)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from am.api import finetune as am_finetune
from am.diffusion import make_diffusion
from am.methods import FineTuningProblem
from am.metrics.distances import (
    diversity,
    noise_floor_pairs,
    ratio_standard_error,
    sample_distance,
)
from am.models import ResidualVelocity, TimeMLP
from am.problems.benchmarks import GroundTruth, make_problem
from am.schedules import make_schedule
from am.sde import sample
from am.train import Trainer
from amcli.config import RunConfig, run_config_to_dict
from baselines.registry import make_method, method_class

__all__ = ["build_run", "finetune", "evaluate", "atomic_write_text"]

log = logging.getLogger(__name__)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_savefig(fig, path: str | Path, **kwargs) -> None:
    """``fig.savefig`` through a temporary file in the same folder, then a rename (a killed job
    leaves no half-written figure). PDFs carry no creation date, so that a figure regenerated
    from the same numbers is the same file (``git status`` shows only real changes)."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # keep the suffix: it sets the format
    meta = {"CreationDate": None} if path.suffix == ".pdf" else None
    fig.savefig(tmp, metadata=meta, **kwargs)
    os.replace(tmp, path)


def build_model(cfg: RunConfig) -> tuple[GroundTruth, ResidualVelocity]:
    """Problem and fine-tunable model (``v_base + zero-initialised MLP``) of a run."""
    torch.manual_seed(cfg.train.seed)
    gt = make_problem(
        cfg.problem.name, make_schedule(cfg.problem.schedule), cfg.problem.reward_scale
    )
    gt.velocity.requires_grad_(False)
    net = TimeMLP(
        gt.dim, cfg.model.hidden, cfg.model.depth, cfg.model.time_features, zero_init=True
    )
    return gt, ResidualVelocity(gt.velocity, net)


def build_run(cfg: RunConfig) -> tuple[GroundTruth, torch.nn.Module, Trainer]:
    """Problem, fine-tunable model and trainer of a run (for benchmarks and tests that step a
    trainer themselves; :func:`finetune` goes through :func:`am.finetune`)."""
    gt, model = build_model(cfg)
    problem = FineTuningProblem(
        base=gt.velocity,
        reward=gt.reward,
        schedule=gt.schedule,
        sample_shape=(gt.dim,),
        reward_scale=cfg.problem.reward_scale,
    )
    method = make_method(cfg.method, cfg.method_config, problem)
    return gt, model, Trainer(method, model, cfg.train)


def finetune(cfg: RunConfig, run_dir: str | Path, *, progress: bool = True) -> Path:
    """Train (resuming from ``run_dir/checkpoint.pt`` if present); returns the model path.

    Through :func:`am.finetune`, which owns the run directory: a directory trained under other
    settings (the workflow's grid was edited; ``eval`` does not count, it is rerun by its own
    step) starts afresh. A run that diverges (:class:`am.train.NonFiniteError`: reward
    maximisers do on unbounded rewards) does not fail: the last good checkpoint is exported
    (the initial model if none was written yet) and ``status.json`` records where it diverged,
    so the tables can say so.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    gt, model = build_model(cfg)
    result = am_finetune(
        gt.velocity, gt.reward, schedule=gt.schedule, sample_shape=(gt.dim,),
        reward_scale=cfg.problem.reward_scale, method=method_class(cfg.method),
        config=cfg.method_config, model=model, train=cfg.train, run_dir=run_dir,
        settings={"problem": cfg.problem, "model": cfg.model}, on_change="restart",
        derived=("model.safetensors", "eval.json", "status.json"), on_divergence="last_good",
        progress=progress, threads=None,
    )  # fmt: skip
    atomic_write_text(
        run_dir / "config.yaml", yaml.safe_dump(run_config_to_dict(cfg), sort_keys=False)
    )
    status = {"status": result.status, "iteration": result.iterations}
    if result.status == "diverged":
        status = {"status": "diverged", "diverged_at": result.diverged_at,
                  "message": result.message, "exported_iteration": result.iterations}  # fmt: skip
    atomic_write_text(run_dir / "status.json", json.dumps(status, indent=2))
    out = run_dir / "model.safetensors"
    tmp = run_dir / "model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in result.model.net.state_dict().items()}, str(tmp))
    os.replace(tmp, out)
    return out


def load_model(cfg: RunConfig, run_dir: str | Path) -> tuple[GroundTruth, torch.nn.Module]:
    path = Path(run_dir) / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"no fine-tuned weights: {path} does not exist (run finetune first)"
        )
    gt, model, _ = build_run(cfg)
    model.net.load_state_dict(load_file(str(path)))
    return gt, model.eval()


def _metric(cfg: RunConfig, gt: GroundTruth) -> str:
    return gt.default_metric if cfg.eval.metric == "auto" else cfg.eval.metric


def floor_key(cfg: RunConfig) -> dict:
    """What a run's noise floor depends on: the target (problem, reward scale), the sample size,
    the metric, the number of pairs and the seed. Runs with equal keys share one floor."""
    ev = cfg.eval
    return {
        "problem": cfg.problem.name,
        "schedule": cfg.problem.schedule,
        "reward_scale": cfg.problem.reward_scale,
        "num_samples": ev.num_samples,
        "metric": ev.metric,
        "floor_repeats": ev.floor_repeats or ev.repeats,
        "seed": ev.seed,
    }


@torch.no_grad()
def noise_floor_record(cfg: RunConfig) -> dict:
    """The noise floor of a run's evaluation: distances between ``floor_repeats`` pairs of
    independent exact target samples of ``num_samples`` each (``pairs``), their mean and spread.
    It needs no model, so runs on one problem share it (``python -m amcli floor``; the
    workflow's rule ``noise_floor``); its own generator (``eval.seed + 3``) keeps the other
    draws of :func:`evaluate` the same whether the floor is computed there or read."""
    gt = make_problem(
        cfg.problem.name, make_schedule(cfg.problem.schedule), cfg.problem.reward_scale
    )
    key = floor_key(cfg)
    pairs = noise_floor_pairs(
        gt.target.sample,
        key["num_samples"],
        metric=_metric(cfg, gt),
        generator=torch.Generator().manual_seed(key["seed"] + 3),
        repeats=key["floor_repeats"],
    )
    sd = float(np.std(pairs, ddof=1)) if len(pairs) > 1 else float("nan")
    return {**key, "noise_floor": float(np.mean(pairs)), "noise_floor_sd": sd, "pairs": pairs}


@torch.no_grad()
def evaluate(cfg: RunConfig, run_dir: str | Path, floor: dict | None = None) -> dict:
    """Sample the fine-tuned model with each sampler and compare with exact target samples.

    Reports, per sampler, the distance to the target next to the noise floor (distance between
    two independent target samples of the same size) and the base's distance to the target.
    ``floor``: a :func:`noise_floor_record` of this run's :func:`floor_key` (else computed here;
    the numbers are the same either way).
    """
    run_dir = Path(run_dir)
    if floor is None:
        floor = noise_floor_record(cfg)
    wrong = {k: (v, floor.get(k)) for k, v in floor_key(cfg).items() if floor.get(k) != v}
    if wrong:
        raise ValueError(
            f"the noise floor given is for other settings (key: (run, floor)): {wrong}"
        )
    gt, model = load_model(cfg, run_dir)
    status_path = run_dir / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    ev = cfg.eval
    metric = _metric(cfg, gt)
    g = torch.Generator().manual_seed(ev.seed)
    n, reps = ev.num_samples, ev.repeats
    # `reps` independent n-sample target sets: draw r of every sampler is compared with set r, so
    # that the distance and the noise floor are means over the same number of independent pairs
    targets = [gt.target.sample(n, generator=g) for _ in range(reps)]
    target = targets[0]
    base = gt.base.sample(n, generator=g)

    def dist(x, y=target):
        return sample_distance(
            x, y, metric=metric, generator=torch.Generator().manual_seed(ev.seed + 1)
        )

    def div(x):
        return diversity(x, generator=torch.Generator().manual_seed(ev.seed + 2))

    floor_pairs, floor_sd = floor["pairs"], floor["noise_floor_sd"]
    floor_reps, floor_mean = len(floor_pairs), floor["noise_floor"]

    result = {
        "problem": cfg.problem.name,
        "method": cfg.method,
        "tag": cfg.tag or cfg.method,
        "diverged_at": status.get("diverged_at"),
        "exported_iteration": status.get("exported_iteration", cfg.train.iterations),
        "diffusion": str(getattr(cfg.method_config, "diffusion", "")),
        "seed": cfg.train.seed,
        "reward_scale": cfg.problem.reward_scale,
        "metric": metric,
        "num_samples": n,
        "repeats": reps,
        "noise_floor": floor_mean,
        "floor_repeats": floor_reps,
        "noise_floor_sd": floor_sd,
        "base_distance": dist(base),
        "target_reward": float(gt.reward(target).mean()),
        "base_reward": float(gt.reward(base).mean()),
        "target_diversity": div(target),
        "base_diversity": div(base),
        "target_distance_to_base": dist(target, base),
        "target_weights": gt.target.weights.tolist(),
        # mode-weight error of n exact target samples (sampling noise; mean over the target
        # sets) and of the base
        "target_mode_error": float(np.mean([gt.target.mode_error(t) for t in targets])),
        "base_mode_error": gt.target.mode_error(base),
        "samplers": {},
    }
    arrays = {"target": target.numpy(), "base": base.numpy()}
    for name in ev.samplers:
        spec = name if name in ("ode", "memoryless") else float(name)
        draws = [
            sample(
                model,
                n,
                (gt.dim,),
                schedule=gt.schedule,
                num_steps=ev.sampling_steps,
                diffusion=make_diffusion(spec, gt.schedule),
                generator=g,
            )
            for _ in range(reps)
        ]
        x = draws[0]
        finite = all(bool(torch.isfinite(d).all()) for d in draws)
        nan = float("nan")
        ds = [dist(d, t) for d, t in zip(draws, targets, strict=True)] if finite else [nan]
        result["samplers"][name] = {
            # mean over the `reps` (draw, target set) pairs, and their standard deviation
            "distance": float(np.mean(ds)),
            "distance_sd": float(np.std(ds, ddof=1)) if len(ds) > 1 else nan,
            "ratio_to_floor": float(np.mean(ds)) / floor_mean,
            # standard error of that ratio (both means uncertain; am.metrics.ratio_standard_error)
            "ratio_se": ratio_standard_error(ds, floor_pairs),
            "reward": float(gt.reward(torch.cat(draws)).mean()) if finite else nan,
            # the first draw only: these are descriptive, not the headline comparison
            "distance_to_base": dist(x, base) if finite else nan,
            "diversity": div(x) if finite else nan,
            "mode_weights": gt.target.occupancy(torch.cat(draws)).tolist() if finite else None,
            "mode_error": float(np.mean([gt.target.mode_error(d) for d in draws]))
            if finite
            else nan,
            "finite": finite,
        }
        arrays[f"finetuned_{name}"] = x.numpy()
    atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2))
    tmp = run_dir / "samples.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, run_dir / "samples.npz")
    return result
