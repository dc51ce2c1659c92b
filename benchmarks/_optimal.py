"""Shared by the diagnostics: optimal paths of an exact problem and their lean adjoints.

The benchmark scripts run as ``python benchmarks/<name>.py``, so this module is imported from
the script's own folder.
"""

from __future__ import annotations

import torch

from am.adjoint import AdjointResult, lean_adjoint, terminal_adjoint
from am.diffusion import MemorylessDiffusion
from am.problems.benchmarks import GroundTruth
from am.sde import EulerMaruyama, Stepper, Trajectory, simulate


def optimal_rollout(
    gt: GroundTruth,
    times: torch.Tensor,
    paths: int,
    *,
    generator: torch.Generator,
    stepper: Stepper | None = None,
) -> tuple[Trajectory, AdjointResult]:
    """``paths`` trajectories of the *optimal* process (the exact tilted velocity ``v*``) on the
    grid ``times [K+1]`` with the memoryless diffusion, and the lean adjoint through the base from
    ``a_K = -lambda grad r(X_K)``: what a perfect regressor's fixed point is computed from."""
    stepper = stepper or EulerMaruyama()
    sched = gt.schedule
    traj = simulate(
        gt.target_velocity,
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
