"""Human Preference Score v2 / v2.1: open_clip ViT-H-14 with the HPS checkpoint.

The score is the cosine of open_clip's L2-normalised image and prompt embeddings, on one of two
scales (:data:`HPS_SCALES`, printed in the table header): ``"100cos"``, HPS v2's benchmark
scale (about 20-35), or ``"cos"``, what ``hpsv2.score()`` and the Adjoint Matching authors'
code report (about 0.2-0.35). v2.0 and v2.1 are different checkpoints with different numbers,
and the reference package silently defaults to v2.0, so the version is a required argument.

Images are letterboxed as hpsv2 scores them (``create_model_and_transforms(...,
light_augmentation=True)`` returns ``ResizeMaxSize``: longer side to 224, black padding), not
centre-cropped as open_clip's own eval transform would.

The ``hpsv2`` package does not run on current stacks (it pins old pytest and protobuf, its wheel
lacks the tokenizer vocabulary, and ``score()`` downloads weights), but its checkpoint holds the
whole ViT-H-14 state dict, so this module loads it into open_clip's own ViT-H-14, strictly:
its keys and shapes are checked against the model's before any weight is read.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from am.vision.base import ImageScorer, ScorerInfo
from am.vision.checkpoints import check_shapes, module_shapes, read_shapes
from am.vision.preprocess import Preprocess
from am.vision.resources import RESOURCES, locate

__all__ = ["HPSv2", "HPS_VERSIONS", "HPS_SCALES", "check_hps_file"]

# version -> (resource name, checkpoint file)
HPS_VERSIONS = {
    "v2.0": ("hpsv2.0", RESOURCES["hpsv2.0"].files[0]),
    "v2.1": ("hpsv2.1", RESOURCES["hpsv2.1"].files[0]),
}
# scale -> (multiplier of the cosine, registry-name suffix, description for the table header)
HPS_SCALES = {
    "100cos": (100.0, "", "100 * cos (HPS v2 benchmark scale): about 20-35"),
    "cos": (1.0, "-cos", "raw cos, as hpsv2.score() returns it: about 0.20-0.35"),
}
ARCHITECTURE = "open_clip ViT-H-14"


def _no_pretrained_note(record: logging.LogRecord) -> bool:
    # open_clip warns "Model initialized randomly" for pretrained=None; the HPS weights load next
    return "No pretrained weights loaded" not in record.getMessage()


def _vit_h_14(device: str | torch.device = "cpu") -> nn.Module:
    import open_clip

    # create_model builds on the CPU and then moves: for "meta" that was 17 s and 4.6 GB for
    # a shape check; built inside the device context nothing is allocated (0.6 s)
    root = logging.getLogger()
    root.addFilter(_no_pretrained_note)
    try:
        with torch.device(device) if str(device) == "meta" else contextlib.nullcontext():
            return open_clip.create_model("ViT-H-14", pretrained=None, device=device)
    finally:
        root.removeFilter(_no_pretrained_note)


class HPSv2(ImageScorer):
    """``m * cos(image, prompt)`` with an open_clip CLIP model and its tokenizer: ``[B]``;
    ``m = 100`` or ``1`` by ``scale`` (:data:`HPS_SCALES`)."""

    def __init__(self, model: nn.Module, tokenizer, *, version: str, scale: str = "100cos"):
        super().__init__()
        if version not in HPS_VERSIONS:
            raise ValueError(f"HPS version must be one of {sorted(HPS_VERSIONS)}, got {version!r}")
        if scale not in HPS_SCALES:
            raise ValueError(f"HPS scale must be one of {sorted(HPS_SCALES)}, got {scale!r}")
        self.model, self.tokenizer, self.version = model, tokenizer, version
        self.multiplier, suffix, described = HPS_SCALES[scale]
        size = model.visual.image_size
        self.preprocess = Preprocess(size=size[0] if isinstance(size, tuple) else size, fit="pad")
        self.info = ScorerInfo(
            f"hps{version}{suffix}",
            f"HPS {version} ({HPS_VERSIONS[version][1]}, xswu/HPSv2) on {ARCHITECTURE}, "
            "letterboxed as hpsv2",
            described,
        )
        self.freeze()

    @classmethod
    def from_pretrained(
        cls,
        *,
        version: str,
        path: str | os.PathLike | None = None,
        model: nn.Module | None = None,
        scale: str = "100cos",
    ) -> HPSv2:
        """Load the HPS ``version`` checkpoint ("v2.0" or "v2.1") found by :func:`locate` into
        ``model`` (default: open_clip's ViT-H-14, 986M parameters, 10-20 s to build on a CPU;
        tests pass a tiny model of the same family). The file's keys and shapes are checked
        first (:func:`check_hps_file`)."""
        import open_clip

        if version not in HPS_VERSIONS:
            raise ValueError(f"HPS version must be one of {sorted(HPS_VERSIONS)}, got {version!r}")
        resource, filename = HPS_VERSIONS[version]
        file = locate(resource, path) / filename
        check_hps_file(file, model)
        state = load_open_clip_state(file)
        model = _vit_h_14() if model is None else model
        model.load_state_dict(state, strict=True)
        return cls(model, open_clip.get_tokenizer("ViT-H-14"), version=version, scale=scale)

    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        device = next(self.model.parameters()).device
        image = self.model.encode_image(self.preprocess(images), normalize=True)
        text = self.model.encode_text(self.tokenizer(list(prompts)).to(device), normalize=True)
        return self.multiplier * (image * text).sum(-1)


def _strip(state: dict) -> dict:
    # HPS training checkpoints come from DDP, whose wrapper prefixes every key with "module."
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_hps_file(file: str | os.PathLike, model: nn.Module | None = None) -> None:
    """Raise :class:`am.vision.checkpoints.WeightsMismatchError` naming ``file`` and the first
    offending keys unless its state dict (``{"state_dict": ...}`` or bare, ``module.`` prefix
    removed) has exactly ``model``'s keys and shapes (default: ViT-H-14, built on ``meta``).
    Reads no tensor data."""
    expected = module_shapes(model if model is not None else _vit_h_14("meta"))
    found = _strip(read_shapes(file, subkey="state_dict"))
    check_shapes(found, expected, file=Path(file), model=f"HPS ({ARCHITECTURE})")


def load_open_clip_state(file: str | os.PathLike) -> dict[str, Tensor]:
    """The open_clip state dict in an HPS checkpoint (``{"state_dict": ...}`` or the bare dict),
    with DDP's ``module.`` prefix removed (check it first with :func:`check_hps_file`)."""
    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{file} holds a {type(checkpoint).__name__}, not a state dict")
    return _strip(state)
