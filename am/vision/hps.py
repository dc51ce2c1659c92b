"""Human Preference Score v2 / v2.1: open_clip ViT-H-14 with the HPS checkpoint.

``100 * cos(image, prompt)`` of open_clip's L2-normalised embeddings (HPS v2's benchmark scale;
``hpsv2.score()`` returns the raw cosine). v2.0 and v2.1 are different checkpoints with
different numbers, and the reference package silently defaults to v2.0, so the version is a
required argument here and is printed in every table's header.

The ``hpsv2`` package does not run on current stacks (it pins old pytest and protobuf, its wheel
lacks the tokenizer vocabulary, and ``score()`` downloads weights), but its checkpoint holds the
whole ViT-H-14 state dict, so this module loads it into open_clip's own ViT-H-14 with
``weights_only=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from am.vision.base import ImageScorer, ScorerInfo
from am.vision.preprocess import Preprocess
from am.vision.resources import RESOURCES, locate

__all__ = ["HPSv2", "HPS_VERSIONS"]

# version -> (resource name, checkpoint file)
HPS_VERSIONS = {
    "v2.0": ("hpsv2.0", RESOURCES["hpsv2.0"].files[0]),
    "v2.1": ("hpsv2.1", RESOURCES["hpsv2.1"].files[0]),
}


class HPSv2(ImageScorer):
    """``100 * cos(image, prompt)`` with an open_clip CLIP model and its tokenizer: ``[B]``."""

    def __init__(self, model: nn.Module, tokenizer, *, version: str):
        super().__init__()
        if version not in HPS_VERSIONS:
            raise ValueError(f"HPS version must be one of {sorted(HPS_VERSIONS)}, got {version!r}")
        self.model, self.tokenizer, self.version = model, tokenizer, version
        size = model.visual.image_size
        self.preprocess = Preprocess(size=size[0] if isinstance(size, tuple) else size)
        self.info = ScorerInfo(
            f"hps{version}",
            f"HPS {version} ({HPS_VERSIONS[version][1]}, xswu/HPSv2) on open_clip ViT-H-14",
            "100 * cos: about 20-35 on text-to-image generations",
        )
        self.freeze()

    @classmethod
    def from_pretrained(
        cls, *, version: str, path: str | os.PathLike | None = None, model: nn.Module | None = None
    ) -> HPSv2:
        """Load the HPS ``version`` checkpoint ("v2.0" or "v2.1") found by :func:`locate` into
        ``model`` (default: open_clip's ViT-H-14, 986M parameters, 10-20 s to build on a CPU;
        tests pass a tiny model of the same family)."""
        import open_clip

        if version not in HPS_VERSIONS:
            raise ValueError(f"HPS version must be one of {sorted(HPS_VERSIONS)}, got {version!r}")
        resource, filename = HPS_VERSIONS[version]
        file = locate(resource, path) / filename
        state = load_open_clip_state(file)
        if model is None:
            model = open_clip.create_model("ViT-H-14", pretrained=None)
        model.load_state_dict(state)
        return cls(model, open_clip.get_tokenizer("ViT-H-14"), version=version)

    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        device = next(self.model.parameters()).device
        image = self.model.encode_image(self.preprocess(images), normalize=True)
        text = self.model.encode_text(self.tokenizer(list(prompts)).to(device), normalize=True)
        return 100 * (image * text).sum(-1)


def load_open_clip_state(file: str | os.PathLike) -> dict[str, Tensor]:
    """An open_clip state dict from an HPS checkpoint (``{"state_dict": ...}`` or the bare
    dict), with DDP's ``module.`` prefix removed; ValueError when it holds no CLIP weights."""
    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(k.endswith("visual.proj") for k in state):
        keys = list(state)[:5] if isinstance(state, dict) else type(checkpoint).__name__
        raise ValueError(f"{file} holds no open_clip CLIP state dict (first keys: {keys})")
    return {k.removeprefix("module."): v for k, v in state.items()}
