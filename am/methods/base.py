"""The method interface shared by Adjoint Matching and every baseline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from am.schedules import Schedule
from am.sde import Velocity

__all__ = [
    "FineTuningProblem",
    "LossOutput",
    "Method",
    "check_int",
    "check_number",
    "model_dtype_device",
]


def check_int(name: str, value, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_number(name: str, value, *, minimum: float | None = None, strict: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number above ``minimum``
    (``> minimum`` with ``strict``, else ``>=``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
        raise ValueError(f"{name} must be a number{bound}, got {value!r}")


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """dtype and device of the first parameter (float default / CPU for parameter-free models)."""
    p = next(iter(model.parameters()), None)
    if p is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return p.dtype, p.device


@dataclass(frozen=True)
class FineTuningProblem:
    """What is fine-tuned towards what: target ``p_base(x) exp(reward_scale * reward(x))``.

    ``base``: frozen velocity model ``(x [B, *sample_shape], t [B]) -> [B, *sample_shape]``;
    ``reward``: ``x [B, *sample_shape] -> [B]``, differentiable; ``schedule``: the base's
    reference path; ``sample_shape``: shape of one sample (no batch dim).
    """

    base: Velocity
    reward: object
    schedule: Schedule
    sample_shape: tuple[int, ...]
    reward_scale: float

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

    def __init__(self, config, problem: FineTuningProblem):
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.problem = problem

    @abstractmethod
    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        """One batch of rollouts of ``model`` turned into a loss."""
