"""Online DPO for flow and diffusion models (Diffusion-DPO: Wallace et al., CVPR 2024,
arXiv 2311.12908; run online, adapted to velocity prediction as in the Adjoint Matching paper's
DPO baseline).

Objective: sample ``2P`` points from the current model (no graph), pair them up (each pair shares
one condition: ``P`` conditions per batch), call the higher-reward one the winner ``x^w`` and
the other the loser ``x^l``. Noise both with the same ``t ~ U[0, 1)`` and ``eps``:
``x_t = alpha_t x + beta_t eps``, and compare denoising errors of the fine-tuned model with the
frozen base, ``e(x) = mean |v(x_t, t) - (alpha'_t x + beta'_t eps)|^2``:

    L = -log sigmoid( -beta [ (e_theta(x^w) - e_base(x^w)) - (e_theta(x^l) - e_base(x^l)) ] )

(Diffusion-DPO Eq. 14 with its ``T omega(lambda_t) / 2`` folded into ``beta``). ``beta`` plays the
part of DPO's KL coefficient: larger stays closer to the base. The preferences are hard (the
reward decides), so ``lambda`` does not enter the loss: DPO optimises a ranking, not the tilt
``p_base exp(lambda r)``. Default ``beta = 1``: Diffusion-DPO's 2000-5000 are tied to per-pixel
errors of Stable Diffusion latents and do not carry over to these problems (our choice).
``rollout_guidance = w`` guides the online samples only (``v_null + w (v_cond - v_null)``); the
denoising errors stay those of the conditional model and base, as in Diffusion-DPO's loss
(SalesforceAIResearch/DiffusionDPO, ``train.py``: one conditional UNet call per noisy latent).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from am.diffusion import Diffusion
from am.fields import FieldError
from am.methods.base import Conditioned, LossOutput, check_int, check_number
from baselines._sampling import RolloutMethod, check_rollout_guidance, check_sampler_diffusion

__all__ = ["DPOConfig", "OnlineDPO"]


@dataclass(frozen=True)
class DPOConfig:
    """``num_steps``: sampling steps K of the online samples; ``beta``: DPO temperature (> 0);
    ``diffusion``: sampler diffusion (0 = ODE); ``t_max``: noise times ``t ~ U[0, t_max)`` (below
    1, where the flow-matching target stays finite for every schedule); ``rollout_guidance``:
    classifier-free guidance weight of the online samples (1 = off)."""

    num_steps: int = 40
    beta: float = 1.0
    diffusion: str | float | Diffusion = 0.0
    t_max: float = 0.99
    rollout_guidance: float = 1.0

    def __post_init__(self):
        check_int("num_steps", self.num_steps)
        check_number("beta", self.beta, minimum=0.0, strict=True)
        check_sampler_diffusion(self.diffusion)
        check_number("t_max", self.t_max, minimum=0.0, strict=True)
        if not self.t_max <= 1:
            raise FieldError("t_max", f"t_max must be in (0, 1], got {self.t_max!r}")
        check_rollout_guidance(self.rollout_guidance)


class OnlineDPO(RolloutMethod):
    """Pairwise preference optimisation on denoising errors against the frozen base."""

    name = "dpo"
    no_reuse_reason = "online DPO ranks fresh samples of the current model; reusing them would make it offline DPO, which is not implemented"
    config_class = DPOConfig

    def denoising_errors(
        self, model: nn.Module, base: nn.Module, x: Tensor, *, t: Tensor, eps: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``e_theta, e_base [N]`` for clean ``x [N, *shape]``, times ``t [N]``, noise ``eps``
        (``model``, ``base``: with the pairs' condition bound)."""
        sv = self.problem.schedule(t).broadcast_to(x)
        x_t = sv.alpha * x + sv.beta * eps
        target = sv.d_alpha * x + sv.d_beta * eps
        e_theta = (model(x_t, t) - target).flatten(1).pow(2).mean(-1)
        with torch.no_grad():
            e_base = (base(x_t, t) - target).flatten(1).pow(2).mean(-1)
        return e_theta, e_base

    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"dpo needs an even batch_size >= 2 (pairs), got {batch_size}")
        P = batch_size // 2
        # P conditions bound to 2P rows: rows i and P + i share one (a pair within a prompt).
        c = self.problem.condition(model, batch_size=P, generator=generator)
        x = self.rollout(model, c.cond, batch_size, generator).final
        return self.preference_loss(c, x, generator=generator)

    def preference_loss(
        self, c: Conditioned, x: Tensor, *, generator: torch.Generator
    ) -> LossOutput:
        """The DPO loss of samples ``x [2P, *shape]`` (rows ``i`` and ``P + i`` a pair) with
        their condition bound in ``c`` (unguided model and base): the part of :meth:`loss`
        after the rollout."""
        cfg, P = self.config, x.shape[0] // 2
        rewards = c.reward(x)
        a, b = x[:P], x[P:]
        a_wins = (rewards[:P] >= rewards[P:]).reshape(-1, *([1] * (x.dim() - 1)))
        win, lose = torch.where(a_wins, a, b), torch.where(a_wins, b, a)
        t = cfg.t_max * torch.rand(P, generator=generator, dtype=x.dtype, device=x.device)
        eps = torch.randn(win.shape, generator=generator, dtype=x.dtype, device=x.device)
        ew, ew_ref = self.denoising_errors(c.model, c.base, win, t=t, eps=eps)
        el, el_ref = self.denoising_errors(c.model, c.base, lose, t=t, eps=eps)
        margin = -cfg.beta * ((ew - ew_ref) - (el - el_ref))
        loss = -F.logsigmoid(margin).mean()
        return LossOutput(
            loss=loss,
            metrics={
                "loss": float(loss.detach()),
                "reward": float(rewards.detach().mean()),
                "preference_accuracy": float((margin.detach() > 0).float().mean()),
            },
        )
