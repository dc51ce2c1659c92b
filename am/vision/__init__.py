"""Image rewards and metrics: ``scorer(images [B, 3, H, W] in [0, 1], prompts) -> [B]``.

The paper's evaluation (ClipScore, PickScore, HPS v2 / v2.1, ImageReward, the LAION aesthetic
score) as differentiable scorers loaded from local weights, and DreamSim embeddings for
diversity. ``import am.vision`` is light: each model's stack (transformers, open_clip,
dreamsim) is imported when that model is loaded.

>>> scorer = load_scorer("pickscore")          # doctest: +SKIP
>>> reward = Scaled(load_scorer("imagereward"), 100.0)   # lambda * r, as in the paper
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from am.vision.base import ImageScorer, Scaled, ScorerInfo, WeightedSum, check_images
from am.vision.resources import RESOURCES, MissingWeightsError, locate

__all__ = [
    "ImageScorer",
    "ScorerInfo",
    "Scaled",
    "WeightedSum",
    "check_images",
    "SCORERS",
    "load_scorer",
    "load_reward",
    "load_dreamsim",
    "MissingWeightsError",
    "RESOURCES",
    "locate",
]


@dataclass(frozen=True)
class ScorerSpec:
    """How to build a scorer: ``module:attribute`` of a classmethod, fixed keyword arguments,
    and the resources it reads (for ``python -m amcli.resources``)."""

    target: str
    resources: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


# One dict as the registry: name -> how to load it.
SCORERS: dict[str, ScorerSpec] = {
    # ClipScore's conventions (am.vision.clip.CLIPSCORE_CONVENTIONS): torchmetrics' (the tables'),
    # Hessel et al.'s, the Adjoint Matching authors' raw cosine
    "clipscore": ScorerSpec(
        "am.vision.clip:ClipScore.from_pretrained",
        ("clip-vit-large-patch14",),
        {"convention": "torchmetrics"},
    ),
    "clipscore-hessel": ScorerSpec(
        "am.vision.clip:ClipScore.from_pretrained",
        ("clip-vit-base-patch32",),
        {"convention": "hessel"},
    ),
    "clipscore-authors": ScorerSpec(
        "am.vision.clip:ClipScore.from_pretrained",
        ("clip-vit-large-patch14",),
        {"convention": "authors"},
    ),
    "pickscore": ScorerSpec(
        "am.vision.clip:PickScore.from_pretrained", ("pickscore", "clip-vit-h-14-processor")
    ),
    "hpsv2.0": ScorerSpec("am.vision.hps:HPSv2.from_pretrained", ("hpsv2.0",), {"version": "v2.0"}),
    "hpsv2.1": ScorerSpec("am.vision.hps:HPSv2.from_pretrained", ("hpsv2.1",), {"version": "v2.1"}),
    # the raw cosine, as hpsv2.score() and the Adjoint Matching authors report it
    "hpsv2.0-cos": ScorerSpec(
        "am.vision.hps:HPSv2.from_pretrained", ("hpsv2.0",), {"version": "v2.0", "scale": "cos"}
    ),
    "hpsv2.1-cos": ScorerSpec(
        "am.vision.hps:HPSv2.from_pretrained", ("hpsv2.1",), {"version": "v2.1", "scale": "cos"}
    ),
    "imagereward": ScorerSpec(
        "am.vision.imagereward:ImageRewardScorer.from_pretrained",
        ("imagereward", "bert-base-uncased"),
    ),
    "aesthetic": ScorerSpec(
        "am.vision.clip:AestheticScore.from_pretrained", ("aesthetic", "clip-vit-large-patch14")
    ),
}


def _resolve(target: str):
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_scorer(name: str, path: str | os.PathLike | None = None, **kwargs: Any) -> ImageScorer:
    """Build the scorer ``name`` from local weights (``path``: its directory; otherwise
    ``$AM_WEIGHTS/<resource>/`` or the Hugging Face cache). Raises KeyError for an unknown name
    (``"hpsv2"`` asks which version) and :class:`MissingWeightsError` for missing files."""
    if name == "hpsv2":
        raise KeyError("say which HPS: 'hpsv2.0' or 'hpsv2.1' (different checkpoints and numbers)")
    if name not in SCORERS:
        raise KeyError(f"unknown scorer {name!r}; known: {', '.join(SCORERS)}")
    spec = SCORERS[name]
    return _resolve(spec.target)(path=path, **spec.kwargs, **kwargs)


def load_reward(terms: dict[str, float], paths: dict[str, str] | None = None) -> WeightedSum:
    """``sum_k w_k scorer_k`` from ``{scorer name: weight}``, e.g. ``{"imagereward": 100.0}``
    for the paper's ``lambda * ImageReward``."""
    paths = paths or {}
    unknown = [n for n in terms if n not in SCORERS]
    if unknown:  # before loading anything: a typo should not cost a model load
        raise KeyError(f"unknown scorer(s) {unknown}; known: {', '.join(SCORERS)}")
    return WeightedSum({n: (load_scorer(n, paths.get(n)), w) for n, w in terms.items()})


def load_dreamsim(path: str | os.PathLike | None = None, **kwargs: Any):
    """The DreamSim embedder (:class:`am.vision.dreamsim.DreamSimEmbedder`) for diversity."""
    from am.vision.dreamsim import DreamSimEmbedder

    return DreamSimEmbedder.from_pretrained(path=path, **kwargs)
