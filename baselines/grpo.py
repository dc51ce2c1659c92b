"""Flow-GRPO: online policy gradient for flow models (Liu et al. 2025, arXiv 2505.05470).

Objective: sample a batch of SDE rollouts of the current model (Euler-Maruyama on the SDE with the
flow's marginals, ``sigma(t) = a sqrt(eta_t)``: Flow-GRPO's ``a sqrt(t / (1 - t))`` in its
reversed time for flow matching; ``a = sqrt(2)`` is memoryless), split it into groups of
``group_size``, and normalise rewards within each group, ``A_i = (r_i - mean_G r) / (std_G r +
1e-4)`` clipped to ``+-adv_clip``. Each step is a Gaussian policy ``N(m_theta(X_k), s_k^2)``;
minimise the PPO-clipped surrogate plus a KL penalty to the base, averaged over steps:

    L = mean_k [ max(-A rho_k, -A clip(rho_k, 1 - eps, 1 + eps)) + beta_KL KL_k ]
    rho_k = exp(log N(X_{k+1}; m_theta, s_k^2) - log N(X_{k+1}; m_old, s_k^2))
    KL_k = |m_theta(X_k) - m_base(X_k)|^2 / (2 s_k^2)

Defaults are Flow-GRPO's where it gives them (noise level ``a = 0.7``, 10 training steps, clip
range ``1e-4``, ``beta_KL = 0.04``, advantage clip 5); group size 16 is ours (the paper uses 24
images per prompt; here there is one "prompt"). Our trainer takes one optimiser step per batch of
rollouts, so ``rho = 1`` where the gradient is taken and the clip never binds (Flow-GRPO also
updates once per sample batch per timestep). With ``a = sqrt(2)``, ``beta_KL = 1 / lambda`` and
raw rewards instead of normalised advantages, this would be a score-function estimator of the
memoryless SOC objective; with group normalisation it is not, and the reward scale drops out.

``rollout_guidance = w``: the policy is the guided sampler, as Flow-GRPO's with ``train.cfg =
True`` (yifan123/flow_grpo, ``scripts/train_sd3.py``, ``compute_log_prob``, lines 180-195): the
rollouts, the transition means of the log-likelihoods and of the KL (model and base alike) use
``v_null + w (v_cond - v_null)``. Flow-GRPO detaches the unconditional half of the model's
prediction (gradient through ``w v_cond`` only); here the gradient is that of the guided
policy's log-likelihood, through both halves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from am.diffusion import MemorylessDiffusion, ScaledDiffusion
from am.methods.base import LossOutput, check_int, check_number
from am.rollout import transition_kl, transition_mean
from am.sde import EulerMaruyama
from baselines._sampling import RolloutMethod, check_rollout_guidance

__all__ = ["GRPOConfig", "FlowGRPO", "group_advantages"]


@dataclass(frozen=True)
class GRPOConfig:
    """``num_steps``: rollout steps; ``noise_level``: ``a`` in ``sigma = a sqrt(eta)``;
    ``group_size``: rollouts per group (the batch size must be a multiple); ``clip_range``: PPO
    ``eps``; ``kl_coeff``: ``beta_KL``; ``adv_clip``: advantage clip; ``rollout_guidance``:
    classifier-free guidance weight of the policy (1 = off)."""

    num_steps: int = 10
    noise_level: float = 0.7
    group_size: int = 16
    clip_range: float = 1e-4
    kl_coeff: float = 0.04
    adv_clip: float = 5.0
    rollout_guidance: float = 1.0

    def __post_init__(self):
        check_int("num_steps", self.num_steps)
        check_number("noise_level", self.noise_level, minimum=0.0, strict=True)
        check_int("group_size", self.group_size, minimum=2)
        check_number("clip_range", self.clip_range, minimum=0.0, strict=True)
        check_number("kl_coeff", self.kl_coeff, minimum=0.0)
        check_number("adv_clip", self.adv_clip, minimum=0.0, strict=True)
        check_rollout_guidance(self.rollout_guidance)


def group_advantages(rewards: torch.Tensor, group_size: int, clip: float) -> torch.Tensor:
    """``rewards [B] -> [B]``: standardised within consecutive groups, then clipped."""
    r = rewards.reshape(-1, group_size)
    adv = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)
    return adv.clamp(-clip, clip).reshape(-1)


class FlowGRPO(RolloutMethod):
    """Group-normalised PPO-style policy gradient with a KL penalty to the base."""

    name = "grpo"
    no_reuse_reason = "reusing a batch needs the PPO ratio and clipping against the policy that drew it (this trainer takes one step per batch, where the ratio is 1); not implemented"
    config_class = GRPOConfig

    stepper = EulerMaruyama()

    def sampler_diffusion(self):
        return ScaledDiffusion(
            MemorylessDiffusion(self.problem.schedule), self.config.noise_level / math.sqrt(2.0)
        )

    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        cfg, prob = self.config, self.problem
        if batch_size % cfg.group_size:
            raise ValueError(
                f"grpo needs batch_size divisible by group_size ({cfg.group_size}), "
                f"got {batch_size}"
            )
        # Each group of rollouts shares one condition (Flow-GRPO's prompt groups).
        c = prob.condition(model, batch_size=batch_size, generator=generator, group=cfg.group_size)
        traj = self.rollout(model, c.cond, batch_size, generator)
        rewards = c.reward(traj.final)
        adv = group_advantages(rewards, cfg.group_size, cfg.adv_clip)
        K, B = traj.num_steps, batch_size
        x, x_next = traj.states[:-1].flatten(0, 1), traj.states[1:].flatten(0, 1)  # [K B, ...]
        t = traj.times[:-1].repeat_interleave(B)
        sv = prob.schedule(t).broadcast_to(x)
        sv_next = prob.schedule(traj.times[1:].repeat_interleave(B)).broadcast_to(x)
        sigma = traj.sigmas.repeat_interleave(B).reshape(sv.t.shape)
        kw = dict(sv=sv, sv_next=sv_next, sigma=sigma)
        policy_v = self.sampler(model, c.cond)(x, t)  # rows: K copies of the batch
        mean = transition_mean(self.stepper, x, policy_v, **kw)
        with torch.no_grad():
            base_v = self.sampler(prob.base, c.cond)(x, t)
            mean_base = transition_mean(self.stepper, x, base_v, **kw)
        scale = self.stepper.noise_scale(sv, sv_next, sigma)
        log_prob = -(x_next - mean).flatten(1).pow(2).sum(-1) / (2 * scale.flatten() ** 2)
        ratio = torch.exp(log_prob - log_prob.detach())  # the rollout policy is the current one
        a = adv.repeat(K)
        clipped = torch.clamp(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range)
        policy = torch.maximum(-a * ratio, -a * clipped).mean()
        kl = transition_kl(mean, mean_base, scale.flatten()).mean()
        loss = policy + cfg.kl_coeff * kl
        return LossOutput(
            loss=loss,
            metrics={
                "loss": float(loss.detach()),
                "reward": float(rewards.detach().mean()),
                "kl": float(kl.detach()),
            },
        )
