"""Classifier-free guidance (Ho & Salimans 2022) as a velocity model.

    v_w(x, t, c) = v(x, t, null) + w (v(x, t, c) - v(x, t, null))

``w = 1`` is the conditional model, ``w = 0`` the unconditional one. A guided model is an
ordinary conditional velocity: sample it with any diffusion, or use it as the base of a
fine-tuning run. Its samples are *not* from ``p(x | c)``, nor from any known tilt of it, so a
guided base is a different base: fine-tuning ``base = GuidedVelocity(net, w)`` with
``model = GuidedVelocity(finetunable_copy(net), w)`` targets ``p_w(x | c) exp(lambda r(x, c))``,
where ``p_w`` is the law at ``t = 1`` of the guided base's memoryless SDE, and the fine-tuned
network must be sampled with the same ``w``. All three places where Adjoint Matching evaluates
a velocity (the rollout drift, the lean adjoint's base VJPs, the regression
``u = c (v_ft - v_base)``) then use the guided velocities.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from am.conditions import Condition, concat, tile

__all__ = ["GuidedVelocity"]


class GuidedVelocity(nn.Module):
    """``(x [N, *shape], t [N], cond) -> [N, *shape]``, classifier-free guided at weight
    ``guidance``; ``null_cond``: the "no condition" of ``velocity`` as one row (class labels:
    ``torch.tensor([num_classes])`` for :class:`am.models.TimeMLP`; prompts: the empty prompt's
    embedding). One batched call of ``velocity`` on ``2N`` rows."""

    def __init__(self, velocity: Callable, guidance: float, null_cond: Condition):
        super().__init__()
        self.velocity = velocity
        self.guidance = float(guidance)
        self.null_cond = null_cond

    def forward(self, x: Tensor, t: Tensor, cond: Condition) -> Tensor:
        if self.guidance == 1.0:  # the conditional model itself: skip the unconditional half
            return self.velocity(x, t, cond)
        n = x.shape[0]
        both = self.velocity(
            x.repeat(2, *([1] * (x.dim() - 1))),
            t.repeat(2),
            concat(cond, tile(self.null_cond, n)),
        )
        v_cond, v_null = both[:n], both[n:]
        return v_null + self.guidance * (v_cond - v_null)

    def extra_repr(self) -> str:
        return f"guidance={self.guidance}"
