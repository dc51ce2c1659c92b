"""A conditional problem with exact ground truth: one Gaussian-mixture problem per class.

For class ``c`` the base is ``p_base(x | c)`` (a mixture), the reward ``r(x, c)`` is quadratic
with a class-specific centre, and the target ``p_base(x | c) exp(lambda r(x, c)) / Z_c`` is again
a mixture in closed form. Classes have different bases and different rewards, so a method that
mixes up which row has which condition lands on the wrong per-class targets: this is the
test bed for conditions through the core (:mod:`am.conditions`) and for the importance-sampling
reference (:func:`am.metrics.importance.tilted_expectation`) that the image benchmarks use
where no closed form exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from am.conditions import ClassLabels
from am.problems.gaussian_mixture import GaussianMixture, GaussianMixtureVelocity
from am.rewards.synthetic import QuadraticReward
from am.schedules import Schedule

__all__ = ["PerClass", "ConditionalGroundTruth", "make_conditional_problem"]


class PerClass(nn.Module):
    """``(*args, labels [N]) -> modules[labels[i]](*args)[i]``: one module per class, applied
    row by row. Every module is evaluated on every row and the right one gathered (the classes
    are few here); gradients flow to the inputs as through the chosen module alone."""

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__()
        self.per_class = nn.ModuleList(modules)

    def forward(self, *args: Tensor) -> Tensor:
        *inputs, labels = args
        if labels.dtype not in (torch.int32, torch.int64) or labels.dim() != 1:
            raise ValueError(
                f"labels must be an integer tensor [N], got {labels.dtype} {labels.shape}"
            )
        if labels.shape[0] != inputs[0].shape[0]:
            raise ValueError(f"{labels.shape[0]} labels for {inputs[0].shape[0]} rows")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.per_class)):
            raise ValueError(f"labels must be in 0..{len(self.per_class) - 1}")
        out = torch.stack([m(*inputs) for m in self.per_class])  # [C, N, ...]
        index = labels.reshape(1, -1, *([1] * (out.dim() - 2))).expand(1, *out.shape[1:])
        return out.gather(0, index)[0]


@dataclass(frozen=True)
class ConditionalGroundTruth:
    """``bases[c]``, ``rewards[c]`` and exact ``targets[c]`` per class; ``velocity``: the exact
    conditional base velocity ``(x, t, labels)``; ``reward``: ``(x, labels) -> [N]``;
    ``conditions``: uniform class labels."""

    name: str
    bases: tuple[GaussianMixture, ...]
    rewards: tuple[QuadraticReward, ...]
    reward_scale: float
    targets: tuple[GaussianMixture, ...]
    schedule: Schedule

    @property
    def num_classes(self) -> int:
        return len(self.bases)

    @property
    def dim(self) -> int:
        return self.bases[0].dim

    @property
    def velocity(self) -> PerClass:
        return PerClass([GaussianMixtureVelocity(b, self.schedule) for b in self.bases])

    @property
    def target_velocity(self) -> PerClass:
        return PerClass([GaussianMixtureVelocity(b, self.schedule) for b in self.targets])

    @property
    def reward(self) -> PerClass:
        return PerClass(self.rewards)

    @property
    def conditions(self) -> ClassLabels:
        return ClassLabels(self.num_classes)

    def sample_base(self, labels: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact base samples ``[N, D]``, row ``i`` from ``p_base(x | labels[i])``."""
        return self._sample(self.bases, labels, generator)

    def sample_target(self, labels: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact target samples ``[N, D]``, row ``i`` from the tilt of class ``labels[i]``."""
        return self._sample(self.targets, labels, generator)

    def _sample(self, mixtures, labels: Tensor, generator) -> Tensor:
        out = torch.empty(len(labels), self.dim, dtype=mixtures[0].means.dtype)
        for c, mixture in enumerate(mixtures):
            rows = labels == c
            out[rows] = mixture.sample(int(rows.sum()), generator=generator)
        return out


def _cgmm2d(schedule: Schedule, reward_scale: float) -> ConditionalGroundTruth:
    """Three classes in 2-D: two-component bases at different places, each with its own reward
    centre, so every class's target sits elsewhere."""
    offsets = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    pair = torch.tensor([[0.0, -0.8], [0.0, 0.8]])
    bases = tuple(
        GaussianMixture.isotropic(o + pair, 0.5, weights=torch.tensor([0.7, 0.3])) for o in offsets
    )
    centres = offsets + torch.tensor([[0.0, 2.0], [1.5, 1.5], [2.0, -1.0]])
    rewards = tuple(QuadraticReward(m, torch.eye(2)) for m in centres)
    targets = tuple(r.tilt(b, reward_scale) for r, b in zip(rewards, bases, strict=True))
    return ConditionalGroundTruth("cgmm2d", bases, rewards, reward_scale, targets, schedule)


PROBLEMS = {"cgmm2d": _cgmm2d}


def make_conditional_problem(
    name: str, schedule: Schedule, reward_scale: float
) -> ConditionalGroundTruth:
    """The named conditional problem (:data:`PROBLEMS`) at ``reward_scale``."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown conditional problem {name!r}; known: {sorted(PROBLEMS)}")
    return PROBLEMS[name](schedule, reward_scale)
