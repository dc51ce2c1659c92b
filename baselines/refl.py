"""ReFL: reward feedback learning (Xu et al., ImageReward, NeurIPS 2023, arXiv 2304.05977).

Objective: maximise the reward of a one-step prediction of the sample. Sample without a graph up
to a step ``k`` drawn uniformly from a late window (ReFL: a random step among the last 10 of 40,
here the last ``1 - window_start`` fraction of the grid), predict the endpoint in one step,
``x1_hat = E[X_1 | X_k]`` from the fine-tuned velocity (``am.sde.endpoint_from_velocity``), and
minimise ``-lambda r(x1_hat)``. The paper adds a pre-training (denoising) loss as a regulariser;
it is left out here (the base is exact and there is no data set), which makes ReFL a pure reward
maximiser like DRaFT. Sampling with DDIM eta = 0 (the ODE, ``diffusion = 0``). ``rollout_guidance = w``: the
rollout and the one-step prediction (the sampler's own endpoint estimate at step ``k``) use the
guided velocity ``v_null + w (v_cond - v_null)``; ImageReward's ReFL trains unguided
(THUDM/ImageReward, ``ImageReward/ReFL.py``: one conditional UNet call per step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from am.diffusion import Diffusion
from am.fields import FieldError
from am.methods.base import LossOutput, check_int, check_number
from am.sde import endpoint_from_velocity
from baselines._sampling import RolloutMethod, check_rollout_guidance, check_sampler_diffusion

__all__ = ["ReFLConfig", "ReFL"]


@dataclass(frozen=True)
class ReFLConfig:
    """``num_steps``: sampling steps K; ``window_start``: the stop step is uniform on
    ``[round(window_start K), K - 1]`` (default 0.75: the last 10 of 40 steps, as in ReFL);
    ``diffusion``: sampler diffusion (0 = ODE); ``rollout_guidance``: classifier-free guidance
    weight of the sampler (1 = off)."""

    num_steps: int = 40
    window_start: float = 0.75
    diffusion: str | float | Diffusion = 0.0
    rollout_guidance: float = 1.0

    def __post_init__(self):
        check_int("num_steps", self.num_steps)
        check_number("window_start", self.window_start, minimum=0.0)
        if not self.window_start < 1:
            raise FieldError(
                "window_start", f"window_start must be in [0, 1), got {self.window_start!r}"
            )
        check_sampler_diffusion(self.diffusion)
        check_rollout_guidance(self.rollout_guidance)

    def window(self) -> tuple[int, int]:
        """First and last admissible stop step (inclusive)."""
        first = min(int(round(self.window_start * self.num_steps)), self.num_steps - 1)
        return first, self.num_steps - 1


class ReFL(RolloutMethod):
    """Reward of a one-step endpoint prediction at a random late step."""

    name = "refl"
    no_reuse_reason = (
        "its gradient flows through the current model's one-step prediction from its own rollout"
    )
    config_class = ReFLConfig

    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        cfg, prob = self.config, self.problem
        c = prob.condition(model, batch_size=batch_size, generator=generator)
        sampler = self.sampler(model, c.cond)
        traj = self.rollout(model, c.cond, batch_size, generator)
        first, last = cfg.window()
        # drawn on the generator's device: the trainer's generator is the model's (a GPU's)
        k = int(torch.randint(first, last + 1, (1,), generator=generator, device=generator.device))
        x, t = traj.states[k], traj.times[k]
        x1_hat = endpoint_from_velocity(
            prob.schedule(t).broadcast_to(x), x, sampler(x, t.expand(batch_size))
        )
        rewards = c.reward(x1_hat)
        loss = -prob.reward_scale * rewards.mean()
        return LossOutput(
            loss=loss,
            metrics={
                "loss": float(loss.detach()),
                "reward": float(c.reward(traj.final).detach().mean()),
                "stop_step": float(k),
            },
        )
