"""Diffusion coefficients ``sigma(t)`` of the generative SDE ``dX = b dt + sigma dW``.

Any ``sigma`` gives an SDE with the same marginals as the reference path (``b = v + sigma^2/2 s``);
only the memoryless one, ``sigma = sqrt(2 eta)``, makes ``X_0`` independent of ``X_1`` and hence
makes the SOC solution the tilted distribution (Theorem 1 of the paper).

A diffusion is queried on a time grid: ``diffusion.on_grid(times [K+1]) -> [K]`` gives the value
used on step ``k`` (the interval ``[t_k, t_{k+1}]``, evaluated at the left end as Euler-Maruyama
does). The memoryless diffusion is infinite where ``alpha_t = 0`` (t = 0 for flow matching and
cosine); there the grid value uses the paper's offset ``eta ~ (beta_t + h) / (alpha_t + h)``,
which for flow matching is exactly ``sigma(0) = sqrt(2 (1 + h) / h)`` of Appendix G
(``sqrt(2 (1 - t + h) / (t + h))`` at t = 0). Everywhere else the exact value is used: the offset
biases the last steps (docs/maths.md section 6).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from am.schedules import Schedule

__all__ = [
    "Diffusion",
    "MemorylessDiffusion",
    "ConstantDiffusion",
    "ScaledDiffusion",
    "make_diffusion",
]


class Diffusion(ABC):
    """Base class. Subclasses implement :meth:`__call__` (pointwise) and may refine :meth:`on_grid`."""

    memoryless: bool = False

    @abstractmethod
    def __call__(self, t: Tensor) -> Tensor:
        """``sigma(t)``, elementwise."""

    def on_grid(self, times: Tensor) -> Tensor:
        """Values on steps ``[t_k, t_{k+1}]``: ``times [K+1] -> sigma [K]`` (left end)."""
        return self(times[:-1])


class MemorylessDiffusion(Diffusion):
    """``sigma(t) = sqrt(2 eta_t)`` (the paper's Eq. 19), with the paper's offset only where it is infinite."""

    memoryless = True

    def __init__(self, schedule: Schedule):
        self.schedule = schedule

    def __call__(self, t: Tensor) -> Tensor:
        return self.schedule(t).memoryless_diffusion

    def on_grid(self, times: Tensor) -> Tensor:
        left = self.schedule(times[:-1])
        h = times[1:] - times[:-1]
        exact = torch.sqrt(2 * left.eta_numerator / left.alpha)
        offset = torch.sqrt(2 * (left.beta + h) / (left.alpha + h))
        return torch.where(left.alpha > 0, exact, offset)

    def __repr__(self) -> str:
        return f"MemorylessDiffusion({self.schedule!r})"


class ConstantDiffusion(Diffusion):
    """``sigma(t) = value``; ``value = 0`` is the probability-flow ODE."""

    def __init__(self, value: float):
        if not value >= 0:
            raise ValueError(f"constant diffusion must be >= 0, got {value}")
        self.value = float(value)

    def __call__(self, t: Tensor) -> Tensor:
        return torch.full_like(t, self.value)

    def __repr__(self) -> str:
        return f"ConstantDiffusion({self.value})"


class ScaledDiffusion(Diffusion):
    """``factor * inner``: e.g. Flow-GRPO's noise level ``a`` is ``ScaledDiffusion(memoryless,
    a / sqrt(2))`` (``a = sqrt(2)`` is memoryless). Grid values (offsets included) are scaled too."""

    def __init__(self, inner: Diffusion, factor: float):
        if not factor >= 0:
            raise ValueError(f"diffusion scale factor must be >= 0, got {factor!r}")
        self.inner, self.factor = inner, float(factor)
        self.memoryless = inner.memoryless and self.factor == 1.0

    def __call__(self, t: Tensor) -> Tensor:
        return self.factor * self.inner(t)

    def on_grid(self, times: Tensor) -> Tensor:
        return self.factor * self.inner.on_grid(times)

    def __repr__(self) -> str:
        return f"ScaledDiffusion({self.inner!r}, {self.factor})"


def make_diffusion(spec: str | float | Diffusion, schedule: Schedule) -> Diffusion:
    """``"memoryless"``, ``"ode"`` (0), a number (constant), or a :class:`Diffusion`."""
    if isinstance(spec, Diffusion):
        return spec
    if isinstance(spec, str):
        if spec == "memoryless":
            return MemorylessDiffusion(schedule)
        if spec == "ode":
            return ConstantDiffusion(0.0)
        raise ValueError(f"diffusion must be 'memoryless', 'ode' or a number >= 0, got {spec!r}")
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise ValueError(f"diffusion must be 'memoryless', 'ode' or a number >= 0, got {spec!r}")
    return ConstantDiffusion(float(spec))
