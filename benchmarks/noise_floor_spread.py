"""How many pairs of sample sets a noise floor needs (README, "Results", "How to read a ratio").

Run: ``python benchmarks/noise_floor_spread.py [--problems gmm1d_linear ...] [--samples 5000]
[--pairs 400]``.

The floor of the results table is the mean distance between two independent ``--samples``-point
target sets (W1 in 1-D, sliced W1 over 256 directions otherwise; :func:`am.metrics.noise_floor`).
Over ``--pairs`` pairs this prints, per problem, the floor's mean, one pair's standard deviation,
and the standard deviation of a mean over 5 and over 20 pairs (relative to the mean): what a
table's ratio to the floor is uncertain by from the denominator alone. No model is involved; the
pairs cost only target sampling and the distance.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from am.metrics import noise_floor_pairs
from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule

FIGURE2_PROBLEMS = [
    "gmm1d_linear",
    "gmm2d_quadratic",
    "gmm10d_quadratic",
    "gmm2d_overlap_quadratic",
    "gmm10d_overlap_quadratic",
]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--problems", nargs="*", default=FIGURE2_PROBLEMS)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--pairs", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{args.samples} samples per set, {args.pairs} pairs")
    print("| problem | floor (mean) | one pair's sd | sd of a 5-pair mean | sd of a 20-pair mean |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.problems:
        gt = make_problem(name, FlowMatchingSchedule(), 1.0)
        metric = "w1" if gt.dim == 1 else "sliced_w1"
        d = np.array(
            noise_floor_pairs(
                gt.target.sample,
                args.samples,
                metric=metric,
                generator=torch.Generator().manual_seed(0),
                repeats=args.pairs,
            )
        )
        m, sd = d.mean(), d.std(ddof=1)
        # the spread of a k-pair mean, sd / sqrt(k), relative to the floor
        print(
            f"| {name} | {m:.4f} | {sd:.4f} ({sd / m:.0%}) | {sd / np.sqrt(5) / m:.1%} "
            f"| {sd / np.sqrt(20) / m:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
