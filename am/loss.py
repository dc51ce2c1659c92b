"""The Adjoint Matching regression loss (the paper's Section 4, discretised as in docs/maths.md section 7).

On a trajectory ``X_0 .. X_K`` of the current (frozen) fine-tuned process and its lean adjoint
``a_0 .. a_K``, the loss on a subset ``S`` of steps is

    L = 1/|S| sum_{k in S} w_k  min( || u_theta(X_k, t_k) + sigma_k a_{k + o} ||^2 , clip )

averaged over the batch, where ``u_theta = c_k (v_theta - v_base)`` (:func:`am.sde.control_coefficient`),
``o`` is the stepper's ``target_adjoint_offset`` (1 for Euler-Maruyama, 0 for the DDPM step) and
``w_k`` the time weighting (:data:`WEIGHTINGS`): ``"uniform"`` (the paper), ``"drift"``
(``sigma_k^2``: regressing the drift difference ``b_ft - b_base`` on ``-sigma^2 a``, as some
implementations do) or ``"adjoint"`` (``1 / sigma_k^2``: regressing ``u / sigma`` on ``-a``, which
down-weights the early steps where ``sigma`` is large and the targets' variance with it). The
weighting moves no fixed point (each step's minimiser is its conditional mean), only where the
regression noise goes. ``1/|S|``
makes the sum an estimate of the time integral on a uniform grid up to the constant ``1/2``.
Only ``u_theta`` carries gradient: trajectory and adjoints are constants.

Step subsets (:class:`StepSubset`): ``"all"``, ``"uniform"`` (``num_steps`` random steps) or
``"paper"`` (``num_random`` random steps from the first ``early_fraction`` of the grid plus the
last ``num_last`` steps; Appendix G uses 10 of the first 75 % plus the last 10 of 40).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["StepSubset", "WEIGHTINGS", "adjoint_matching_loss", "LossTerms"]

WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "uniform": torch.ones_like,
    "drift": lambda sigma: sigma**2,
    "adjoint": lambda sigma: sigma**-2,
}


@dataclass(frozen=True)
class StepSubset:
    """Which steps enter the loss. ``mode`` in ``{"all", "uniform", "paper"}``; steps below
    ``start`` never do (``start = 1`` leaves out the singular first step, whose discrete target
    is not the continuous control: docs/findings.md)."""

    mode: str = "all"
    num_steps: int = 20
    num_random: int = 10
    early_fraction: float = 0.75
    num_last: int = 10
    start: int = 0

    def __post_init__(self):
        if self.mode not in ("all", "uniform", "paper"):
            raise ValueError(
                f"step subset mode must be 'all', 'uniform' or 'paper', got {self.mode!r}"
            )
        for key in ("num_steps", "num_random", "num_last", "start"):
            if getattr(self, key) < 0:
                raise ValueError(f"step subset {key} must be >= 0, got {getattr(self, key)}")
        if not 0 < self.early_fraction <= 1:
            raise ValueError(
                f"step subset early_fraction must be in (0, 1], got {self.early_fraction}"
            )

    def select(self, K: int, generator: torch.Generator | None = None) -> Tensor:
        """Sorted step indices ``[M]`` in ``start .. K-1``."""
        if not self.start < K:
            raise ValueError(
                f"step subset start must be < the number of steps {K}, got {self.start}"
            )
        if self.start:
            return self._select(K - self.start, generator) + self.start
        return self._select(K, generator)

    def _select(self, K: int, generator: torch.Generator | None) -> Tensor:
        if self.mode == "all":
            return torch.arange(K)
        if self.mode == "uniform":
            m = min(self.num_steps, K)
            return torch.randperm(K, generator=generator)[:m].sort().values
        n_last = min(self.num_last, K)
        n_early = min(int(round(self.early_fraction * K)), K - n_last)
        early = torch.randperm(n_early, generator=generator)[: min(self.num_random, n_early)]
        last = torch.arange(K - n_last, K)
        return torch.cat([early, last]).unique().sort().values


@dataclass(frozen=True)
class LossTerms:
    """``loss`` (scalar, differentiable), ``terms [M, B]`` (unclipped, detached) and the fraction
    of terms that hit the clip."""

    loss: Tensor
    terms: Tensor
    clipped_fraction: float


def adjoint_matching_loss(
    control: Tensor,
    *,
    target: Tensor,
    weights: Tensor,
    clip: float | None = None,
) -> LossTerms:
    """``control, target [M, B, *shape]`` (``target = -sigma_k a_{k+o}``, detached), ``weights [M]``.

    Per-term clipping (``clip``, the paper's ``1.6 lambda^2``) caps each squared residual: a
    clipped term contributes no gradient, which drops rare trajectories with huge adjoints.
    """
    if control.shape != target.shape:
        raise ValueError(f"control {tuple(control.shape)} and target {tuple(target.shape)} differ")
    resid = (control - target.detach()).flatten(2)
    terms = (resid**2).sum(-1)  # [M, B]
    clipped = terms if clip is None else torch.clamp(terms, max=clip)
    frac = 0.0 if clip is None else float((terms.detach() > clip).float().mean())
    loss = (weights.reshape(-1, 1) * clipped).mean()
    return LossTerms(loss=loss, terms=terms.detach(), clipped_fraction=frac)
