"""Signal and noise of the Adjoint Matching regression target, per step, on the exact problems.

Run: ``python benchmarks/target_variance.py [--problems ...] [--steps 40 200] [--paths 20000]
[--late-power P]``. ``--late-power P`` replaces the uniform grid by ``t_k = 1 - (1 - k/K)^P``
(steps finer towards t = 1 for ``P > 1``), to see which part of the grid a bias comes from.

For each problem and each grid size K, simulates the *optimal* process (the exact tilted velocity
``v*``) with K memoryless Euler-Maruyama steps, runs the lean adjoint through the base and, at
several t, compares the regression target ``y_k = -sigma_k a_{k+1}`` with the exact optimal
control ``u*_k = c_k (v* - v_base)(X_k)``:

- ``coef``: least-squares coefficient of ``y`` on ``u*`` over paths, ``<y, u*> / <u*, u*>``, with
  its standard error. 1 means the target is unbiased for the continuous control (the discrete
  fixed point is the continuous optimum); below 1, a perfect regressor under-tilts.
- ``|u*|``: root mean square of the signal. ``noise``: root mean square of ``y - u*``.
- ``paths``: ``(noise / |u*|)^2``, the number of paths one step needs for a signal-to-noise ratio
  of 1; compare with the batch size (256 in the default grid).
- ``control variate``: the same two figures for the target with the antithetic control variate
  (:mod:`am.control_variate`, estimate ``g`` from ``v*``, i.e. from a converged model): the
  coefficient must agree with the plain one within the standard errors (the correction has mean
  zero), the paths drop.

What it shows (docs/findings.md): with multimodal bases the target is heavy-tailed in the
window where the modes separate; the noise there is orders of magnitude above the signal, grows
with dimension and mode separation, and shrinks with K.
"""

from __future__ import annotations

import argparse

import torch
from _optimal import optimal_rollout

from am.adjoint import lean_adjoint, terminal_adjoint
from am.control_variate import adjoint_estimate, antithetic_corrections
from am.problems.benchmarks import PROBLEMS, make_problem
from am.schedules import FlowMatchingSchedule
from am.sde import EulerMaruyama, control_coefficient, uniform_grid

TIMES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def table(problem: str, num_steps: int, paths: int, seed: int, late_power: float = 1.0) -> None:
    sched = FlowMatchingSchedule()
    gt = make_problem(problem, sched, 1.0)
    base, vstar = gt.velocity, gt.target_velocity
    g = torch.Generator().manual_seed(seed)
    times = 1 - (1 - uniform_grid(num_steps)) ** late_power
    traj, adj = optimal_rollout(gt, times, paths, generator=g)
    # the same paths with the antithetic control variate, g from v* (a converged model's g)
    est = adjoint_estimate(
        vstar, base, reward=gt.reward, reward_scale=1.0, schedule=sched, trajectory=traj
    )
    delta = antithetic_corrections(est, traj, schedule=sched, stepper=EulerMaruyama())
    terminal, _ = terminal_adjoint(gt.reward, traj.final, 1.0)
    adj_cv = lean_adjoint(
        base, traj, schedule=sched, stepper=EulerMaruyama(), terminal=terminal, corrections=delta
    )
    grid = "" if late_power == 1 else f", grid 1 - (1 - k/K)^{late_power:g}"
    print(f"\n{problem}, K = {num_steps}{grid}, {paths} optimal paths, target -sigma_k a_(k+1)")
    print(
        "      t      coef (s.e.)     |u*|       noise        paths"
        "   | control variate: coef (s.e.)   paths"
    )
    with torch.no_grad():
        ks = {min(int(torch.argmin((times[:-1] - f).abs())), num_steps - 1) for f in TIMES}
        for k in sorted(ks):
            x, sig = traj.states[k], traj.sigmas[k]
            tk = times[k].expand(paths)
            u = control_coefficient(sched(times[k]), sig) * (vstar(x, tk) - base(x, tk))
            coef, se, signal, noise = fit(-sig * adj.adjoints[k + 1], u)
            coef_cv, se_cv, _, noise_cv = fit(
                -sig * adj_cv.target_adjoint(torch.tensor([k]), 1)[0], u
            )
            print(
                f"  {float(times[k]):5.3f}  {coef:7.3f} ({se:5.3f})  {signal:7.3f}"
                f"  {noise:10.2f}  {(noise / signal) ** 2:11.0f}"
                f"   |        {coef_cv:7.3f} ({se_cv:5.3f})  {(noise_cv / signal) ** 2:7.0f}"
            )


def fit(y: torch.Tensor, u: torch.Tensor) -> tuple[float, float, float, float]:
    """Least-squares coefficient of ``y`` on ``u`` through the origin, its standard error
    (residual rms / sqrt(sum u^2)), rms of the signal ``u`` and of the noise ``y - u``."""
    uu = (u * u).sum()
    coef = (y * u).sum() / uu
    se = (y - coef * u).pow(2).sum(-1).mean().sqrt() / uu.sqrt()
    signal = u.pow(2).sum(-1).mean().sqrt()
    noise = (y - u).pow(2).sum(-1).mean().sqrt()
    return float(coef), float(se), float(signal), float(noise)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--steps", nargs="*", type=int, default=[40, 200])
    ap.add_argument("--paths", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--late-power", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for problem in args.problems:
        for k in args.steps:
            table(problem, k, args.paths, args.seed, args.late_power)


if __name__ == "__main__":
    main()
