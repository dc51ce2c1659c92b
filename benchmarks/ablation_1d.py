"""Training-setting ablation on the exact 1-D problem (README, "Findings").

Run: ``python benchmarks/ablation_1d.py [--jobs 2] [--out runs/ablation_1d]``. Each variant is a
full ``amcli`` run (fine-tune, then evaluate against 20 000 exact target samples); the script
prints one Markdown table: W1 to the exact tilt for the memoryless-SDE and ODE samplers, the mass
left in the minor (left) mode, and the noise floor. The first row samples the exact optimum
``v*`` with the same K = 40 Euler-Maruyama sampler used in training (no training).
"""

from __future__ import annotations

import argparse
import copy
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

BASE = {
    "problem": {"name": "gmm1d_linear", "reward_scale": 1.0},
    "method": {"name": "adjoint_matching", "num_steps": 40, "steps": {"mode": "all"}},
    "model": {"hidden": 64, "depth": 3, "time_features": 4},
    "train": {
        "iterations": 1000,
        "batch_size": 256,
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "log_every": 50,
    },
    "eval": {"num_samples": 20000, "sampling_steps": 200},
}

VARIANTS = {
    "uniform weighting, grad-norm clip 1": {
        "method": {"weighting": "uniform"},
        "train": {"grad_clip": 1.0},
    },
    "uniform weighting, per-term clip 1.6 lambda^2 (paper)": {
        "method": {"weighting": "uniform", "clip_multiplier": 1.6},
        "train": {"grad_clip": 1.0},
    },
    "adjoint weighting, grad-norm clip 1": {
        "method": {"weighting": "adjoint"},
        "train": {"grad_clip": 1.0},
    },
    "uniform weighting, no clip": {"method": {"weighting": "uniform"}},
    "adjoint weighting, no clip (default)": {"method": {"weighting": "adjoint"}},
    "adjoint weighting, no clip, batch 1024": {
        "method": {"weighting": "adjoint"},
        "train": {"batch_size": 1024},
    },
    "adjoint weighting, no clip, 3000 iterations": {
        "method": {"weighting": "adjoint"},
        "train": {"iterations": 3000},
    },
    "adjoint weighting, no clip, K = 100": {"method": {"weighting": "adjoint", "num_steps": 100}},
    "adjoint weighting, no clip, hidden 256": {
        "method": {"weighting": "adjoint"},
        "model": {"hidden": 256},
    },
    "adjoint weighting, no clip, K = 100, hidden 256": {
        "method": {"weighting": "adjoint", "num_steps": 100},
        "model": {"hidden": 256},
    },
    "drift weighting, no clip": {"method": {"weighting": "drift"}},
    "drift weighting, no clip, K = 100": {"method": {"weighting": "drift", "num_steps": 100}},
}


def merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_variant(args: tuple[str, dict, str]) -> dict:
    name, overrides, out = args
    torch.set_num_threads(1)
    from amcli.config import parse_run_config
    from amcli.run import evaluate, finetune

    cfg = parse_run_config(merge(BASE, overrides))
    run_dir = Path(out) / name.replace(" ", "_").replace(",", "").replace("^", "").replace("=", "")
    finetune(cfg, run_dir, progress=False)
    ev = evaluate(cfg, run_dir)
    arr = np.load(run_dir / "samples.npz")
    return {
        "variant": name,
        "w1_sde": ev["samplers"]["memoryless"]["distance"],
        "w1_ode": ev["samplers"]["ode"]["distance"],
        "reward_sde": ev["samplers"]["memoryless"]["reward"],
        "left_mass_sde": float((arr["finetuned_memoryless"] < 0).mean()),
        "target_left_mass": float((arr["target"] < 0).mean()),
        "target_reward": ev["target_reward"],
        "floor": ev["noise_floor"],
    }


def optimum_row() -> dict:
    from am.diffusion import ConstantDiffusion, MemorylessDiffusion
    from am.metrics.distances import wasserstein_1d
    from am.problems.benchmarks import make_problem
    from am.schedules import FlowMatchingSchedule
    from am.sde import sample

    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    g = torch.Generator().manual_seed(12345)
    n = 20000
    tgt = gt.target.sample(n, generator=g)[:, 0]
    xs = {
        name: sample(
            gt.target_velocity,
            n,
            (1,),
            schedule=gt.schedule,
            num_steps=40,
            diffusion=d,
            generator=g,
        )[:, 0]
        for name, d in (("sde", MemorylessDiffusion(gt.schedule)), ("ode", ConstantDiffusion(0.0)))
    }
    return {
        "variant": "exact v*, sampled with K = 40 (no training)",
        "w1_sde": wasserstein_1d(xs["sde"], tgt),
        "w1_ode": wasserstein_1d(xs["ode"], tgt),
        "reward_sde": float(xs["sde"].mean()),
        "left_mass_sde": float((xs["sde"] < 0).float().mean()),
        "target_left_mass": float((tgt < 0).float().mean()),
        "target_reward": float(tgt.mean()),
        "floor": float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/ablation_1d")
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    args = ap.parse_args()
    names = args.only or list(VARIANTS)
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_variant, [(n, VARIANTS[n], args.out) for n in names]))
    rows.insert(0, optimum_row())
    print(
        "| setting | W1 memoryless SDE | W1 ODE | left-mode mass (target) | mean reward (target) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['variant']} | {r['w1_sde']:.3f} | {r['w1_ode']:.3f} | "
            f"{r['left_mass_sde']:.3f} ({r['target_left_mass']:.3f}) | "
            f"{r['reward_sde']:.2f} ({r['target_reward']:.2f}) |"
        )
    floors = [r["floor"] for r in rows if r["floor"] == r["floor"]]
    print(f"\nW1 noise floor (two independent 20 000-sample target sets): {np.mean(floors):.3f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "ablation.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
