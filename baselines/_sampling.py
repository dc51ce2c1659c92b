"""Helpers shared by the reward-maximising baselines (DRaFT, DRaFT-LV, ReFL, DPO)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from am.diffusion import Diffusion, make_diffusion
from am.methods.base import FineTuningProblem, Method, check_number, model_dtype_device
from am.sde import simulate, uniform_grid

__all__ = ["check_sampler_diffusion", "initial_noise", "rollout_without_grad", "RolloutMethod"]


def check_sampler_diffusion(value) -> None:
    """``"memoryless"`` or a number >= 0 (0 is the ODE / DDIM eta = 0 the papers sample with)."""
    if value != "memoryless":
        check_number("diffusion", value, minimum=0.0)


def initial_noise(
    model: nn.Module, problem: FineTuningProblem, batch_size: int, generator: torch.Generator
) -> Tensor:
    """``X_0 ~ N(0, I)``: ``[B, *sample_shape]`` on the model's dtype and device."""
    dtype, device = model_dtype_device(model)
    return torch.randn(
        (batch_size, *problem.sample_shape), generator=generator, dtype=dtype, device=device
    )


def rollout_without_grad(
    model: nn.Module,
    problem: FineTuningProblem,
    *,
    num_steps: int,
    diffusion: Diffusion,
    batch_size: int,
    generator: torch.Generator,
):
    """A :class:`am.sde.Trajectory` of ``model`` on a uniform ``num_steps`` grid (no graph)."""
    x0 = initial_noise(model, problem, batch_size, generator)
    times = uniform_grid(num_steps, dtype=x0.dtype, device=x0.device)
    return simulate(
        model, x0, schedule=problem.schedule, times=times, diffusion=diffusion, generator=generator
    )


class RolloutMethod(Method):
    """A method whose loss starts from rollouts of the current model on a uniform
    ``config.num_steps`` grid with the diffusion :meth:`sampler_diffusion` gives (by default
    ``config.diffusion``)."""

    def __init__(self, config, problem: FineTuningProblem):
        super().__init__(config, problem)
        self.diffusion = self.sampler_diffusion()

    def sampler_diffusion(self) -> Diffusion:
        return make_diffusion(self.config.diffusion, self.problem.schedule)

    def rollout(self, model: nn.Module, batch_size: int, generator: torch.Generator):
        """A :class:`am.sde.Trajectory` of ``model`` (no graph)."""
        return rollout_without_grad(
            model,
            self.problem,
            num_steps=self.config.num_steps,
            diffusion=self.diffusion,
            batch_size=batch_size,
            generator=generator,
        )
