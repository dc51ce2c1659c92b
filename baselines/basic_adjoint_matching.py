"""Basic Adjoint Matching / continuous adjoint (the paper's Eqs. 20-22; the paper's
"continuous adjoint" baseline).

Objective: the same memoryless SOC problem as Adjoint Matching, but the regression target uses
the *full* adjoint ``a~``, whose backward equation carries the ``u`` terms (the derivative of the
running cost and of the controlled drift with respect to the state). The gradient of this loss
equals the gradient of the SOC objective (the continuous adjoint method); on our Euler-Maruyama
grid it equals the discrete adjoint's gradient path by path (tests/baselines). The lean adjoint
drops the ``u`` terms because they vanish in expectation at the optimum, which removes one
fine-tuned-model VJP per step and a source of variance. The paper clips continuous-adjoint
terms at ``1600 lambda^2`` (vs ``1.6 lambda^2`` for Adjoint Matching).
"""

from __future__ import annotations

from dataclasses import dataclass

from am.fields import FieldError
from am.methods.adjoint_matching import AdjointMatching, AdjointMatchingConfig

__all__ = ["BasicAdjointMatchingConfig", "BasicAdjointMatching"]


@dataclass(frozen=True)
class BasicAdjointMatchingConfig(AdjointMatchingConfig):
    """:class:`AdjointMatchingConfig` with ``adjoint = "full"`` (the only value accepted)."""

    adjoint: str = "full"

    def __post_init__(self):
        super().__post_init__()
        if self.adjoint != "full":
            raise FieldError(
                "adjoint",
                f"adjoint must be 'full' for basic_adjoint_matching (use adjoint_matching for "
                f"the lean adjoint), got {self.adjoint!r}",
            )


class BasicAdjointMatching(AdjointMatching):
    """Adjoint Matching regressed on the full adjoint."""

    name = "basic_adjoint_matching"
    config_class = BasicAdjointMatchingConfig
