"""DRaFT-LV: DRaFT with lower-variance last-step gradients (Clark et al., ICLR 2024, Section 4.2).

Objective: as DRaFT-1, maximise ``lambda E[r(X_1)]`` through the last sampling step only, but
average the gradient over ``num_draws`` re-noisings of the final sample: sample ``X_1`` without a
graph, draw ``x^i = alpha_s X_1 + beta_s eps_i`` at the last step's start time ``s = t_{K-1}``
(the reference path's marginal given ``X_1``), take one differentiable sampler step from each,
and minimise ``-lambda mean_i r(x^i_1)``. The paper uses ``n = 2`` draws. A reward maximiser
without KL, like DRaFT. ``rollout_guidance = w``: the rollout and the re-noised last step
(a step of the same sampling chain) use the guided velocity ``v_null + w (v_cond - v_null)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from am.diffusion import Diffusion
from am.methods.base import LossOutput, check_int
from am.sde import EulerMaruyama, uniform_grid
from baselines._sampling import RolloutMethod, check_rollout_guidance, check_sampler_diffusion

__all__ = ["DRaFTLVConfig", "DRaFTLV"]


@dataclass(frozen=True)
class DRaFTLVConfig:
    """``num_steps``: sampling steps K; ``num_draws``: re-noisings of each sample (paper: 2);
    ``diffusion``: sampler diffusion (0 = ODE); ``rollout_guidance``: classifier-free guidance
    weight of the sampler (1 = off)."""

    num_steps: int = 40
    num_draws: int = 2
    diffusion: str | float | Diffusion = 0.0
    rollout_guidance: float = 1.0

    def __post_init__(self):
        check_int("num_steps", self.num_steps)
        check_int("num_draws", self.num_draws)
        check_sampler_diffusion(self.diffusion)
        check_rollout_guidance(self.rollout_guidance)


class DRaFTLV(RolloutMethod):
    """Last-step reward gradient averaged over several re-noisings of each sample."""

    name = "draft_lv"
    no_reuse_reason = "its reward gradient is taken through one step of the current model from its own fresh samples (on-policy); a stored-sample variant is not implemented"
    config_class = DRaFTLVConfig
    stepper = EulerMaruyama()

    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        cfg, prob = self.config, self.problem
        c = prob.condition(model, batch_size=batch_size, generator=generator)
        traj = self.rollout(model, c.cond, batch_size, generator)
        x1 = traj.final.repeat(cfg.num_draws, *([1] * (traj.final.dim() - 1)))  # [n B, *shape]
        times = uniform_grid(cfg.num_steps, dtype=x1.dtype, device=x1.device)
        s, t1 = times[-2], times[-1]
        sv, sv_next = prob.schedule(s), prob.schedule(t1)
        eps = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        x_s = sv.alpha * x1 + sv.beta * eps  # reference marginal at s given X_1
        sigma = self.diffusion.on_grid(times)[-1].to(x1.dtype)
        noise = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        v = self.sampler(model, c.cond)(x_s, s.expand(x1.shape[0]))  # rows: num_draws copies
        out = self.stepper.step(x_s, v, sv=sv, sv_next=sv_next, sigma=sigma, noise=noise)
        rewards = c.reward(out)
        loss = -prob.reward_scale * rewards.mean()
        return LossOutput(
            loss=loss,
            metrics={
                "loss": float(loss.detach()),
                "reward": float(c.reward(traj.final).detach().mean()),
            },
        )
