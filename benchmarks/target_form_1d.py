"""The fixed point of the DDPM step's two regression targets on the exact 1-D problem
(docs/text_to_image.md, "The authors' run, difference by difference", item 3).

Run: ``python benchmarks/target_form_1d.py [--steps 20 50] [--schedule flow_matching sd15]
[--paths 200000] [--iterations 8]``.

As ``benchmarks/fixed_point_1d.py`` does for Euler-Maruyama: a perfect regressor (conditional
means on quantile bins of ``X_k``), iterated from the exact optimum with damping, then sampled
(200 steps, ODE and memoryless SDE) and compared with exact target samples (W1; two target sets
are about 0.011 apart). Problem: ``0.5 N(-2, 0.6^2) + 0.5 N(2, 0.6^2)``, ``r(x) = x``,
``lambda = 1``, on the flow-matching path or SD 1.5's discrete VP schedule (clean end), the
DDPM step (``o = 0``: both targets use ``a_k``):

* ``continuous`` (this suite): ``c_k dv`` regressed on ``-sigma_k a_k``, so ``dv = E[-sigma_k a_k]
  / c_k``;
* ``discrete`` (the Adjoint Matching authors' SD 1.5 code): the mean shift ``c_v dv`` over the
  step's noise ``s_k`` regressed on ``-s_k a_k``, so ``dv = E[-s_k^2 a_k] / c_v``. On the last
  step (no noise into clean data) the continuous target stands in.

Measured (2026-12-04, 200 000 paths, iteration 8; W1 ODE / SDE). Flow matching: K = 50,
continuous 0.044 / 0.015, discrete 0.198 / 0.121; K = 20, continuous 0.128 / 0.053, discrete
0.456 / 0.335 (still rising). SD 1.5's schedule, K = 50: continuous 0.155 / 0.020, discrete
0.222 / 0.100 (the ODE column is the 200-step ODE sampler's own error on that schedule, 0.16
already at the first iterate). About 4 minutes per (schedule, K) on one thread.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _optimal import optimal_rollout, w1_to_target_1d
from fixed_point_1d import GRID, binned_mean, tabulated_velocity

from am.problems.benchmarks import make_problem
from am.schedules import DiscreteVPSchedule, FlowMatchingSchedule
from am.sde import DDPMStep, control_coefficient, uniform_grid


def targets(gt, times, paths, g, velocity, form: str) -> list[np.ndarray]:
    """Binned ``E[dv target | X_k]`` at every step, from ``paths`` rollouts of ``velocity``."""
    stepper = DDPMStep()
    traj, adj = optimal_rollout(gt, times, paths, generator=g, stepper=stepper, velocity=velocity)
    coefs = stepper.on_grid(gt.schedule, times, traj.sigmas)
    out = []
    for k in range(times.numel() - 1):
        a, sig, s = adj.adjoints[k][:, 0], traj.sigmas[k], coefs.noise[k]
        if form == "discrete" and s > 0:
            out.append(binned_mean(traj.states[k, :, 0], -(s**2) * a / coefs.v[k]))
        else:
            c = float(control_coefficient(gt.schedule(times[k]), sig))
            out.append(binned_mean(traj.states[k, :, 0], -sig * a) / c)
    return out


SCHEDULES = {"flow_matching": FlowMatchingSchedule, "sd15": DiscreteVPSchedule}


def run(num_steps: int, form: str, paths: int, iterations: int, damping: float, schedule: str):
    torch.set_default_dtype(torch.float64)
    gt = make_problem("gmm1d_linear", SCHEDULES[schedule](), 1.0)
    times = uniform_grid(num_steps)
    g = torch.Generator().manual_seed(0)
    grid_x = torch.from_numpy(GRID)[:, None]
    dv = [
        (gt.target_velocity(grid_x, t.expand(GRID.size)) - gt.velocity(grid_x, t.expand(GRID.size)))[:, 0].numpy()
        for t in times[:-1]
    ]  # fmt: skip
    velocity = gt.target_velocity
    print(f"\n{schedule}, K = {num_steps}, {form} target, {paths} paths, damping {damping}")
    print("  iteration   W1 ODE   W1 memoryless SDE")
    for it in range(iterations):
        new = targets(gt, times, paths, g, velocity, form)
        dv = [(1 - damping) * old + damping * n for old, n in zip(dv, new, strict=True)]
        velocity = tabulated_velocity(gt, times, dv)
        w1 = w1_to_target_1d(gt, velocity)
        print(f"  {it + 1:9d}   {w1[0]:.4f}   {w1[1]:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", nargs="*", type=int, default=[20, 40])
    ap.add_argument("--forms", nargs="*", default=["continuous", "discrete"])
    ap.add_argument("--schedule", nargs="*", default=["flow_matching"], choices=sorted(SCHEDULES))
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--damping", type=float, default=0.4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for schedule in args.schedule:
        for k in args.steps:
            for form in args.forms:
                run(k, form, args.paths, args.iterations, args.damping, schedule)


if __name__ == "__main__":
    main()
