"""One transition of a generative SDE, ``X_k -> X_{k+1}``, given the velocity output at
``(X_k, t_k)``.

Two steppers (docs/maths.md section 6):

* :class:`EulerMaruyama` (default for flow-matching bases): ``X' = X + h b + sigma sqrt(h) eps``.
* :class:`DDPMStep`: the Gaussian transition of the memoryless reference process given the
  endpoint, with the endpoint replaced by its prediction ``y = E[X_1 | X_t]``; for VP schedules
  it is DDPM (DDIM with eta = 1). It ignores ``sigma`` (it is memoryless by construction).

Both are affine in the state, the velocity output and the noise,
``X_{k+1} = c_x X_k + c_v v(X_k, t_k) + c_eps eps_k``, with coefficients that depend on the
grid and ``sigma`` only (:class:`StepCoefficients`): :func:`am.sde.simulate` computes them for
the whole grid in one vectorised call, so a step costs the velocity call plus three
multiply-adds.

Each stepper also fixes which adjoint index the Adjoint Matching target uses
(``target_adjoint_offset``): EM regresses ``u(X_k)`` on ``-sigma_k a_{k+1}``, the DDPM step on
``-sigma_k a_k`` (measured fixed points in docs/maths.md section 5).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from am.schedules import Schedule, ScheduleValues

__all__ = [
    "StepCoefficients",
    "Stepper",
    "EulerMaruyama",
    "DDPMStep",
    "STEPPERS",
    "make_stepper",
]


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
    With ``b = v + sigma^2/2 (alpha v - alpha' x) / N`` (:func:`am.sde.drift`,
    ``N = eta_numerator``): ``c_x = 1 - h sigma^2 alpha' / (2 N)``,
    ``c_v = h (1 + sigma^2 alpha / (2 N))``, ``c_eps = sigma sqrt(h)``."""

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
    With ``y = (beta v - beta' x) / D`` (:func:`am.sde.endpoint_from_velocity`) and
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
