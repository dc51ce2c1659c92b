"""Adjoint Matching with classifier-free guidance in the rollouts only (the authors' Stable
Diffusion setting) against plain Adjoint Matching, on the digits benchmark at one lambda.

Run after the digits workflow (it reuses ``runs/digits/``: the cached networks and the plain
runs): ``python benchmarks/digits_rollout_guidance.py [--guidance 2] [--reward-scale 10]``.
Trains the guided-rollout runs (same budget and seeds as the workflow's) under
``runs/digits/rollout_guidance/``, then scores both kinds of model sampled without guidance and
with the same guidance, beside the importance-sampling reference of the tilt (about 2 minutes
on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from am.models import GuidedVelocity
from am.problems.digits_eval import generate, scores
from amcli.digits import _assets, parse_digits_config, run

RUNS = Path("runs/digits")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--reward-scale", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = parse_digits_config(yaml.safe_load((RUNS / "digits.yaml").read_text()))
    am_cfg = {**cfg.method_configs.get("adjoint_matching", {}), "rollout_guidance": args.guidance}
    guided_cfg = dataclasses.replace(
        cfg, method_configs={**cfg.method_configs, "adjoint_matching": am_cfg}
    )
    assets, lam = _assets(cfg), f"{args.reward_scale:g}"  # the workflow's lam<scale> tag
    reference = json.loads((RUNS / "reference.json").read_text())
    ref = next(r for r in reference if r["reward_scale"] == args.reward_scale)
    print(
        f"lambda {lam}: reference reward {ref['reward']:.3f} ± {ref['reward_se']:.3f}, "
        f"diversity {ref['diversity']:.2f} (ESS {ref['ess_min']:.0f})"
    )
    print("model                       seed  sampled with   reward   diversity   realism")
    for seed in cfg.seeds:
        out = RUNS / "rollout_guidance" / f"w{args.guidance:g}" / f"lam{lam}" / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "model.safetensors").exists():
            run(
                guided_cfg,
                method="adjoint_matching",
                reward_scale=args.reward_scale,
                seed=seed,
                run_dir=out,
            )
        plain = RUNS / "adjoint_matching" / f"lam{lam}" / f"seed{seed}"
        for name, path in (("AM", plain), (f"AM, rollouts guided w={args.guidance:g}", out)):
            model = copy.deepcopy(assets.base)
            model.load_state_dict(load_file(path / "model.safetensors"))
            for w in (1.0, args.guidance):
                guided = GuidedVelocity(model, w, torch.tensor([10]))
                x, labels = generate(
                    guided, per_class=cfg.eval.per_class, num_steps=cfg.eval.num_steps,
                    diffusion=cfg.eval.diffusion, seed=1000 + seed,
                )  # fmt: skip
                s = scores(x, labels, assets)
                print(
                    f"{name:27s} {seed:4d}  w={w:<10g} {s['reward']:7.3f}   "
                    f"{s['diversity']:9.2f}   {s['realism']:7.1f}"
                )


if __name__ == "__main__":
    main()
