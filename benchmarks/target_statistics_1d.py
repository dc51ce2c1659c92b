"""Statistics of the Adjoint Matching regression target on the exact 1-D problem (docs/findings.md).

Run: ``python benchmarks/target_statistics_1d.py [--paths 100000]``. Simulates the *optimal*
process (the exact tilted velocity ``v*``) with K = 40 memoryless Euler-Maruyama steps, runs the
lean adjoint through the base, and prints, per step, the target ``-sigma_k a_{k+1}`` (mean, std,
max) next to the exact optimal control ``u*``, then the target's conditional mean in eight
quantile bins of ``X_k`` at mid steps against ``u*`` in the same bins: where they differ, the
K = 40 discrete fixed point differs from the continuous optimum.
"""

import argparse

import torch
from _optimal import optimal_rollout

from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule
from am.sde import control_coefficient, uniform_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--paths", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sched = FlowMatchingSchedule()
    gt = make_problem("gmm1d_linear", sched, 1.0)
    base, vstar = gt.velocity, gt.target_velocity
    g = torch.Generator().manual_seed(0)
    times = uniform_grid(args.steps)
    n = args.paths
    traj, adj = optimal_rollout(gt, times, n, generator=g)

    def at(k):
        x, tk, sig = traj.states[k][:, 0], times[k].expand(n), traj.sigmas[k]
        ustar = control_coefficient(sched(times[k]), sig) * (
            vstar(x[:, None], tk) - base(x[:, None], tk)
        )
        return x, ustar[:, 0], (-sig * adj.adjoints[k + 1])[:, 0]

    print(f"K = {args.steps}, {n} optimal paths; target = -sigma_k a_(k+1)")
    print("   k      t   u* mean   target mean    std      max")
    for k in (1, 2, 5, 10, 15, 20, 25, 30, 35, 39):
        x, ustar, tgt = at(k)
        print(
            f"  {k:2d}  {float(times[k]):.3f}  {ustar.mean():8.3f}  {tgt.mean():12.3f}  "
            f"{tgt.std():6.2f}  {tgt.abs().max():7.1f}"
        )
    print("\nconditional mean of the target vs u* in quantile bins of X_k (mean +- s.e.)")
    for k in (12, 16, 20, 24):
        x, ustar, tgt = at(k)
        qs = torch.quantile(x, torch.linspace(0, 1, 9))
        cells = []
        for i in range(8):
            m = (x >= qs[i]) & (x <= qs[i + 1])
            cells.append(
                f"x~{x[m].mean():.2f}: {tgt[m].mean():.2f}+-{tgt[m].std() / m.sum() ** 0.5:.2f}"
                f" vs {ustar[m].mean():.2f}"
            )
        print(f"  k={k}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
