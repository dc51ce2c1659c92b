"""Shared by the diagnostics: optimal paths of an exact problem and their lean adjoints.

The benchmark scripts run as ``python benchmarks/<name>.py``, so this module is imported from
the script's own folder.
"""

from __future__ import annotations

import torch

from am.adjoint import AdjointResult, lean_adjoint, terminal_adjoint
from am.diffusion import MemorylessDiffusion, make_diffusion
from am.metrics import sample_distance
from am.problems.benchmarks import GroundTruth
from am.sde import EulerMaruyama, Stepper, Trajectory, Velocity, sample, simulate


def optimal_rollout(
    gt: GroundTruth,
    times: torch.Tensor,
    paths: int,
    *,
    generator: torch.Generator,
    stepper: Stepper | None = None,
    velocity: Velocity | None = None,
) -> tuple[Trajectory, AdjointResult]:
    """``paths`` trajectories of the *optimal* process (the exact tilted velocity ``v*``, or
    ``velocity``) on the grid ``times [K+1]`` with the memoryless diffusion, and the lean adjoint
    through the base from ``a_K = -lambda grad r(X_K)``: what a perfect regressor's fixed point
    is computed from."""
    stepper = stepper or EulerMaruyama()
    sched = gt.schedule
    traj = simulate(
        velocity or gt.target_velocity,
        torch.randn(paths, gt.dim, generator=generator),
        schedule=sched,
        times=times,
        diffusion=MemorylessDiffusion(sched),
        stepper=stepper,
        generator=generator,
    )
    terminal, _ = terminal_adjoint(gt.reward, traj.final, gt.reward_scale)
    adj = lean_adjoint(gt.velocity, traj, schedule=sched, stepper=stepper, terminal=terminal)
    return traj, adj


def w1_to_target_1d(gt: GroundTruth, velocity: Velocity, n: int = 20_000) -> tuple[float, float]:
    """W1 of ``n`` samples of ``velocity`` (200 steps; ODE, then memoryless SDE) to ``n`` exact
    target samples, with fixed seeds so that diagnostics compare like with like."""
    target = gt.target.sample(n, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return tuple(
            sample_distance(
                sample(
                    velocity,
                    n,
                    (1,),
                    schedule=gt.schedule,
                    num_steps=200,
                    diffusion=make_diffusion(spec, gt.schedule),
                    generator=torch.Generator().manual_seed(1),
                ),
                target,
                metric="w1",
                generator=torch.Generator().manual_seed(2),
            )
            for spec in ("ode", "memoryless")
        )
