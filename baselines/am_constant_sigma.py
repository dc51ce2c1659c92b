"""Adjoint Matching with a constant, non-memoryless diffusion: the ablation behind Theorem 1
(the paper's Section 3 and Figure 2).

Objective: the lean-adjoint Adjoint Matching regression, but rollouts use ``sigma(t) = sigma``
(constant) instead of the memoryless ``sqrt(2 eta_t)``. The SOC problem is still well posed, but
with ``X_0`` and ``X_1`` dependent under the base process its optimum tilts the *joint* law of
``(X_0, X_1)``, so the fine-tuned marginal is ``p_base(x_1) E[exp(lambda r) ...]``-biased rather
than ``p_base exp(lambda r)``: small ``sigma`` barely moves the model, large ``sigma`` stops part
way. Kept as a method so the bias is measured by the same tables as everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from am.methods.adjoint_matching import AdjointMatching, AdjointMatchingConfig
from am.methods.base import check_number

__all__ = ["ConstantSigmaConfig", "AdjointMatchingConstantSigma"]


@dataclass(frozen=True)
class ConstantSigmaConfig(AdjointMatchingConfig):
    """:class:`AdjointMatchingConfig` with a numeric ``diffusion`` (default 1.0, Figure 2's
    larger value; the paper also shows 0.2)."""

    diffusion: float = 1.0

    def __post_init__(self):
        check_number("diffusion", self.diffusion, minimum=0.0, strict=True)
        super().__post_init__()


class AdjointMatchingConstantSigma(AdjointMatching):
    """Adjoint Matching rolled out with a constant sigma (biased, Theorem 1)."""

    name = "am_constant_sigma"
    config_class = ConstantSigmaConfig
