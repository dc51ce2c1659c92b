"""Generative SDEs from a velocity model, transition steps, trajectories and sampling.

A *velocity model* is any callable ``velocity(x [B, *shape], t [B]) -> [B, *shape]`` (an
``nn.Module``, an exact Gaussian-mixture velocity, a closure around a conditional network).

For any diffusion ``sigma(t)`` the SDE ``dX = b dt + sigma dW`` with

    b(x, t) = v(x, t) + sigma(t)^2 / 2 * s(x, t),     s = (v - kappa x) / eta        (the paper's Eq. 6)

has the marginals of the ODE ``dX = v dt``. The score is formed stably as
``s = (alpha v - alpha' x) / (beta (alpha' beta - alpha beta'))`` which is finite at t = 0.

The transition steps (Euler-Maruyama, the DDPM step) are in :mod:`am.steppers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from am.conditions import bind_velocity, num_rows, take
from am.diffusion import Diffusion, make_diffusion
from am.schedules import Schedule, ScheduleValues
from am.steppers import (  # noqa: F401 (re-exported)
    STEPPERS,
    DDPMStep,
    EulerMaruyama,
    StepCoefficients,
    Stepper,
    make_stepper,
)
from am.steppers import __all__ as _stepper_names

Velocity = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "Velocity",
    "score_from_velocity",
    "endpoint_from_velocity",
    "drift",
    "control_coefficient",
    *_stepper_names,  # re-exported: the steps belong to the SDE's surface
    "Trajectory",
    "uniform_grid",
    "warped_grid",
    "simulate",
    "sample",
]


def score_from_velocity(sv: ScheduleValues, x: Tensor, v: Tensor) -> Tensor:
    """``s = (alpha v - alpha' x) / (beta (alpha' beta - alpha beta'))``; ``sv`` broadcast to ``x``.
    Finite at t = 0 (where it gives ``-x``), singular at t = 1 (``beta = 0``)."""
    return (sv.alpha * v - sv.d_alpha * x) / sv.eta_numerator


def endpoint_from_velocity(sv: ScheduleValues, x: Tensor, v: Tensor) -> Tensor:
    """``E[X_1 | X_t = x] = (beta v - beta' x) / (alpha' beta - alpha beta')``, from
    ``x = alpha y + beta z`` and ``v = alpha' y + beta' z`` solved for ``y``."""
    return (sv.beta * v - sv.d_beta * x) / (sv.d_alpha * sv.beta - sv.alpha * sv.d_beta)


def drift(sv: ScheduleValues, x: Tensor, v: Tensor, sigma: Tensor) -> Tensor:
    """``b = v + sigma^2/2 s`` (the paper's Eq. 6). Memoryless ``sigma^2 = 2 eta`` gives ``b = 2 v - kappa x``."""
    if torch.all(sigma == 0):
        return v
    return v + 0.5 * sigma**2 * score_from_velocity(sv, x, v)


def control_coefficient(sv: ScheduleValues, sigma: Tensor) -> Tensor:
    """``c`` with ``u = c (v_ft - v_base)``: ``u = (b_ft - b_base) / sigma`` and
    ``b_ft - b_base = (1 + sigma^2 / (2 eta)) (v_ft - v_base)``, so ``c = 1/sigma + sigma/(2 eta)``.
    Memoryless: ``c = sqrt(2 / eta)`` (slides, "implicit parameterisation"). Needs ``sigma > 0``."""
    return 1.0 / sigma + 0.5 * sigma * sv.inv_eta


@dataclass(frozen=True)
class Trajectory:
    """A simulated path. ``states [K+1, B, *shape]`` (``states[0] = X_0``), ``times [K+1]``,
    ``noises [K, B, *shape]`` (the standard normals of each step, so steps can be replayed
    exactly), ``sigmas [K]`` (diffusion used on each step); ``velocities [K, B, *shape]`` or
    ``None``: the simulated model's velocity at ``states[k]``, ``times[k]`` (kept on request, for
    reuse: the control variate needs ``v_theta`` at every visited state). Carries no autograd
    graph."""

    states: Tensor
    times: Tensor
    noises: Tensor
    sigmas: Tensor
    velocities: Tensor | None = None

    @property
    def num_steps(self) -> int:
        return self.times.numel() - 1

    @property
    def final(self) -> Tensor:
        return self.states[-1]


def uniform_grid(num_steps: int, *, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """``[K+1]`` equally spaced times from 0 (noise) to 1 (data)."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return torch.linspace(0.0, 1.0, num_steps + 1, dtype=dtype, device=device)


def warped_grid(
    num_steps: int, warp: float, *, dtype: torch.dtype | None = None, device=None
) -> Tensor:
    """``[K+1]`` times from 0 to 1, ``t = u + warp sin(2 pi u) / (2 pi)`` for ``u`` uniform.

    The step near ``t`` is ``(1 + warp cos(2 pi u))`` times the uniform one: ``warp > 0`` spends
    the steps mid-way (``1 - warp`` times as long there, ``1 + warp`` at both ends), ``warp < 0``
    at the ends; ``warp = 0`` is :func:`uniform_grid` exactly. ``|warp| < 1`` keeps the grid
    strictly increasing. Why mid-way: the Euler-Maruyama regression target's bias in 1-D is made
    in the middle of the path, where the modes separate, more than at the singular ends
    (docs/implementation.md, "Why the warped grid").
    """
    times = uniform_grid(num_steps, dtype=dtype, device=device)
    if isinstance(warp, bool) or not isinstance(warp, (int, float)) or not -1 < warp < 1:
        raise ValueError(f"warp must be a number in (-1, 1), got {warp!r}")
    if warp == 0:
        return times
    out = times + warp * torch.sin(2 * torch.pi * times) / (2 * torch.pi)
    out[0], out[-1] = 0.0, 1.0  # sin(2 pi) is not 0 in floating point
    return out


def _check(x0: Tensor, times: Tensor) -> None:
    if times.dim() != 1 or times.numel() < 2:
        raise ValueError(
            f"times must be 1-D with at least 2 entries, got shape {tuple(times.shape)}"
        )
    if not torch.all(times[1:] > times[:-1]):
        raise ValueError("times must be strictly increasing (t = 0 is noise, t = 1 is data)")
    if times[0] < 0 or times[-1] > 1:
        raise ValueError(f"times must lie in [0, 1], got [{times[0]:.4g}, {times[-1]:.4g}]")
    if x0.dim() < 1:
        raise ValueError("x0 must have a leading batch dimension")


@torch.no_grad()
def simulate(
    velocity: Velocity,
    x0: Tensor,
    *,
    schedule: Schedule,
    times: Tensor,
    diffusion: Diffusion,
    stepper: Stepper | None = None,
    generator: torch.Generator | None = None,
    keep_trajectory: bool = True,
    keep_velocities: bool = False,
) -> Trajectory | Tensor:
    """Simulate from ``x0 [B, *shape]`` (at ``times[0]``) along ``times [K+1]``.

    Returns a :class:`Trajectory` (with ``keep_velocities``, also the velocities it evaluated,
    one more ``[K, B, *shape]`` tensor) or, with ``keep_trajectory=False``, only ``X_K``
    (memory independent of ``K``). Runs without gradient.
    """
    if keep_velocities and not keep_trajectory:
        raise ValueError("keep_velocities needs keep_trajectory=True")
    stepper = stepper or EulerMaruyama()
    times = times.to(dtype=x0.dtype, device=x0.device)
    _check(x0, times)
    sigmas = diffusion.on_grid(times).to(x0.dtype)
    batch, K = x0.shape[0], times.numel() - 1
    if keep_trajectory:  # preallocated: no list-then-stack copy of the whole trajectory
        states = x0.new_empty((K + 1, *x0.shape))
        noises = x0.new_empty((K, *x0.shape))
        states[0] = x0
        velocities = x0.new_empty((K, *x0.shape)) if keep_velocities else None
    x = x0
    # every step's coefficients in one vectorised call (no per-step schedule evaluation)
    coefs = stepper.on_grid(schedule, times, sigmas).unbind()
    for k, c in enumerate(coefs):
        v = velocity(x, times[k].expand(batch))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = c.apply(x, v, noise)
        if keep_trajectory:
            states[k + 1] = x
            noises[k] = noise
        if keep_velocities:
            velocities[k] = v
    if not keep_trajectory:
        return x
    return Trajectory(states, times, noises, sigmas, velocities)


def sample(
    velocity: Velocity,
    num_samples: int,
    sample_shape: tuple[int, ...],
    *,
    schedule: Schedule,
    num_steps: int,
    diffusion: Diffusion | str | float,
    stepper: Stepper | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device=None,
    chunk_size: int = 65536,
    cond=None,
) -> Tensor:
    """Draw ``[num_samples, *sample_shape]`` samples from ``X_0 ~ N(0, I)`` on a uniform grid,
    in chunks so memory stays bounded. ``diffusion``: ``"ode"``, ``"memoryless"``, a constant
    sigma or a :class:`am.diffusion.Diffusion` (:func:`am.diffusion.make_diffusion`). ``cond``:
    for a conditional velocity ``(x, t, cond)``, the condition of every sample
    (``num_samples`` rows; :mod:`am.conditions`)."""
    diffusion = make_diffusion(diffusion, schedule)
    rows = num_rows(cond)
    if rows is not None and rows != num_samples:
        raise ValueError(f"cond has {rows} rows for num_samples={num_samples}")
    times = uniform_grid(num_steps, dtype=dtype, device=device)
    out = []
    for start in range(0, num_samples, chunk_size):
        n = min(chunk_size, num_samples - start)
        x0 = torch.randn((n, *sample_shape), generator=generator, dtype=dtype, device=device)
        out.append(
            simulate(
                bind_velocity(velocity, take(cond, slice(start, start + n))),
                x0,
                schedule=schedule,
                times=times,
                diffusion=diffusion,
                stepper=stepper,
                generator=generator,
                keep_trajectory=False,
            )
        )
    return torch.cat(out)
