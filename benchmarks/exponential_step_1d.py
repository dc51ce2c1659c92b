"""A measured negative result: an exponential-integrator step for the memoryless SDE
(docs/findings.md). Not part of the library.

Run: ``python benchmarks/exponential_step_1d.py [--paths 200000] [--steps 40]``.

For flow matching the memoryless drift is ``b = 2 v - x / t``. The step below integrates the stiff
linear part exactly with the velocity frozen over ``[t, t']`` (integrating factor ``t``)::

    X' = (t / t') X + (t'^2 - t^2) / t' v + sqrt((t'^2 - t^2) - 2 (t'^3 - t^3) / 3) / t' eps

Its first Jacobian is right (1/2 at ``t = h`` where Euler-Maruyama gives about 0). A velocity
change ``dv`` frozen over the step moves ``X'`` by ``c dv`` with ``c = (t'^2 - t^2) / t'`` at
control cost ``W |dv|^2``, ``W = int ds / eta(s)``; the discrete problem's regression target in
velocity units is therefore ``dv = -c a_{k+1} / (2 W)`` (Euler-Maruyama: ``-eta_k a_{k+1}``).

Prints, on the exact 1-D problem: W1 to the exact tilt of the optimal velocity ``v*`` sampled
with each step at K steps, and the mean regression target over optimal paths against the mean
``dv*`` at several steps (ratio 1 = unbiased for the continuous control).
"""

from __future__ import annotations

import argparse
import math

import torch
from _optimal import optimal_rollout

from am.metrics import wasserstein_1d
from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule
from am.sde import EulerMaruyama, StepCoefficients, Stepper, control_coefficient, uniform_grid


class ExponentialStep(Stepper):
    """Flow-matching memoryless SDE, ``-x/t`` integrated exactly, ``v`` frozen (``sigma`` unused:
    the step is memoryless by construction)."""

    name = "exponential"
    target_adjoint_offset = 1

    def coefficients(self, sv, sv_next, sigma):
        t, t2 = sv.t, sv_next.t
        return StepCoefficients(
            x=t / t2,
            v=(t2**2 - t**2) / t2,
            noise=torch.sqrt((t2**2 - t**2) - 2 * (t2**3 - t**3) / 3) / t2,
        )


def velocity_target(stepper: Stepper, sched, times, k: int, sigma, adjoint_next):
    """The discrete problem's regression target at step ``k`` in velocity units."""
    t, t2 = float(times[k]), float(times[k + 1])
    if isinstance(stepper, ExponentialStep):
        c = (t2**2 - t**2) / t2
        w = -(t2 - t) - math.log((1 - t2) / (1 - t)) if t2 < 1 else math.inf
        return -c * adjoint_next / (2 * w)
    return -sigma * adjoint_next / control_coefficient(sched(times[k]), sigma)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sched = FlowMatchingSchedule()
    gt = make_problem("gmm1d_linear", sched, 1.0)
    times = uniform_grid(args.steps)
    n = args.paths
    exact = gt.target.sample(n, generator=torch.Generator().manual_seed(1))[:, 0]
    print(f"exact 1-D problem, K = {args.steps}, {n} paths of the optimal velocity v*")
    for stepper in (EulerMaruyama(), ExponentialStep()):
        g = torch.Generator().manual_seed(0)
        traj, adj = optimal_rollout(gt, times, n, generator=g, stepper=stepper)
        w1 = wasserstein_1d(traj.final[:, 0], exact)
        cells = []
        with torch.no_grad():
            for frac in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7):
                k = round(frac * args.steps)
                x, tk = traj.states[k], times[k].expand(n)
                dvs = gt.target_velocity(x, tk) - gt.velocity(x, tk)
                y = velocity_target(stepper, sched, times, k, traj.sigmas[k], adj.adjoints[k + 1])
                cells.append(f"t={float(times[k]):.2f}: {float(y.mean() / dvs.mean()):.2f}")
        print(
            f"  {stepper.name:15s} W1(v* sampled) = {w1:.4f}   mean target / mean dv*: "
            + ", ".join(cells)
        )


if __name__ == "__main__":
    main()
