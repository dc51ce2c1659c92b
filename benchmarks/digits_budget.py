"""Digits: how far Adjoint Matching (or another method) is from the importance-sampling reference
after each number of iterations of ONE run, at a chosen learning rate, batch and grid, in
combined standard errors per statistic (the measurements behind the budget in
``config/full.yaml`` and docs/digits.md, "Convergence"; the workflow's convergence figure runs
one whole run per budget instead).

    python benchmarks/digits_budget.py --reward-scale 10 --lr 1e-3 --iterations 400
    python benchmarks/digits_budget.py --reward-scale 10 --grid 20    # K = 20 train and sample

Needs the benchmark's networks (``runs/digits/assets``, written by the workflow's
``digits_pretrain``). The snapshots at ``--at`` are the same run stopped there (its cosine
schedule spans ``--iterations``); generations of every snapshot share their seed.
"""

import argparse
import time

import torch

from am.api import _method_config, default_model
from am.conditions import ClassLabels
from am.methods import FineTuningProblem
from am.problems.digits_eval import REFERENCED, generate, scores, tilted_reference
from am.problems.digits_pretrain import digits_assets
from am.schedules import FlowMatchingSchedule
from am.train import TrainConfig, Trainer
from baselines.registry import method_class


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="adjoint_matching")
    ap.add_argument("--reward-scale", type=float, default=10.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--at", default="50,100,200,400", help="snapshot iterations")
    ap.add_argument("--grid", type=int, default=10, help="K of training, evaluation, reference")
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--reference-per-class", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="runs/digits/assets")
    a = ap.parse_args()
    torch.set_num_threads(1)
    assets = digits_assets(a.cache)
    x, labels = generate(
        assets.base, per_class=a.reference_per_class, num_steps=a.grid,
        diffusion="memoryless", seed=12345,
    )  # fmt: skip
    ref = tilted_reference(x, labels, assets, a.reward_scale)
    print(f"reference K = {a.grid}, lambda {a.reward_scale:g}, ESS {ref['ess_min']:.0f}: "
          + " ".join(f"{m} {ref[m]:.4f}" for m in REFERENCED), flush=True)  # fmt: skip
    cls = method_class(a.method)
    overrides = {"num_steps": a.grid}
    if "grid_warp" in vars(cls.recommended_config()):
        overrides["grid_warp"] = 0.0
    problem = FineTuningProblem(
        base=assets.base, reward=assets.reward, schedule=FlowMatchingSchedule(),
        sample_shape=(1, 8, 8), reward_scale=a.reward_scale, conditions=ClassLabels(10),
        null_condition=torch.tensor([10]),
    )  # fmt: skip
    model = default_model(assets.base, (1, 8, 8), ClassLabels(10))
    train = TrainConfig(iterations=a.iterations, batch_size=a.batch, lr=a.lr, seed=a.seed)
    trainer = Trainer(cls(_method_config(cls, overrides), problem), model, train)
    torch.manual_seed(a.seed)
    for n in [int(s) for s in a.at.split(",")]:
        t0 = time.process_time()
        trainer.fit(resume=False, progress=False, until=n)
        seconds = time.process_time() - t0
        x, labels = generate(
            model.eval(), per_class=a.per_class, num_steps=a.grid, diffusion="memoryless",
            seed=1000 + a.seed,
        )  # fmt: skip
        model.train()
        s = scores(x, labels, assets)
        z = {
            m: (s[m] - ref[m]) / (s[m + "_se"] ** 2 + ref[m + "_se"] ** 2) ** 0.5
            for m in REFERENCED
        }
        print(f"{a.method} lambda {a.reward_scale:g} lr {a.lr:g} batch {a.batch} K {a.grid} "
              f"iteration {n} ({seconds:.0f} CPU s): "
              + " ".join(f"{m} {s[m]:.4f} ({z[m]:+.1f})" for m in REFERENCED), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
