"""What a per-term clip of the Adjoint Matching loss costs at the optimum (docs/findings.md).

Run: ``python benchmarks/clip_bias_1d.py [--steps 80] [--warp 0.5] [--paths 100000]``.

Simulates the *optimal* process (the exact tilted velocity ``v*``) on the Theorem 1 experiment's
1-D grid (K = 80, warped; memoryless Euler-Maruyama), runs the lean adjoint through the base and
forms each step's squared residual ``|u* - target|^2`` with ``target = -sigma_k a_(k+1)`` (no
control variate). A clip at ``C`` (``method.clip_multiplier: C`` at lambda = 1) gives a term
above ``C`` no gradient, so the regression's fixed point becomes the target's mean over the
terms *below* ``C``. Printed: the fraction of terms above each ``C`` over all steps, and per
step the exact ``dv*`` against the target's mean with every term and with each clip, all in
velocity units (divided by ``c_k``). Where the clipped mean falls below ``dv*`` the clip
under-tilts: the heavy tail of the target carries the transfer of mass between the modes.
"""

from __future__ import annotations

import argparse

import torch
from _optimal import optimal_rollout

from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule
from am.sde import control_coefficient, warped_grid

CLIPS = (1e4, 1e5, 1e6, 1e7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--warp", type=float, default=0.5)
    ap.add_argument("--paths", type=int, default=100_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    K, n = args.steps, args.paths
    times = warped_grid(K, args.warp)
    traj, adj = optimal_rollout(gt, times, n, generator=torch.Generator().manual_seed(0))
    above = dict.fromkeys(CLIPS, 0)
    rows = []
    show = sorted({1, *range(K // 20, K, max(1, K // 10)), K - 1})
    for k in range(K):
        x, t, sig = traj.states[k], times[k].expand(n), traj.sigmas[k]
        c = control_coefficient(gt.schedule(times[k]), sig)
        ustar = c * (gt.target_velocity(x, t) - gt.velocity(x, t))
        target = -sig * adj.adjoints[k + 1]
        r2 = ((ustar - target) ** 2)[:, 0]
        for clip in CLIPS:
            above[clip] += int((r2 > clip).sum())
        if k in show:
            means = [float(target[r2 <= clip].mean() / c) for clip in CLIPS]
            rows.append(
                (k, float(times[k]), float(ustar.mean() / c), float(target.mean() / c), means)
            )
    print(f"K = {K}, grid warp {args.warp}, {n} optimal paths, target -sigma_k a_(k+1)")
    total = K * n
    print(
        "fraction of terms above the clip: "
        + ", ".join(f"{c:.0e}: {above[c] / total:.2e}" for c in CLIPS)
    )
    clips = "".join(f"   clip {c:.0e}" for c in CLIPS)
    print(f"   k      t   dv* mean   target mean{clips}")
    for k, t, dvs, mean, means in rows:
        cells = "".join(f"   {m:9.3f}" for m in means)
        print(f"  {k:2d}  {t:.3f}   {dvs:8.3f}   {mean:11.3f}{cells}")


if __name__ == "__main__":
    main()
