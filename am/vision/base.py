"""The image-scorer protocol: ``images [B, 3, H, W]`` in [0, 1] and ``B`` prompts -> ``[B]``.

Every scorer is an ``nn.Module`` whose forward is differentiable with respect to the images
(its weights are frozen), does its own preprocessing in torch (resize, crop, normalise with the
model's constants; :mod:`am.vision.preprocess`), and carries a :class:`ScorerInfo` that names
the model, the checkpoint version and the scale of the number it returns, so that every table
can print them. A reward for fine-tuning is a scorer times ``lambda`` (:class:`Scaled`) or a
weighted sum of several (:class:`WeightedSum`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ScorerInfo", "ImageScorer", "Scaled", "WeightedSum", "check_images"]


@dataclass(frozen=True)
class ScorerInfo:
    """What a score is: ``name`` (registry key), ``version`` (model and checkpoint) and
    ``scale`` (the formula and its usual range), printed in every metrics table's header."""

    name: str
    version: str
    scale: str


def check_images(images: Tensor, prompts: Sequence[str] | None = None) -> None:
    """Raise ValueError unless ``images`` is a float ``[B, 3, H, W]`` tensor and ``prompts``
    (when given) is a sequence of ``B`` strings. Values outside [0, 1] are allowed (a sampler's
    overshoot) and are not clipped here: the caller decides."""
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"images must be float [B, 3, H, W] in [0, 1], got {tuple(images.shape)} {images.dtype}"
        )
    if prompts is None:
        return
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a sequence of strings, one per image")
    if len(prompts) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {len(prompts)} prompts")


class ImageScorer(nn.Module, ABC):
    """``scorer(images [B, 3, H, W] in [0, 1], prompts: B strings) -> scores [B]``.

    Subclasses set :attr:`info` and implement :meth:`score`; the weights are frozen (the
    gradient flows to the images only) and the module stays in eval mode.
    """

    info: ScorerInfo

    def freeze(self) -> ImageScorer:
        """Freeze every parameter and switch to eval mode (dropout off); returns ``self``."""
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> ImageScorer:
        # A scorer is a fixed function: train-mode dropout would make scores differ per call.
        return super().train(False)

    @abstractmethod
    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Scores ``[B]`` for checked inputs."""

    def forward(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        check_images(images, prompts)
        return self.score(images, list(prompts))

    def table_mean(self, mean: float) -> float:
        """The table's entry for a mean of this scorer's scores: the mean itself, unless a
        convention says otherwise (torchmetrics' ClipScore clamps it at 0)."""
        return mean


class Scaled(nn.Module):
    """``lambda * scorer(images, prompts)``: the reward the paper fine-tunes against."""

    def __init__(self, scorer: ImageScorer, scale: float):
        super().__init__()
        self.scorer, self.scale = scorer, float(scale)

    def forward(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return self.scale * self.scorer(images, prompts)


class WeightedSum(nn.Module):
    """``sum_k w_k scorer_k(images, prompts)`` over ``{name: (scorer, weight)}``."""

    def __init__(self, terms: Mapping[str, tuple[ImageScorer, float]]):
        super().__init__()
        if not terms:
            raise ValueError("WeightedSum needs at least one term")
        self.scorers = nn.ModuleDict({name: s for name, (s, _) in terms.items()})
        self.weights = {name: float(w) for name, (_, w) in terms.items()}

    def forward(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        total = torch.zeros(images.shape[0], dtype=images.dtype, device=images.device)
        for name, scorer in self.scorers.items():
            total = total + self.weights[name] * scorer(images, prompts)
        return total
