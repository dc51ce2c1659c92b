"""An independent reference for the tilted target where it has no closed form.

The fine-tuning target ``p*(x | c) = p_base(x | c) exp(lambda r(x, c)) / Z_c`` cannot be
sampled, but its expectations can be estimated from base samples alone: with
``x_i ~ p_base(. | c)`` and weights ``w_i = exp(lambda r(x_i, c))``, the self-normalised
importance-sampling estimate

    E_{p*}[f] ~= sum_i w_i f(x_i) / sum_i w_i

is consistent (``N -> infinity``), with the delta-method standard error
``sqrt(sum_i wbar_i^2 (f(x_i) - estimate)^2)`` (``wbar = w / sum w``) and the effective sample
size ``ESS = 1 / sum_i wbar_i^2`` (Kong 1992; Owen, *Monte Carlo theory, methods and examples*,
Section 9.3). Where the ESS is a small fraction of ``N`` the estimate rests on a few samples and
its standard error is itself unreliable: report the ESS beside it. The base samples must come
from the process the fine-tuning tilts (for Adjoint Matching: the base model under the
memoryless SDE, which has the base's marginal at ``t = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TiltedEstimate", "tilted_expectation", "classwise_tilted_expectation"]


@dataclass(frozen=True)
class TiltedEstimate:
    """``mean``, ``stderr`` ``[*value_shape]`` of ``E_{p*}[f]``; ``ess``: effective sample size
    out of ``n`` base samples."""

    mean: Tensor
    stderr: Tensor
    ess: float
    n: int


def tilted_expectation(values: Tensor, *, log_weights: Tensor) -> TiltedEstimate:
    """Self-normalised importance-sampling estimate of ``E_{p*}[f]``.

    ``values [N, *value_shape]``: ``f(x_i)`` at base samples ``x_i``; ``log_weights [N]``:
    ``lambda r(x_i)`` (any constant offset cancels). Computed in float64.
    """
    if log_weights.dim() != 1 or values.shape[0] != log_weights.shape[0]:
        raise ValueError(
            f"values [N, ...] and log_weights [N] must agree: got {list(values.shape)} and "
            f"{list(log_weights.shape)}"
        )
    if not torch.isfinite(log_weights).all():
        raise ValueError("log_weights must be finite")
    w = torch.softmax(log_weights.detach().double(), dim=0)  # normalised, overflow-free
    f = values.detach().double()
    wb = w.reshape(-1, *([1] * (f.dim() - 1)))
    mean = (wb * f).sum(0)
    stderr = ((wb**2) * (f - mean) ** 2).sum(0).sqrt()
    ess = float(1.0 / (w**2).sum())
    return TiltedEstimate(mean=mean, stderr=stderr, ess=ess, n=int(w.shape[0]))


def classwise_tilted_expectation(
    values: Tensor, *, labels: Tensor, log_weights: Tensor
) -> TiltedEstimate:
    """The class average ``(1 / C) sum_c E_{p*(. | c)}[f]`` of per-class estimates
    (:func:`tilted_expectation` within each class: every class is tilted within itself, its
    ``Z_c`` its own). ``values [N, *value_shape]``, ``labels [N]``, ``log_weights [N]``.
    ``stderr``: ``sqrt(sum_c se_c^2) / C`` (the classes' base samples are independent);
    ``ess``: the smallest class's effective sample size; ``n``: the smallest class's size."""
    if labels.dim() != 1 or labels.shape[0] != values.shape[0]:
        raise ValueError(
            f"labels [N] must match values [N, ...]: got {list(labels.shape)} and "
            f"{list(values.shape)}"
        )
    per_class = [
        tilted_expectation(values[labels == c], log_weights=log_weights[labels == c])
        for c in labels.unique()
    ]
    k = len(per_class)
    return TiltedEstimate(
        mean=torch.stack([e.mean for e in per_class]).mean(0),
        stderr=torch.stack([e.stderr**2 for e in per_class]).sum(0).sqrt() / k,
        ess=min(e.ess for e in per_class),
        n=min(e.n for e in per_class),
    )
