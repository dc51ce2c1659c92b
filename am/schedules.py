"""Reference-path schedules ``X_t = beta_t X_0 + alpha_t X_1`` (noise at t=0, data at t=1).

A schedule maps times ``t`` (any shape) to a :class:`ScheduleValues` record holding
``alpha, beta`` and their time derivatives, all of the shape of ``t``. Everything the
memoryless construction needs (``kappa``, ``eta``, the memoryless diffusion
``sqrt(2 eta)``) is derived from that record once, in :class:`ScheduleValues`, so a new
schedule only has to say what ``alpha`` and ``beta`` are.

Notation (the paper's Eqs. 2 and 6; docs/maths.md)::

    kappa_t = alpha'_t / alpha_t
    eta_t   = beta_t (alpha'_t beta_t / alpha_t - beta'_t)
    memoryless diffusion sigma(t) = sqrt(2 eta_t)

``kappa`` and ``eta`` are infinite where ``alpha = 0`` (t = 0 for flow matching), so the
record also offers the finite quantities ``inv_eta = 1 / eta`` and the stable score and
endpoint-prediction formulas used by :mod:`am.sde`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "ScheduleValues",
    "Schedule",
    "FlowMatchingSchedule",
    "VPSchedule",
    "LinearVPSchedule",
    "CosineSchedule",
    "DiscreteVPSchedule",
    "SCHEDULES",
    "make_schedule",
]


@dataclass(frozen=True)
class ScheduleValues:
    """``alpha, beta`` and their time derivatives at some times; every field has ``t``'s shape."""

    t: Tensor
    alpha: Tensor
    beta: Tensor
    d_alpha: Tensor
    d_beta: Tensor

    @property
    def kappa(self) -> Tensor:
        """``alpha' / alpha``; infinite where ``alpha = 0``."""
        return self.d_alpha / self.alpha

    @property
    def eta_numerator(self) -> Tensor:
        """``beta (alpha' beta - alpha beta')`` = ``alpha * eta``; finite everywhere."""
        return self.beta * (self.d_alpha * self.beta - self.alpha * self.d_beta)

    @property
    def eta(self) -> Tensor:
        """``beta (alpha' beta / alpha - beta')`` (score coefficient in ``v = kappa x + eta s``)."""
        return self.eta_numerator / self.alpha

    @property
    def inv_eta(self) -> Tensor:
        """``1 / eta = alpha / (beta (alpha' beta - alpha beta'))``; 0 where ``alpha = 0``."""
        return self.alpha / self.eta_numerator

    @property
    def memoryless_diffusion(self) -> Tensor:
        """``sqrt(2 eta_t)`` (the paper's Eq. 19): the unique diffusion making ``X_0`` independent of ``X_1``."""
        return torch.sqrt(2.0 * self.eta)

    def broadcast_to(self, x: Tensor) -> ScheduleValues:
        """Append singleton dims so that fields of shape ``[B]`` broadcast against ``x [B, ...]``."""
        extra = x.dim() - self.t.dim()
        shape = self.t.shape + (1,) * extra

        def r(v: Tensor) -> Tensor:
            return v.reshape(shape)

        return ScheduleValues(
            r(self.t), r(self.alpha), r(self.beta), r(self.d_alpha), r(self.d_beta)
        )


