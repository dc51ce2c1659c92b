"""Helpers shared by the baselines whose rollouts are samples (DRaFT, DRaFT-LV, ReFL, DPO, GRPO).

Their ``rollout_guidance`` is Adjoint Matching's switch: classifier-free guidance of the
fine-tuned model in the rollouts, ``w = 1`` off. What is a rollout differs by method, and each
file says which of its velocity evaluations are guided: every step of the sampling chain
(:meth:`RolloutMethod.sampler`), with or without a graph, and nothing else.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from am.conditions import Condition
from am.diffusion import Diffusion, make_diffusion
from am.methods.base import FineTuningProblem, Method, check_number, model_dtype_device
from am.rollout import GUIDANCE_NEEDS, rollout_velocity
from am.sde import Velocity, simulate, uniform_grid

__all__ = [
    "check_rollout_guidance",
    "check_sampler_diffusion",
    "initial_noise",
    "rollout_without_grad",
    "RolloutMethod",
]


def check_rollout_guidance(value) -> None:
    """A classifier-free guidance weight: a number >= 0 (1 = no guidance)."""
    check_number("rollout_guidance", value, minimum=0.0)


def check_sampler_diffusion(value) -> None:
    """``"memoryless"``, a number >= 0 (0 is the ODE / DDIM eta = 0 the papers sample with) or
    an :class:`am.diffusion.Diffusion`."""
    if value != "memoryless" and not isinstance(value, Diffusion):
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
    ``config.diffusion``), classifier-free guided at ``config.rollout_guidance``."""

    def __init__(self, config, problem: FineTuningProblem):
        super().__init__(config, problem)
        self.diffusion = self.sampler_diffusion()
        if config.rollout_guidance != 1 and (
            problem.conditions is None or problem.null_condition is None
        ):  # at construction, before any compute
            raise ValueError(GUIDANCE_NEEDS)

    def sampler_diffusion(self) -> Diffusion:
        return make_diffusion(self.config.diffusion, self.problem.schedule)

    def sampler(self, velocity: Velocity, cond: Condition) -> Velocity:
        """``velocity`` (the fine-tuned model or the base, unbound) as this method's sampler
        evaluates it: ``(x, t)`` with the batch's ``cond`` bound, guided at
        ``config.rollout_guidance`` (:func:`am.rollout.rollout_velocity`)."""
        return rollout_velocity(
            velocity,
            cond,
            guidance=self.config.rollout_guidance,
            null_condition=self.problem.null_condition,
        )

    def rollout(
        self, model: nn.Module, cond: Condition, batch_size: int, generator: torch.Generator
    ):
        """A :class:`am.sde.Trajectory` of :meth:`sampler` ``(model, cond)`` (no graph)."""
        return rollout_without_grad(
            self.sampler(model, cond),
            self.problem,
            num_steps=self.config.num_steps,
            diffusion=self.diffusion,
            batch_size=batch_size,
            generator=generator,
        )
