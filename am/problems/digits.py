"""The digits benchmark's data and networks: class-conditional 8x8 images that train on a CPU.

Data: scikit-learn's ``load_digits`` (1797 grey 8x8 images of the digits 0-9, pixel values
0-16; shipped inside the package, nothing is downloaded), scaled to ``[-1, 1]`` as
``x = v / 8 - 1``, shape ``[N, 1, 8, 8]``. The prompts are the ten class names.

Fixed split (:func:`load_digits_splits`, stratified, seed 0, recorded in ``docs/digits.md``):

* ``test``: 40 images per class (400), never trained on: the real images realism is measured
  against, and the accuracy check of every classifier;
* ``flow``: the other 1397, which the base flow model is trained on;
* ``reward`` / ``heldout``: ``flow`` cut in two disjoint halves (alternating within each class):
  the reward classifier trains on one, the held-out classifier on the other.

Networks (all small, differentiable, smooth activations so rewards have useful gradients):

* :class:`DigitsCNN`: the reward model ``r(x, c) = log p(c | x)`` (the ImageReward analogue);
* :class:`DigitsMLP`: the held-out evaluator, a different architecture on different data (the
  HPS v2 / PickScore analogue, never optimised);
* :class:`DigitsEmbedding`: a third network whose 16-dimensional penultimate layer is the feature
  space of diversity and realism (the DreamSim / Inception analogue).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CLASS_NAMES",
    "DigitsSplit",
    "load_digits_splits",
    "DigitsCNN",
    "DigitsMLP",
    "DigitsEmbedding",
    "ClassifierReward",
]

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEST_PER_CLASS = 40


@dataclass(frozen=True)
class DigitsSplit:
    """``images [N, 1, 8, 8]`` in ``[-1, 1]`` (float32), ``labels [N]`` (int64, 0-9)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def _load_digits() -> tuple[Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # an optional extra: the core does not need it
        raise ImportError(
            "the digits benchmark needs scikit-learn: pip install -e '.[digits]'"
        ) from e
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    return images, torch.tensor(data.target, dtype=torch.int64)


def load_digits_splits(seed: int = 0) -> dict[str, DigitsSplit]:
    """The fixed split ``{"test", "flow", "reward", "heldout"}`` (see the module docstring)."""
    images, labels = _load_digits()
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list[Tensor]] = {"test": [], "flow": [], "reward": [], "heldout": []}
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        test, rest = idx[:TEST_PER_CLASS], idx[TEST_PER_CLASS:]
        parts["test"].append(test)
        parts["flow"].append(rest)
        parts["reward"].append(rest[0::2])
        parts["heldout"].append(rest[1::2])
    out = {}
    for name, chunks in parts.items():
        index = torch.cat(chunks).sort().values
        out[name] = DigitsSplit(images[index], labels[index])
    return out


class DigitsCNN(nn.Module):
    """``x [B, 1, 8, 8] -> logits [B, 10]``: two convolutions (the second strided to 4x4) and
    a linear head, SiLU activations."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 10),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DigitsMLP(nn.Module):
    """``x [B, 1, 8, 8] -> logits [B, 10]``: an MLP on the 64 pixels (a different inductive
    bias from :class:`DigitsCNN`)."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DigitsEmbedding(nn.Module):
    """``x [B, 1, 8, 8] -> logits [B, 10]`` trained as a classifier; :meth:`features` gives the
    ``[B, dim]`` penultimate layer used as the feature space of diversity and realism."""

    def __init__(self, width: int = 24, dim: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GELU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(width * 16, dim),
            nn.GELU(),
        )
        self.head = nn.Linear(dim, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class ClassifierReward(nn.Module):
    """``r(x, c) = log softmax(logits(x) / T)_c``, a classifier's tempered log-probability of the
    prompt class: ``(x [B, 1, 8, 8], labels [B]) -> [B]``, differentiable in ``x``; the
    classifier is frozen.

    Why a temperature: a well-trained classifier gives nearly every decent digit
    ``log p(c | x) ~ 0``, so ``exp(lambda r)`` only removes the few misclassified samples and the
    tilt barely differs from the base. At ``T = 10`` the reward grades how typical a digit looks
    (within-class spread 0.24 on the base model's samples), like an image reward grades
    generations of one prompt, and raising ``lambda`` trades diversity for it
    (``docs/digits.md``)."""

    def __init__(self, classifier: nn.Module, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.classifier = classifier.requires_grad_(False).eval()
        self.temperature = float(temperature)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        log_p = F.log_softmax(self.classifier(x) / self.temperature, dim=-1)
        return log_p.gather(1, labels.reshape(-1, 1)).squeeze(1)
