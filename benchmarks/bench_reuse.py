"""Rollout reuse on a 1-D toy: distance to the exact tilt per trajectory simulated and per
second, for several optimiser steps per batch of rollouts (``am.reuse``).

Run: ``python benchmarks/bench_reuse.py`` (``--help``; about 12 minutes on one core with the
defaults). The problem is ``gmm1d_linear`` (``0.5 N(-2, 0.6^2) + 0.5 N(2, 0.6^2)``, ``r(x) =
x``, lambda = 1), K = 40, ``am.finetune``'s default model and Adjoint Matching settings, batches
of 64 rollouts, each batch serving ``updates_per_rollout`` optimiser steps on the whole batch.
Every run simulates the same number of trajectories (``--trajectories``, default 12 800), so
``updates_per_rollout = U`` takes ``U`` times as many optimiser steps. Printed per U and seed:
W1 to the exact tilt of 20 000 ODE and memoryless-SDE samples (the noise floor of two exact
sets of that size beside it), the training wall time, and the cost of an optimiser step that
reuses a stored batch against one that draws a new one and against its pass-count floor (one
forward and backward of the fine-tuned model on the stored steps and rows). A second table
gives every U the same wall time instead (``--seconds``): its number of batches is set from
the step costs the first table measured, so that training takes about that long. A third
gives fresh rollouts (U = 1) as many optimiser steps as each U took: what staleness costs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import am
from am.metrics.distances import noise_floor, sample_distance
from am.problems.benchmarks import make_problem
from am.train import NonFiniteError, Trainer

BATCH, K = 64, 40


def run(updates: int, seed: int, trajectories: int):
    """One run simulating ``trajectories`` rollouts (in batches of 64)."""
    fm = am.FlowMatchingSchedule()
    gt = make_problem("gmm1d_linear", fm, 1.0)
    torch.manual_seed(seed)
    model = am.api.default_model(gt.velocity, (1,))
    problem = am.methods.FineTuningProblem(
        base=gt.velocity, reward=gt.reward, schedule=fm, sample_shape=(1,), reward_scale=1.0
    )
    config = am.AdjointMatching.recommended_config()
    method = am.AdjointMatching(
        am.AdjointMatchingConfig(**{**vars(config), "num_steps": K}), problem
    )
    rounds = max(1, trajectories // BATCH)
    train = am.TrainConfig(
        iterations=rounds * updates, batch_size=BATCH, updates_per_rollout=updates, seed=seed
    )
    trainer = Trainer(method, model, train)
    fresh, reused = [], []
    t0 = time.perf_counter()
    for _ in range(train.iterations):
        first = trainer.iteration % updates == 0
        try:
            rec = trainer.step()
        except NonFiniteError:  # reported, not fatal: the table says where it diverged
            return {"diverged_at": trainer.iteration + 1}
        (fresh if first else reused).append(rec["seconds"])
    seconds = time.perf_counter() - t0
    g = torch.Generator().manual_seed(100 + seed)
    out = {"seconds": seconds, "fresh_s": statistics.median(fresh)}
    if reused:
        out["reused_s"] = statistics.median(reused)
        stored = trainer.reuse.stored
        x = stored.states.flatten(0, 1).detach()
        t = stored.times.repeat_interleave(BATCH)
        floor = []
        for _ in range(20):
            s = time.perf_counter()
            model(x, t).square().sum().backward()
            floor.append(time.perf_counter() - s)
        model.zero_grad(set_to_none=True)
        out["floor_s"] = statistics.median(floor)
    for sampler in ("ode", "memoryless"):
        xs = am.sample(
            model, 20_000, (1,), schedule=fm, num_steps=K,
            diffusion=am.make_diffusion(sampler, fm), generator=g,
        )  # fmt: skip
        out[sampler] = sample_distance(xs, gt.target.sample(20_000, generator=g), metric="w1")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--updates", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trajectories", type=int, default=12_800)
    ap.add_argument("--seconds", type=float, default=30.0, help="wall time of the second table")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gt = make_problem("gmm1d_linear", am.FlowMatchingSchedule(), 1.0)
    g = torch.Generator().manual_seed(0)
    floor = noise_floor(gt.target.sample, 20_000, metric="w1", generator=g, repeats=5)
    print(
        f"gmm1d_linear, lambda 1, K = {K}, batches of {BATCH} rollouts, {args.trajectories} "
        f"trajectories per run; W1 of 20 000 samples (noise floor {floor:.4f}); 1 thread"
    )
    print(
        "  U  seed  steps   W1 ODE   W1 SDE   train s   fresh step ms   reused step ms   floor ms"
    )
    per_batch = {}
    for updates in args.updates:
        for seed in args.seeds:
            r = run(updates, seed, args.trajectories)
            steps = args.trajectories // BATCH * updates
            if "diverged_at" in r:
                print(f"{updates:3d}  {seed:4d}  {steps:5d}   diverged at step {r['diverged_at']}")
                continue
            reused = ""
            if "reused_s" in r:
                reused = f"{r['reused_s'] * 1e3:14.1f}   {r['floor_s'] * 1e3:8.1f}"
            print(
                f"{updates:3d}  {seed:4d}  {steps:5d}   {r['ode']:.4f}   {r['memoryless']:.4f}   "
                f"{r['seconds']:7.1f}   {r['fresh_s'] * 1e3:13.1f}   {reused}"
            )
            per_batch.setdefault(updates, []).append(r["seconds"] / (args.trajectories // BATCH))
    print(f"\nthe same wall time: about {args.seconds:g} s of training per run")
    print("  U  seed  trajectories   W1 ODE   W1 SDE   train s")
    for updates in args.updates:
        if updates not in per_batch:  # every seed diverged above
            continue
        trajectories = int(args.seconds / statistics.median(per_batch[updates])) * BATCH
        for seed in args.seeds:
            r = run(updates, seed, trajectories)
            if "diverged_at" in r:
                print(
                    f"{updates:3d}  {seed:4d}  {trajectories:12d}   diverged at step {r['diverged_at']}"
                )
                continue
            print(
                f"{updates:3d}  {seed:4d}  {trajectories:12d}   {r['ode']:.4f}   "
                f"{r['memoryless']:.4f}   {r['seconds']:7.1f}"
            )

    # staleness: the same optimiser steps on fresh rollouts (U = 1, U times the trajectories)
    print(f"\nstaleness: U = 1 with as many optimiser steps as each U above (seed {args.seeds[0]})")
    print("  as U  steps  trajectories   W1 ODE   W1 SDE   train s")
    for updates in [u for u in args.updates if u > 1]:
        trajectories = args.trajectories * updates
        r = run(1, args.seeds[0], trajectories)
        steps = trajectories // BATCH
        if "diverged_at" in r:
            print(
                f"{updates:6d}  {steps:5d}  {trajectories:12d}   diverged at step {r['diverged_at']}"
            )
            continue
        print(
            f"{updates:6d}  {steps:5d}  {trajectories:12d}   {r['ode']:.4f}   "
            f"{r['memoryless']:.4f}   {r['seconds']:7.1f}"
        )


if __name__ == "__main__":
    main()
