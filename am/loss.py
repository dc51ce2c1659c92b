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

:class:`QuantileDrop` is the authors' Stable Diffusion code's dropping of high-loss terms: a
term whose root is not below a running (EMA) quantile of the batch's roots contributes nothing.

Step subsets (:class:`StepSubset`): ``"all"``, ``"uniform"`` (``num_steps`` random steps),
``"paper"`` (``num_random`` random steps from the first ``early_fraction`` of the grid plus the
last ``num_last`` steps; Appendix G uses 10 of the first 75 % plus the last 10 of 40) or
``"split"`` (``num_steps // 2`` random steps from the first ``early_fraction`` of the grid and
the rest from the remainder: the authors' Stable Diffusion code, 2 of the first 60 % and 2 of
the last 40 % of 50).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from am.fields import FieldError

__all__ = ["StepSubset", "WEIGHTINGS", "adjoint_matching_loss", "LossTerms", "QuantileDrop"]

WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "uniform": torch.ones_like,
    "drift": lambda sigma: sigma**2,
    "adjoint": lambda sigma: sigma**-2,
}


@dataclass(frozen=True)
class StepSubset:
    """Which steps enter the loss. ``mode`` in ``{"all", "uniform", "paper", "split"}``; steps below
    ``start`` never do (``start = 1`` leaves out the singular first step, whose discrete target
    is not the continuous control: docs/implementation.md)."""

    mode: str = "all"
    num_steps: int = 20
    num_random: int = 10
    early_fraction: float = 0.75
    num_last: int = 10
    start: int = 0

    def __post_init__(self):
        if self.mode not in ("all", "uniform", "paper", "split"):
            raise FieldError(
                "mode",
                f"step subset mode must be 'all', 'uniform', 'paper' or 'split', got {self.mode!r}",
            )
        for key in ("num_steps", "num_random", "num_last", "start"):
            if getattr(self, key) < 0:
                raise FieldError(key, f"step subset {key} must be >= 0, got {getattr(self, key)}")
        if not 0 < self.early_fraction <= 1:
            raise FieldError(
                "early_fraction",
                f"step subset early_fraction must be in (0, 1], got {self.early_fraction}",
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
        def randperm(n: int) -> Tensor:  # on the generator's device (a GPU's), returned on the CPU
            device = "cpu" if generator is None else generator.device
            return torch.randperm(n, generator=generator, device=device).cpu()

        if self.mode == "all":
            return torch.arange(K)
        if self.mode == "uniform":
            m = min(self.num_steps, K)
            return randperm(K)[:m].sort().values
        if self.mode == "split":  # their middle: round(K * 0.6), Python's round
            middle = min(max(int(round(self.early_fraction * K)), 1), K - 1) if K > 1 else K
            n_early = min(self.num_steps // 2, middle)
            n_late = min(self.num_steps - self.num_steps // 2, K - middle)
            early = randperm(middle)[:n_early]
            late = middle + randperm(K - middle)[:n_late]
            return torch.cat([early, late]).sort().values
        n_last = min(self.num_last, K)
        n_early = min(int(round(self.early_fraction * K)), K - n_last)
        early = randperm(n_early)[: min(self.num_random, n_early)]
        last = torch.arange(K - n_last, K)
        return torch.cat([early, last]).unique().sort().values


class QuantileDrop:
    """Drops the loss terms whose root ``sqrt(term)`` is not below a running threshold: the
    exponential moving average (decay ``decay``) of the ``quantile``-quantile of the roots of
    each batch's ``M x B`` terms, the current batch's included. This is the Adjoint Matching
    authors' Stable Diffusion code (``per_sample_threshold_quantile = 0.9``, decay 0.9, the
    first two values averaged before the EMA starts); a dropped term counts as zero in the
    mean, as there.

    The EMA advances once per micro-batch, in micro-batch order, so a run is the same for any
    number of processes; within one optimizer step each micro-batch's threshold is one EMA
    step from the state at the step's start with its own quantile (with one micro-batch, the
    authors' rule exactly; with several, theirs also folds in the step's earlier
    micro-batches). :meth:`keep` records each micro-batch's quantile, :meth:`commit` (once per
    step, on every process) gathers them and advances the EMA."""

    def __init__(self, quantile: float, decay: float = 0.9):
        if not 0 < quantile <= 1:
            raise ValueError(f"drop quantile must be in (0, 1], got {quantile!r}")
        if not 0 < decay < 1:
            raise ValueError(f"drop EMA decay must be in (0, 1), got {decay!r}")
        self.quantile, self.decay = float(quantile), float(decay)
        self.value: float | None = None  # the committed EMA of the quantiles
        self.updates = 0
        self._pending: list[float] = []

    def _advanced(self, value: float | None, updates: int, q: float) -> float:
        """One update of the authors' EMA: the mean of the first ``1 / decay`` values, then
        ``decay * value + (1 - decay) * q``."""
        if updates == 0:
            return q
        if updates < 1 / self.decay:
            return q / (updates + 1) + (1 - 1 / (updates + 1)) * value
        return self.decay * value + (1 - self.decay) * q

    def threshold(self, q: float) -> float:
        """The threshold a micro-batch with quantile ``q`` is cut at."""
        return self._advanced(self.value, self.updates, q)

    def keep(self, terms: Tensor) -> Tensor:
        """``terms [M, B]`` (detached) -> the boolean mask of the terms that stay. Non-finite
        terms keep everything (the loss is then non-finite and the trainer stops)."""
        roots = terms.detach().double().sqrt()
        q = float(torch.quantile(roots.flatten(), self.quantile))
        if not math.isfinite(q):
            return torch.ones_like(terms, dtype=torch.bool)
        self._pending.append(q)
        return roots < self.threshold(q)

    def commit(self, parallel) -> None:
        """Advance the EMA by every process's micro-batches of this step, in micro-batch order
        (process ``r`` holds the ``r``-th contiguous block, as the trainer shares them out)."""
        n, rank, world = len(self._pending), parallel.rank, parallel.world_size
        gathered = torch.zeros(world * n, dtype=torch.float64, device=parallel.device)
        gathered[rank * n : (rank + 1) * n] = torch.tensor(self._pending, dtype=torch.float64)
        parallel.sum_([gathered])  # the others' entries are zeros: the sum is exact
        for q in gathered.tolist():
            self.value, self.updates = self._advanced(self.value, self.updates, q), self.updates + 1
        self._pending.clear()

    def state_dict(self) -> dict:
        return {"value": self.value, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.updates = state["value"], int(state["updates"])
        self._pending.clear()


@dataclass(frozen=True)
class LossTerms:
    """``loss`` (scalar, differentiable), ``terms [M, B]`` (unclipped, detached) and the
    fractions of terms that hit the clip and that were dropped."""

    loss: Tensor
    terms: Tensor
    clipped_fraction: float
    dropped_fraction: float = 0.0


def adjoint_matching_loss(
    control: Tensor,
    *,
    target: Tensor,
    weights: Tensor,
    clip: float | None = None,
    drop: QuantileDrop | None = None,
) -> LossTerms:
    """``control, target [M, B, *shape]`` (``target = -sigma_k a_{k+o}``, detached), ``weights [M]``.

    Per-term clipping (``clip``, the paper's ``1.6 lambda^2``) caps each squared residual: a
    clipped term contributes no gradient, which drops rare trajectories with huge adjoints.
    ``drop`` (:class:`QuantileDrop`) zeroes the terms above its running quantile instead.
    """
    if control.shape != target.shape:
        raise ValueError(f"control {tuple(control.shape)} and target {tuple(target.shape)} differ")
    resid = (control - target.detach()).flatten(2)
    terms = (resid**2).sum(-1)  # [M, B]
    clipped = terms if clip is None else torch.clamp(terms, max=clip)
    frac = 0.0 if clip is None else float((terms.detach() > clip).float().mean())
    dropped = 0.0
    if drop is not None:
        keep = drop.keep(terms.detach())
        clipped = clipped * keep
        dropped = 1.0 - float(keep.double().mean())
    loss = (weights.reshape(-1, 1) * clipped).mean()
    return LossTerms(
        loss=loss, terms=terms.detach(), clipped_fraction=frac, dropped_fraction=dropped
    )
