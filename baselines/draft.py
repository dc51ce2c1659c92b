"""DRaFT-K: Directly fine-tuning diffusion models on differentiable rewards (Clark, Vegesna,
Carlini, Fleet; ICLR 2024, arXiv 2309.17400).

Objective: maximise the reward of the sampler's output, ``min_theta -lambda E[r(X_K)]``, by
backpropagating through the last ``grad_steps`` steps of the sampling chain (earlier steps run
without a graph). ``grad_steps = 1`` is DRaFT-1, ``grad_steps = num_steps`` full backpropagation
(the paper's "DRaFT-40" baseline in Adjoint Matching's Table 2). There is no KL or base-model
term: DRaFT is a reward maximiser, so it overshoots the tilt ``p_base exp(lambda r)`` and loses
diversity; ``lambda`` only rescales the gradient (and Adam undoes most of that). The papers sample
with DDIM eta = 0 (the ODE; ``diffusion = 0``) and 50 (DRaFT) or 40 (Adjoint Matching) steps;
DRaFT uses LoRA and gradient checkpointing on images. ``rollout_guidance = w`` samples with
classifier-free guidance, as text-to-image samplers do: every step of the chain, the
differentiable last ``grad_steps`` included, uses ``v_null + w (v_cond - v_null)`` of the
fine-tuned model, so the reward gradient flows through both halves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from am.diffusion import Diffusion
from am.fields import FieldError
from am.methods.base import LossOutput, check_int
from am.rollout import differentiable_rollout
from am.sde import uniform_grid
from baselines._sampling import (
    RolloutMethod,
    check_rollout_guidance,
    check_sampler_diffusion,
    initial_noise,
)

__all__ = ["DRaFTConfig", "DRaFT"]


@dataclass(frozen=True)
class DRaFTConfig:
    """``num_steps``: sampling steps K; ``grad_steps``: how many last steps carry gradient (1 to
    K); ``diffusion``: sampler diffusion (0 = ODE, the papers' choice); ``checkpoint``: gradient
    checkpointing per differentiable step; ``rollout_guidance``: classifier-free guidance weight
    of the sampling chain (1 = off; needs a problem with a ``null_condition``)."""

    num_steps: int = 40
    grad_steps: int = 1
    diffusion: str | float | Diffusion = 0.0
    checkpoint: bool = False
    rollout_guidance: float = 1.0

    def __post_init__(self):
        check_int("num_steps", self.num_steps)
        check_int("grad_steps", self.grad_steps)
        if self.grad_steps > self.num_steps:
            raise FieldError(
                "grad_steps",
                f"grad_steps must be <= num_steps ({self.num_steps}), got {self.grad_steps}",
            )
        check_sampler_diffusion(self.diffusion)
        if not isinstance(self.checkpoint, bool):
            raise FieldError(
                "checkpoint", f"checkpoint must be true or false, got {self.checkpoint!r}"
            )
        check_rollout_guidance(self.rollout_guidance)


class DRaFT(RolloutMethod):
    """Reward maximisation by backpropagation through the last K sampling steps."""

    name = "draft"
    no_reuse_reason = "its gradient flows through the last sampling steps of the current model, which a stored rollout (no graph) cannot give"
    config_class = DRaFTConfig

    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        cfg, prob = self.config, self.problem
        c = prob.condition(model, batch_size=batch_size, generator=generator)
        x0 = initial_noise(model, prob, batch_size, generator)
        roll = differentiable_rollout(
            self.sampler(model, c.cond),
            x0,
            schedule=prob.schedule,
            times=uniform_grid(cfg.num_steps, dtype=x0.dtype, device=x0.device),
            diffusion=self.diffusion,
            generator=generator,
            grad_steps=cfg.grad_steps,
            checkpoint=cfg.checkpoint,
        )
        rewards = c.reward(roll.final)
        loss = -prob.reward_scale * rewards.mean()
        return LossOutput(
            loss=loss,
            metrics={"loss": float(loss.detach()), "reward": float(rewards.detach().mean())},
        )
