"""Discrete adjoint: backpropagation through the memoryless SDE (the paper's Section 4 and
Appendix; the paper's "discrete adjoint" baseline, Table 2).

Objective: the stochastic optimal control problem of Adjoint Matching itself,

    min_theta  E[ sum_k |u_k|^2 h / 2  -  lambda r(X_K) ],   u_k = c_k (v_theta - v_base)(X_k, t_k)

on the memoryless Euler-Maruyama (or DDPM) discretisation, minimised by differentiating the whole
simulated path with autograd (the "discrete adjoint" of the discretised dynamics). Its optimum is
the tilt ``p_base exp(lambda r)`` (up to discretisation), like Adjoint Matching's, but every
iteration stores (or, with ``checkpoint``, recomputes) the graph of all ``K`` steps and its
gradient has the variance of a pathwise derivative through a chaotic map. Paper settings: lr
1e-5 (half of Adjoint Matching's), gradient checkpointing on images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from am.diffusion import MemorylessDiffusion
from am.fields import FieldError, checking
from am.methods.base import FineTuningProblem, LossOutput, Method, check_int, model_dtype_device
from am.rollout import differentiable_rollout
from am.sde import make_stepper, uniform_grid

__all__ = ["DiscreteAdjointConfig", "DiscreteAdjoint"]


@dataclass(frozen=True)
class DiscreteAdjointConfig:
    """``num_steps``: K; ``stepper``: ``euler_maruyama`` | ``ddpm``; ``checkpoint``: recompute
    each step's activations in the backward pass (memory independent of K, one extra forward
    per step)."""

    num_steps: int = 40
    stepper: str = "euler_maruyama"
    checkpoint: bool = False

    def __post_init__(self):
        check_int("num_steps", self.num_steps)
        with checking("stepper"):
            make_stepper(self.stepper)
        if not isinstance(self.checkpoint, bool):
            raise FieldError(
                "checkpoint", f"checkpoint must be true or false, got {self.checkpoint!r}"
            )


class DiscreteAdjoint(Method):
    """Minimise the discretised SOC objective by autograd through the memoryless SDE."""

    name = "discrete_adjoint"
    no_reuse_reason = "it backpropagates through the whole rollout of the current model"
    config_class = DiscreteAdjointConfig

    def __init__(self, config: DiscreteAdjointConfig, problem: FineTuningProblem):
        super().__init__(config, problem)
        self.stepper = make_stepper(config.stepper)
        self.diffusion = MemorylessDiffusion(problem.schedule)

    def objective(self, model: nn.Module, *, batch_size: int, generator: torch.Generator):
        """Per-path SOC objective ``[B]`` (control cost minus ``lambda r``) and rewards ``[B]``."""
        cfg, prob = self.config, self.problem
        dtype, device = model_dtype_device(model)
        c = prob.condition(model, batch_size=batch_size, generator=generator)
        x0 = torch.randn(
            (batch_size, *prob.sample_shape), generator=generator, dtype=dtype, device=device
        )
        roll = differentiable_rollout(
            c.model,
            x0,
            schedule=prob.schedule,
            times=uniform_grid(cfg.num_steps, dtype=dtype, device=device),
            diffusion=self.diffusion,
            stepper=self.stepper,
            generator=generator,
            base=c.base,
            checkpoint=cfg.checkpoint,
        )
        rewards = c.reward(roll.final)
        return roll.control_cost - prob.reward_scale * rewards, rewards, roll.control_cost

    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        objective, rewards, cost = self.objective(model, batch_size=batch_size, generator=generator)
        loss = objective.mean()
        return LossOutput(
            loss=loss,
            metrics={
                "loss": float(loss.detach()),
                "reward": float(rewards.detach().mean()),
                "control_cost": float(cost.detach().mean()),
            },
        )