class Schedule(ABC):
    """Base class: subclasses implement :meth:`values`. Call ``schedule(t)`` for the record."""

    name: str = "schedule"

    @abstractmethod
    def values(self, t: Tensor) -> ScheduleValues:
        """The record at times ``t`` (any shape)."""

    def __call__(self, t: Tensor | float) -> ScheduleValues:
        t = torch.as_tensor(t, dtype=torch.get_default_dtype() if not torch.is_tensor(t) else None)
        if not torch.is_floating_point(t):
            t = t.to(torch.get_default_dtype())
        return self.values(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FlowMatchingSchedule(Schedule):
    """Linear interpolant ``alpha = t, beta = 1 - t``: ``kappa = 1/t``, ``eta = (1-t)/t``,
    memoryless ``sigma = sqrt(2 (1-t) / t)``."""

    name = "flow_matching"

    def values(self, t: Tensor) -> ScheduleValues:
        one = torch.ones_like(t)
        return ScheduleValues(t=t, alpha=t, beta=1 - t, d_alpha=one, d_beta=-one)


class VPSchedule(Schedule):
    """Variance preserving: ``alpha = sqrt(abar), beta = sqrt(1 - abar)`` from an ``abar(t)`` curve.

    Subclasses implement :meth:`log_abar` and its derivative :meth:`d_log_abar`; working in
    ``log abar`` keeps ``alpha'`` finite where ``abar`` is tiny. Memoryless diffusion here is
    ``sqrt(abar' / abar)``, the DDPM schedule (DDIM with eta = 1).
    """

    @abstractmethod
    def log_abar(self, t: Tensor) -> Tensor:
        """``log abar(t)``."""

    @abstractmethod
    def d_log_abar(self, t: Tensor) -> Tensor:
        """``d/dt log abar(t)``."""

    def values(self, t: Tensor) -> ScheduleValues:
        la, dla = self.log_abar(t), self.d_log_abar(t)
        abar = torch.exp(la)
        alpha = torch.exp(0.5 * la)
        beta = torch.sqrt(-torch.expm1(la))
        d_alpha = 0.5 * dla * alpha
        # beta' = -abar' / (2 beta) = -abar dla / (2 beta); infinite at t = 1 where beta = 0.
        d_beta = -0.5 * dla * abar / beta
        return ScheduleValues(t=t, alpha=alpha, beta=beta, d_alpha=d_alpha, d_beta=d_beta)


class LinearVPSchedule(VPSchedule):
    """Continuous linear-beta VP (Song et al. 2021) in noise time ``s = 1 - t``:
    ``log abar = -(beta_min s + (beta_max - beta_min) s^2 / 2)``. ``alpha_0 = exp(-10.05/2) > 0``."""

    name = "vp_linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not (0 < beta_min < beta_max):
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = beta_min, beta_max

    def log_abar(self, t: Tensor) -> Tensor:
        s = 1 - t
        return -(self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2)

    def d_log_abar(self, t: Tensor) -> Tensor:
        s = 1 - t
        return self.beta_min + (self.beta_max - self.beta_min) * s

    def __repr__(self) -> str:
        return f"LinearVPSchedule(beta_min={self.beta_min}, beta_max={self.beta_max})"


class CosineSchedule(Schedule):
    """Cosine schedule (Nichol & Dhariwal 2021) in noise time ``s = 1 - t``:
    ``alpha = sqrt(abar) = cos(pi/2 (s + o)/(1 + o)) / cos(pi/2 o/(1 + o))``, ``beta = sqrt(1 - abar)``;
    with ``offset = 0`` it is the trigonometric interpolant ``alpha = sin(pi t / 2)``. ``alpha_0 = 0``,
    so like flow matching its memoryless diffusion is infinite at t = 0."""

    name = "cosine"

    def __init__(self, offset: float = 0.008):
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        self.offset = offset

    def values(self, t: Tensor) -> ScheduleValues:
        # cos(pi/2 (1 - t + o)/(1 + o)) = sin(pi/2 t/(1 + o)): written with sin so alpha_0 is
        # exactly 0 (the memoryless diffusion then knows it is singular there).
        c0 = math.cos(0.5 * math.pi * self.offset / (1 + self.offset))
        rate = 0.5 * math.pi / (1 + self.offset)
        alpha = torch.sin(rate * t) / c0
        d_alpha = torch.cos(rate * t) * rate / c0
        beta = torch.sqrt(torch.clamp(1 - alpha**2, min=0.0))
        d_beta = -alpha * d_alpha / beta
        return ScheduleValues(t=t, alpha=alpha, beta=beta, d_alpha=d_alpha, d_beta=d_beta)

    def __repr__(self) -> str:
        return f"CosineSchedule(offset={self.offset})"


class DiscreteVPSchedule(VPSchedule):
    """A discrete diffusers-style beta schedule (default: Stable Diffusion's ``scaled_linear``,
    betas 0.00085 .. 0.012 over 1000 steps) as a continuous-time schedule.

    Time convention (the one place the two directions meet): diffusers' timestep ``tau`` in
    ``0 .. T-1`` (``T-1`` noisiest) sits at ``t = (T - 1 - tau) / T``; ``t = 1`` is a clean
    extra knot with ``abar = 1``. ``log abar`` is piecewise linear in ``t`` between knots, so
    ``alpha, beta`` at knot times equal the scheduler's ``alphas_cumprod`` exactly, and
    ``alpha_0 = sqrt(abar[T-1]) > 0`` (Stable Diffusion has non-zero terminal SNR).
    """

    name = "vp_discrete"

    def __init__(
        self,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "scaled_linear",
    ):
        T = num_train_timesteps
        if beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
        elif beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        else:
            raise ValueError(
                f"beta_schedule must be 'scaled_linear' or 'linear', got {beta_schedule!r}"
            )
        self.T = T
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)
        # knots ordered by t ascending: tau = T-1 (t=0) ... tau = 0 (t=(T-1)/T), then t=1 clean.
        log_abar = torch.log(self.alphas_cumprod).flip(0)
        self._knots_log_abar = torch.cat([log_abar, torch.zeros(1, dtype=torch.float64)])

    def timestep_to_time(self, tau: Tensor) -> Tensor:
        """diffusers timestep (``T-1`` = noise) -> our time ``t`` (0 = noise)."""
        return (self.T - 1 - tau.to(torch.float64)) / self.T

    def time_to_timestep(self, t: Tensor) -> Tensor:
        """Our time ``t`` -> (fractional) diffusers timestep; inverse of :meth:`timestep_to_time`."""
        return self.T - 1 - t * self.T

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor]:
        pos = torch.clamp(t * self.T, 0, self.T)
        idx = torch.clamp(pos.detach().floor().long(), max=self.T - 1)
        return idx, pos - idx

    def log_abar(self, t: Tensor) -> Tensor:
        knots = self._knots_log_abar.to(device=t.device, dtype=t.dtype)
        idx, frac = self._segment(t)
        return knots[idx] + frac * (knots[idx + 1] - knots[idx])

    def d_log_abar(self, t: Tensor) -> Tensor:
        knots = self._knots_log_abar.to(device=t.device, dtype=t.dtype)
        idx, _ = self._segment(t)
        return (knots[idx + 1] - knots[idx]) * self.T


SCHEDULES: dict[str, type[Schedule]] = {
    FlowMatchingSchedule.name: FlowMatchingSchedule,
    LinearVPSchedule.name: LinearVPSchedule,
    CosineSchedule.name: CosineSchedule,
    DiscreteVPSchedule.name: DiscreteVPSchedule,
}


def make_schedule(name: str, **kwargs) -> Schedule:
    """Build a schedule by name; unknown names list the valid ones."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid: {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)
