"""Conditions (class labels, prompts) and how they travel with a batch of rollouts.

A *condition* is a tensor with one row per sample (class labels ``[B]``, embeddings ``[B, ...]``)
or a dict of such tensors (a prompt's token embeddings, pooled embedding and mask). A
conditional velocity is called ``velocity(x [N, *shape], t [N], cond)`` and a conditional reward
``reward(x [N, *shape], cond) -> [N]``; unconditional ones keep ``velocity(x, t)`` and
``reward(x)`` (``cond=None`` everywhere).

The simulation, the adjoints and the losses only ever call ``(x, t)`` and ``(x)``: a method
binds one batch's condition to the model, the base and the reward (:func:`bind_velocity`,
:func:`bind_reward`) and hands the bound callables on. Rows: where a bound callable receives
``N = k B`` rows for a condition of ``B`` rows, the rows are ``k`` stacked copies of the batch
(``x.flatten(0, 1)`` of ``[k, B, *shape]`` states), so row ``i`` gets condition row ``i mod B``
(:func:`tile`). Methods that group rollouts (GRPO groups, DPO pairs) build their conditions to
match (:meth:`ConditionSampler.__call__`'s ``group``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "Condition",
    "ConditionSampler",
    "ClassLabels",
    "BoundVelocity",
    "bind_velocity",
    "bind_reward",
    "concat",
    "num_rows",
    "tile",
    "take",
]

Condition = Tensor | Mapping[str, Tensor] | None


def _map(cond: Condition, fn: Callable[[Tensor], Tensor]) -> Condition:
    if cond is None:
        return None
    if isinstance(cond, Tensor):
        return fn(cond)
    if isinstance(cond, Mapping):
        return {k: fn(v) for k, v in cond.items()}
    raise TypeError(f"a condition is a tensor or a dict of tensors, got {type(cond).__name__}")


def num_rows(cond: Condition) -> int | None:
    """Rows of a condition (``None`` for no condition); every tensor of a dict must agree."""
    if cond is None:
        return None
    if isinstance(cond, Tensor):
        return cond.shape[0]
    rows = {k: v.shape[0] for k, v in cond.items()}
    if len(set(rows.values())) != 1:
        raise ValueError(f"the tensors of a condition have different numbers of rows: {rows}")
    return next(iter(rows.values()))


def tile(cond: Condition, n: int) -> Condition:
    """The condition for ``n`` rows that are ``n / B`` stacked copies of its ``B`` rows: row
    ``i`` gets row ``i mod B``. ``n`` must be a multiple of ``B``."""
    b = num_rows(cond)
    if b is None or b == n:
        return cond
    if n % b:
        raise ValueError(
            f"a condition of {b} rows cannot serve {n} rows (not a multiple): "
            "rows must be stacked copies of the conditioned batch"
        )
    return _map(cond, lambda v: v.repeat(n // b, *([1] * (v.dim() - 1))))


def take(cond: Condition, index) -> Condition:
    """Rows ``index`` (a slice or an index tensor) of a condition."""
    return _map(cond, lambda v: v[index])


class BoundVelocity(nn.Module):
    """``(x, t) -> velocity(x, t, tile(cond, len(x)))``: a conditional velocity with one batch's
    condition fixed, for code that calls ``(x, t)``. Keeps the wrapped model's parameters (so
    its dtype and device are found) and its ``difference`` (``v_ft - v_base``) where it has one."""

    def __init__(self, velocity: Callable, cond: Condition):
        super().__init__()
        self.velocity = velocity
        self.cond = cond
        if hasattr(velocity, "difference"):
            self.difference = self._difference

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.velocity(x, t, tile(self.cond, x.shape[0]))

    def _difference(self, x: Tensor, t: Tensor) -> Tensor:
        return self.velocity.difference(x, t, tile(self.cond, x.shape[0]))


def bind_velocity(velocity: Callable, cond: Condition) -> Callable:
    """``velocity`` itself for ``cond=None``, else a :class:`BoundVelocity`."""
    return velocity if cond is None else BoundVelocity(velocity, cond)


def bind_reward(reward: Callable, cond: Condition) -> Callable:
    """``reward`` itself for ``cond=None``, else ``x -> reward(x, tile(cond, len(x)))``."""
    if cond is None:
        return reward
    return lambda x: reward(x, tile(cond, x.shape[0]))


class ConditionSampler(ABC):
    """Draws the conditions of a batch of rollouts. Subclasses implement :meth:`draw`."""

    @abstractmethod
    def draw(self, n: int, generator: torch.Generator) -> Condition:
        """``n`` independent conditions."""

    def __call__(self, batch_size: int, generator: torch.Generator, *, group: int = 1) -> Any:
        """Conditions for ``batch_size`` rows, in runs of ``group`` equal rows (GRPO groups
        share one prompt); ``batch_size`` must be a multiple of ``group``."""
        if batch_size % group:
            raise ValueError(f"batch_size {batch_size} is not a multiple of group {group}")
        cond = self.draw(batch_size // group, generator)
        if group == 1:
            return cond
        return _map(cond, lambda v: v.repeat_interleave(group, dim=0))


class ClassLabels(ConditionSampler):
    """Class labels ``[n]`` (int64), uniform over ``num_classes`` or with ``probs``."""

    def __init__(self, num_classes: int, probs: Tensor | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if probs is not None and probs.shape != (num_classes,):
            raise ValueError(f"probs must have shape ({num_classes},), got {tuple(probs.shape)}")
        self.num_classes = num_classes
        self.probs = probs

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        device = generator.device if generator is not None else None
        if self.probs is None:
            return torch.randint(self.num_classes, (n,), generator=generator, device=device)
        return torch.multinomial(self.probs.to(device), n, replacement=True, generator=generator)


def concat(first: Condition, second: Condition) -> Condition:
    """The rows of ``first`` followed by those of ``second`` (same structure)."""
    if isinstance(first, Tensor):
        return torch.cat([first, second])
    return {k: torch.cat([first[k], second[k]]) for k in first}
