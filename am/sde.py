"""Generative SDEs from a velocity model, transition steps, trajectories and sampling.

A *velocity model* is any callable ``velocity(x [B, *shape], t [B]) -> [B, *shape]`` (an
``nn.Module``, an exact Gaussian-mixture velocity, a closure around a conditional network).

For any diffusion ``sigma(t)`` the SDE ``dX = b dt + sigma dW`` with

    b(x, t) = v(x, t) + sigma(t)^2 / 2 * s(x, t),     s = (v - kappa x) / eta        (the paper's Eq. 6)

has the marginals of the ODE ``dX = v dt``. The score is formed stably as
``s = (alpha v - alpha' x) / (beta (alpha' beta - alpha beta'))`` which is finite at t = 0.

Two steppers (docs/maths.md section 6):

* :class:`EulerMaruyama` (default for flow-matching bases): ``X' = X + h b + sigma sqrt(h) eps``.
* :class:`DDPMStep`: the Gaussian transition of the memoryless reference process given the
  endpoint, with the endpoint replaced by its prediction ``y = E[X_1 | X_t]``; for VP schedules
  it is DDPM (DDIM with eta = 1). It ignores ``sigma`` (it is memoryless by construction).

Both are affine in the state, the velocity output and the noise,
``X_{k+1} = c_x X_k + c_v v(X_k, t_k) + c_eps eps_k``, with coefficients that depend on the grid
and ``sigma`` only (:class:`StepCoefficients`): :func:`simulate` computes them for the whole grid
in one vectorised call, so a step costs the velocity call plus three multiply-adds.

Each stepper also fixes which adjoint index the Adjoint Matching target uses
(``target_adjoint_offset``): EM regresses ``u(X_k)`` on ``-sigma_k a_{k+1}``, the DDPM step on
``-sigma_k a_k`` (measured fixed points in docs/maths.md section 5).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from am.conditions import bind_velocity, num_rows, take
from am.diffusion import Diffusion, make_diffusion
from am.schedules import Schedule, ScheduleValues

Velocity = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "Velocity",
    "score_from_velocity",
    "endpoint_from_velocity",
    "drift",
    "control_coefficient",
    "StepCoefficients",
    "Stepper",
    "EulerMaruyama",
    "DDPMStep",
    "STEPPERS",
    "make_stepper",
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
class StepCoefficients:
    """``X_{k+1} = x X_k + v v(X_k, t_k) + noise eps_k``; every field has the shape of the
    schedule record's ``t`` (a scalar for one step, ``[K]`` for a grid's steps)."""

    x: Tensor
    v: Tensor
    noise: Tensor

    def mean(self, x: Tensor, v: Tensor) -> Tensor:
        """``c_x x + c_v v`` (the part of the step that depends on the state)."""
        return self.x * x + self.v * v

    def apply(self, x: Tensor, v: Tensor, noise: Tensor) -> Tensor:
        return self.mean(x, v) + self.noise * noise

    def unbind(self) -> list[StepCoefficients]:
        """Per-step records of a grid's ``[K]`` coefficients."""
        fields = (self.x.unbind(), self.v.unbind(), self.noise.unbind())
        return [StepCoefficients(*c) for c in zip(*fields, strict=True)]


class Stepper(ABC):
    """One transition ``X_k -> X_{k+1}`` given the velocity output at ``(X_k, t_k)``, affine in
    ``(X_k, v, eps)``: subclasses give its coefficients."""

    name: str = "stepper"
    target_adjoint_offset: int = 1

    @abstractmethod
    def coefficients(
        self, sv: ScheduleValues, sv_next: ScheduleValues, sigma: Tensor
    ) -> StepCoefficients:
        """Coefficients of the steps from ``sv.t`` to ``sv_next.t`` (same shapes as ``sigma``)."""

    def on_grid(self, schedule: Schedule, times: Tensor, sigmas: Tensor) -> StepCoefficients:
        """Coefficients ``[K]`` of every step of ``times [K+1]`` (``sigmas [K]``), one call."""
        return self.coefficients(schedule(times[:-1]), schedule(times[1:]), sigmas)

    def noise_scale(self, sv: ScheduleValues, sv_next: ScheduleValues, sigma: Tensor) -> Tensor:
        """Standard deviation multiplying the step's standard normal noise."""
        return self.coefficients(sv, sv_next, sigma).noise

    def step(
        self,
        x: Tensor,
        v: Tensor,
        *,
        sv: ScheduleValues,
        sv_next: ScheduleValues,
        sigma: Tensor,
        noise: Tensor,
    ) -> Tensor:
        """``x, v, noise [B, *shape]``; ``sv, sv_next`` at scalar times ``t_k, t_{k+1}``."""
        return self.coefficients(sv, sv_next, sigma).apply(x, v, noise)


class EulerMaruyama(Stepper):
    """``X_{k+1} = X_k + h b(X_k, t_k) + sigma_k sqrt(h) eps_k``; sigma = 0 is Euler on the ODE.
    With ``b = v + sigma^2/2 (alpha v - alpha' x) / N`` (:func:`drift`, ``N = eta_numerator``):
    ``c_x = 1 - h sigma^2 alpha' / (2 N)``, ``c_v = h (1 + sigma^2 alpha / (2 N))``,
    ``c_eps = sigma sqrt(h)``."""

    name = "euler_maruyama"
    target_adjoint_offset = 1

    def coefficients(self, sv, sv_next, sigma):
        h = sv_next.t - sv.t
        # sigma = 0 (the ODE) must give c_x = 1, c_v = h exactly, also where N = 0 (t = 1)
        half_var = torch.where(sigma == 0, 0.0, 0.5 * sigma**2 / sv.eta_numerator)
        return StepCoefficients(
            x=1 - h * half_var * sv.d_alpha,
            v=h * (1 + half_var * sv.alpha),
            noise=sigma * torch.sqrt(h),
        )


class DDPMStep(Stepper):
    """``X' = alpha' y + Phi (X - alpha y) + sqrt(beta'^2 - Phi^2 beta^2) eps`` with
    ``Phi = (beta'/beta)^2 (alpha/alpha')`` and ``y = E[X_1 | X_t]`` from the velocity (primes
    here mean the next time). The memoryless transition given ``X_1 = y``; DDPM for VP schedules.
    With ``y = (beta v - beta' x) / D`` (:func:`endpoint_from_velocity`) and
    ``w = (alpha' - Phi alpha) / D``: ``c_x = Phi - w beta'``, ``c_v = w beta``."""

    name = "ddpm"
    target_adjoint_offset = 0

    @staticmethod
    def _phi(sv: ScheduleValues, sv_next: ScheduleValues) -> Tensor:
        return (sv_next.beta / sv.beta) ** 2 * (sv.alpha / sv_next.alpha)

    def coefficients(self, sv, sv_next, sigma):
        phi = self._phi(sv, sv_next)
        w = (sv_next.alpha - phi * sv.alpha) / (sv.d_alpha * sv.beta - sv.alpha * sv.d_beta)
        noise = torch.sqrt(torch.clamp(sv_next.beta**2 - phi**2 * sv.beta**2, min=0.0))
        return StepCoefficients(x=phi - w * sv.d_beta, v=w * sv.beta, noise=noise)


STEPPERS: dict[str, type[Stepper]] = {EulerMaruyama.name: EulerMaruyama, DDPMStep.name: DDPMStep}


def make_stepper(name: str) -> Stepper:
    if name not in STEPPERS:
        raise ValueError(f"unknown stepper {name!r}; valid: {sorted(STEPPERS)}")
    return STEPPERS[name]()


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
