"""The K-step regression's own fixed point in 1-D, without a network (docs/findings.md).

Run: ``python benchmarks/fixed_point_1d.py [--steps 40 80] [--warp 0 0.5] [--paths 200000]
[--iterations 8] [--richardson] [--profile] [--skew A] [--eta-shift THETA] [--threads 2]``.

Adjoint Matching is a fixed-point iteration: simulate the current control with K memoryless
Euler-Maruyama steps, run the lean adjoint, regress. Here the regressor is exact up to binning:
at every step ``k`` the conditional mean of the target ``-sigma_k a_(k+1)`` given ``X_k`` is
estimated on 120 quantile bins of ``X_k`` (``--paths`` paths per iteration) and interpolated.
The iteration starts at the exact optimum ``v*`` and is damped (``new = (1 - w) old + w
regressed``, ``--damping w``; undamped it oscillates). After each iteration the control is
sampled with 200 steps (ODE and memoryless SDE, 20 000 samples) and compared with exact target
samples (W1; two independent 20 000-sample target sets are about 0.011 apart).

``--warp``: the rollout grid :func:`am.sde.warped_grid` (0 = uniform; 0.5 spends the steps
mid-way: half as long there, 1.5 times as long at both ends), one run per (K, warp).

``--richardson`` (a lead, not in the library): the target at the K-step grid's times becomes
``2 T_(2K) - T_K``, the conditional means of a 2K-step and a K-step rollout's targets, which
cancels the O(h) term of the discretisation bias if the bias has one (Richardson extrapolation;
the 2K-step rollout uses the K-step control interpolated in t). Costs 3x the K-step target.

``--skew A`` (a lead, not in the library): the warped grid's times ``s`` mapped to
``s (1 - A (1 - s))``: steps ``1 - A`` times as long at t = 0, ``1 + A`` times at t = 1.

``--eta-shift THETA`` (a lead, not in the library): the target at steps ``k >= 1`` in velocity
units is ``-eta(t_k + THETA h_k) a_(k+1)`` instead of Euler-Maruyama's ``-eta(t_k) a_(k+1)``
(``THETA = 1/2``: the step's control cost taken at its midpoint instead of its left end).

``--exact-first-step``: after the last iteration, also the W1 of the fixed point with its
first step's ``dv`` (the one for ``[0, t_1]``) replaced by the exact ``dv*``: what a model
trained without the singular first step (``steps: {start: 1}``) would sample at best.

``--profile``: after the last iteration, the fixed point's velocity change ``dv`` against the exact
``dv*`` at the first steps and a few later ones (means over the exact tilted marginal at ``t_k``:
``X_t = t X_1 + (1 - t) X_0``, ``X_1`` from the target); what a trained model's
``benchmarks/velocity_error_1d.py`` table is to be compared with.

What it separates: the distance left at the fixed point is the discretisation bias of the K-step
target (no network, no optimiser); a trained model further from the target than this has a
learning error on top (``benchmarks/capacity_1d.py`` measures the network's share).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _optimal import optimal_rollout, w1_to_target_1d

from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule
from am.sde import control_coefficient, uniform_grid, warped_grid

BINS = 120
GRID = np.linspace(-6.0, 9.0, 601)  # common x-grid on which the damped iterates are stored


def binned_mean(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """``E[y | x]`` on :data:`GRID` from quantile bins of ``x [P]``."""
    edges = torch.quantile(x[:200_000], torch.linspace(0.001, 0.999, BINS + 1, dtype=x.dtype))
    idx = torch.bucketize(x, edges).clamp(1, BINS) - 1
    count = torch.bincount(idx, minlength=BINS).to(x.dtype)
    centre = torch.bincount(idx, weights=x, minlength=BINS) / count
    mean = torch.bincount(idx, weights=y, minlength=BINS) / count
    return np.interp(GRID, centre.numpy(), mean.numpy())


def tabulated_velocity(gt, times: torch.Tensor, dv: list[np.ndarray]):
    """``v_base + dv`` with ``dv`` tabulated on :data:`GRID` at the grid times, linear in t."""
    tk = times[:-1].numpy()
    K = len(dv)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = float(t.flatten()[0])
        k = min(int(np.searchsorted(tk, s + 1e-12, side="right")) - 1, K - 1)
        out = np.interp(x[:, 0].numpy(), GRID, dv[k])
        if k + 1 < K:
            w = (s - tk[k]) / (tk[k + 1] - tk[k])
            out = (1 - w) * out + w * np.interp(x[:, 0].numpy(), GRID, dv[k + 1])
        return gt.velocity(x, t) + torch.from_numpy(out).to(x.dtype)[:, None]

    return velocity


def conditional_targets(gt, times, stride: int, num_steps: int, paths: int, g, velocity):
    """Binned ``E[target | X_k]`` in velocity units at every ``stride``-th step of ``times``
    (``num_steps`` of them), from ``paths`` rollouts of ``velocity``."""
    traj, adj = optimal_rollout(gt, times, paths, generator=g, velocity=velocity)
    out = []
    for k in range(num_steps):
        j = k * stride
        sig = traj.sigmas[j]
        c = float(control_coefficient(gt.schedule(times[j]), sig))
        out.append(binned_mean(traj.states[j, :, 0], (-sig * adj.adjoints[j + 1])[:, 0]) / c)
    return out


def print_profile(gt, times: torch.Tensor, dv: list[np.ndarray], dv_star: list[np.ndarray]) -> None:
    """Mean ``dv`` of the fixed point and mean ``dv*`` on the exact tilted marginal at each ``t_k``."""
    n = 20_000
    x1 = gt.target.sample(n, generator=torch.Generator().manual_seed(3))[:, 0].numpy()
    x0 = torch.randn(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64).numpy()
    K = len(dv)
    print("     k       t   dv* mean   fixed-point dv mean   difference")
    for k in sorted({*range(min(K, 10)), *range(0, K, max(1, K // 8))}):
        t = float(times[k])
        xt = t * x1 + (1 - t) * x0
        a, b = np.interp(xt, GRID, dv_star[k]).mean(), np.interp(xt, GRID, dv[k]).mean()
        print(f"  {k:4d}   {t:.3f}   {a:8.3f}   {b:19.3f}   {b - a:+10.3f}")


def run(
    num_steps: int,
    warp: float,
    paths: int,
    iterations: int,
    damping: float,
    richardson: bool,
    profile: bool = False,
    exact_first_step: bool = False,
    skew: float = 0.0,
    eta_shift: float = 0.0,
) -> None:
    if richardson and (warp or skew):
        raise SystemExit("--richardson is implemented for the uniform grid only")
    torch.set_default_dtype(torch.float64)
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    times = warped_grid(num_steps, warp)
    if skew:
        times = times * (1 - skew * (1 - times))
    g = torch.Generator().manual_seed(0)
    grid_x = torch.from_numpy(GRID)[:, None]
    dv = [
        (
            gt.target_velocity(grid_x, t.expand(GRID.size))
            - gt.velocity(grid_x, t.expand(GRID.size))
        )[:, 0].numpy()
        for t in times[:-1]
    ]
    dv_star = [d.copy() for d in dv]
    velocity = gt.target_velocity
    kind = ", Richardson 2 T_2K - T_K" if richardson else ""
    kind += f", eta at t_k + {eta_shift} h_k" if eta_shift else ""
    grid = f"grid warp {warp}" if warp else "uniform grid"
    grid += f", skew {skew}" if skew else ""
    print(f"\nK = {num_steps}, {grid}{kind}, {paths} paths per iteration, damping {damping}")
    print("  iteration   W1 ODE   W1 memoryless SDE")
    for it in range(iterations):
        new = conditional_targets(gt, times, 1, num_steps, paths, g, velocity)
        if richardson:
            fine = uniform_grid(2 * num_steps)
            new_f = conditional_targets(gt, fine, 2, num_steps, paths, g, velocity)
            new = [2 * f - c for f, c in zip(new_f, new, strict=True)]
        if eta_shift:  # step 0's coefficient is the schedule's offset one: left as it is
            eta = gt.schedule(times).eta
            shifted = gt.schedule(times[:-1] + eta_shift * (times[1:] - times[:-1])).eta
            new = [new[0]] + [new[k] * float(shifted[k] / eta[k]) for k in range(1, num_steps)]
        for k in range(num_steps):
            dv[k] = (1 - damping) * dv[k] + damping * new[k]
        velocity = tabulated_velocity(gt, times, dv)
        w1 = w1_to_target_1d(gt, velocity)
        print(f"  {it + 1:9d}   {w1[0]:.4f}   {w1[1]:.4f}", flush=True)
    if exact_first_step:
        w1 = w1_to_target_1d(gt, tabulated_velocity(gt, times, [dv_star[0], *dv[1:]]))
        print(f"  first step's dv := dv*   {w1[0]:.4f}   {w1[1]:.4f}")
    if profile:
        print_profile(gt, times, dv, dv_star)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", nargs="*", type=int, default=[40, 80])
    ap.add_argument("--warp", nargs="*", type=float, default=[0.0])
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--damping", type=float, default=0.4)
    ap.add_argument("--richardson", action="store_true")
    ap.add_argument(
        "--profile", action="store_true", help="print the fixed point's dv against dv* per step"
    )
    ap.add_argument(
        "--exact-first-step",
        action="store_true",
        help="also sample the fixed point with the exact dv* on the first step",
    )
    ap.add_argument("--skew", type=float, default=0.0, help="grid skew A (see above)")
    ap.add_argument("--eta-shift", type=float, default=0.0, help="target's eta at t_k + THETA h_k")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for k in args.steps:
        for warp in args.warp:
            run(
                k,
                warp,
                args.paths,
                args.iterations,
                args.damping,
                args.richardson,
                args.profile,
                args.exact_first_step,
                args.skew,
                args.eta_shift,
            )


if __name__ == "__main__":
    main()
