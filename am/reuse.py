"""Rollout reuse: one batch of rollouts and their adjoints serves several optimiser steps.

A rollout and its lean adjoint cost ``K`` forwards and ``K`` base VJPs; the regression on them
costs one forward and backward of the fine-tuned model on the chosen steps. Where the first
dominates (large models, large K), storing a batch and taking ``updates_per_rollout``
optimiser steps on minibatches of it buys more learning per rollout (the authors' buffered
trainer for Stable Diffusion does this).

What it changes: a stored target ``-sigma_k a_k`` is that of the control which simulated the
path. Regressing on it after the model has moved is regressing on slightly stale data, which
changes the optimisation's path; the iteration's fixed point is unchanged (at the optimum the
rollout control and the regressed control coincide, stale or not, once the buffer is
refreshed). Methods whose loss needs a graph through the current model's rollout (DRaFT,
DRaFT-LV, ReFL, the discrete adjoint), an on-policy ranking (online DPO) or their own
importance ratios (GRPO) refuse it (``Method.no_reuse_reason``).

Schedule (all pure functions of ``seed`` and the optimiser step ``i``): round
``r = i // updates_per_rollout`` draws its rollouts with the generator of ``(seed, r)``, at
the parameters of the round's first step; its minibatches are consecutive slices of
``updates_per_rollout * minibatch / batch_size`` independent permutations of the rows, so every
stored rollout is served that many times. Exact resume: the stored round and its order are
part of the checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from am.methods.base import LossOutput, Method

__all__ = ["RolloutReuse"]


def _order_generator(seed: int, round_: int) -> torch.Generator:
    # a stream of its own, apart from the rollouts' (seed, round) generator
    return torch.Generator().manual_seed((seed * 1_000_003 + round_) % (2**63 - 1) ^ 0x5EED)


class RolloutReuse:
    """Serves the stored rollouts of the current round to each optimiser step's loss."""

    def __init__(self, method: Method, *, batch_size: int, updates: int, minibatch: int, seed: int):
        if method.no_reuse_reason is not None:
            raise ValueError(
                f"{method.name} cannot reuse rollouts (train.updates_per_rollout > 1): "
                f"{method.no_reuse_reason}"
            )
        self.method, self.batch_size = method, batch_size
        self.updates, self.minibatch, self.seed = updates, minibatch, seed
        self.round: int | None = None
        self.stored = None
        self.order: torch.Tensor | None = None

    @property
    def serves_per_rollout(self) -> int:
        """How many optimiser steps see each stored rollout."""
        return self.updates * self.minibatch // self.batch_size

    def loss(self, model: nn.Module, iteration: int, generator: torch.Generator) -> LossOutput:
        """The loss of optimiser step ``iteration``; ``generator``: that of its round (drawn
        from only when the round's rollouts are collected)."""
        round_, update = divmod(iteration, self.updates)
        metrics = {}
        if self.round != round_:
            self.stored = self.method.collect(
                model, batch_size=self.batch_size, generator=generator
            )
            g = _order_generator(self.seed, round_)
            self.order = torch.cat(
                [
                    torch.randperm(self.batch_size, generator=g)
                    for _ in range(self.serves_per_rollout)
                ]
            )
            self.round = round_
            metrics["rollout_reward"] = float(self.stored.rewards.mean())
        index = self.order[update * self.minibatch : (update + 1) * self.minibatch]
        out = self.method.regress(model, self.stored.rows(index.to(self.stored.states.device)))
        return LossOutput(loss=out.loss, metrics={**out.metrics, **metrics, "round": round_})

    def state_dict(self) -> dict:
        stored = None if self.stored is None else self.stored.state_dict()
        return {"round": self.round, "stored": stored, "order": self.order}

    def load_state_dict(self, state: dict) -> None:
        self.round, self.order = state["round"], state["order"]
        stored = state["stored"]
        self.stored = None if stored is None else self.method.stored_class(**stored)
