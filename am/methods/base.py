"""The method interface shared by Adjoint Matching and every baseline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from am.conditions import Condition, bind_reward, bind_velocity
from am.fields import check_int, check_number
from am.schedules import Schedule
from am.sde import Velocity

__all__ = [
    "Conditioned",
    "FineTuningProblem",
    "LossOutput",
    "Method",
    "check_int",
    "check_number",
    "model_dtype_device",
]


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the sampler state, the time grid and the adjoint for ``model``:
    its most precise floating parameter dtype, never below float32, and the first parameter's
    device (the default dtype and the CPU for a parameter-free model).

    Why not the first parameter's dtype: with bfloat16/float16 frozen weights (mixed
    precision), a LoRA model's first parameter is a frozen half-precision weight, and a state,
    grid and adjoint in half precision round SD 1.5's timesteps by up to 3 and the reward's
    gradient to 8 bits. Half precision is the network's compute dtype (the denoisers cast their
    inputs and autocast, :mod:`am.t2i.denoisers`), never the state's."""
    dtype, device = None, None
    for p in model.parameters():
        device = p.device if device is None else device
        if p.is_floating_point():
            dtype = p.dtype if dtype is None else torch.promote_types(dtype, p.dtype)
    if device is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return torch.promote_types(dtype or torch.float32, torch.float32), device


@dataclass(frozen=True)
class Conditioned:
    """One batch's condition bound to the fine-tuned model, the base and the reward: callables
    ``(x, t)`` and ``(x)`` for the simulation, adjoint and loss code (:mod:`am.conditions`).
    With no condition they are the problem's own objects."""

    model: Velocity
    base: Velocity
    reward: object
    cond: Condition


@dataclass(frozen=True)
class FineTuningProblem:
    """What is fine-tuned towards what: target ``p_base(x | c) exp(reward_scale * reward(x, c))``.

    ``base``: frozen velocity model ``(x [B, *sample_shape], t [B]) -> [B, *sample_shape]``, or
    ``(x, t, cond)`` for a conditional problem; ``reward``: ``x [B, *sample_shape] -> [B]``
    (``(x, cond)``), differentiable; ``schedule``: the base's reference path; ``sample_shape``:
    shape of one sample (no batch dim); ``conditions``: ``None`` (unconditional) or a sampler
    ``(batch_size, generator, *, group=1) -> cond`` (:class:`am.conditions.ConditionSampler`),
    the distribution of prompts the fine-tuning averages over; ``null_condition``: the "no
    condition" of classifier-free guidance as one row (only for guided rollouts).
    """

    base: Velocity
    reward: object
    schedule: Schedule
    sample_shape: tuple[int, ...]
    reward_scale: float
    conditions: object = None
    null_condition: object = None

    def condition(
        self, model: Velocity, *, batch_size: int, generator: torch.Generator, group: int = 1
    ) -> Conditioned:
        """Draw a batch's conditions (in runs of ``group`` equal rows) and bind them to
        ``model``, the base and the reward. Unconditional: draws nothing (the random stream of
        an unconditional run is unchanged) and returns the objects themselves."""
        if self.conditions is None:
            return Conditioned(model, self.base, self.reward, None)
        cond = self.conditions(batch_size, generator, group=group)
        return Conditioned(
            bind_velocity(model, cond),
            bind_velocity(self.base, cond),
            bind_reward(self.reward, cond),
            cond,
        )

    def __post_init__(self):
        if isinstance(self.reward_scale, bool) or not isinstance(self.reward_scale, (int, float)):
            raise ValueError(f"reward_scale must be a number, got {self.reward_scale!r}")
        if self.reward_scale != self.reward_scale:  # NaN
            raise ValueError("reward_scale must be a number, got NaN")
        if isinstance(self.base, nn.Module) and any(
            p.requires_grad for p in self.base.parameters()
        ):
            raise ValueError("the base model must be frozen: call base.requires_grad_(False)")


@dataclass(frozen=True)
class LossOutput:
    """``loss``: scalar with gradient w.r.t. the fine-tuned parameters only; ``metrics``: floats
    logged per iteration (``reward`` is the mean reward of the rollouts)."""

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class Method(ABC):
    """A fine-tuning method. Subclasses set ``config_class`` (a frozen dataclass) and implement
    :meth:`loss`. Construction validates the config; ``loss`` does all compute."""

    name: ClassVar[str] = "method"
    config_class: ClassVar[type] = object
    #: why rollouts cannot be reused over several optimiser steps
    #: (``TrainConfig.updates_per_rollout > 1``); ``None`` for a method that can, which then
    #: implements ``collect`` (rollouts -> stored regression data) and ``regress`` (a loss on
    #: stored rows) and names the stored record's class as ``stored_class``.
    no_reuse_reason: ClassVar[str | None] = "its loss needs a fresh rollout of the current model"

    def __init__(self, config, problem: FineTuningProblem):
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.problem = problem

    @classmethod
    def recommended_config(cls):
        """The config :func:`am.finetune` uses when none is given (default: the config class's
        defaults; a method overrides this where measurements recommend other settings)."""
        return cls.config_class()

    @abstractmethod
    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        """One batch of rollouts of ``model`` turned into a loss."""

    # A method with state across iterations (e.g. a running threshold) overrides these three;
    # the trainer calls end_step once per optimizer step on every process and keeps the state
    # in its checkpoints.
    def end_step(self, parallel) -> None:
        """After all micro-batches of an optimizer step (``parallel``: am.distributed)."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""
        return None
