"""CLIP-based scores through transformers: ClipScore, PickScore and the LAION aesthetic predictor.

* ClipScore (:class:`ClipScore`): the cosine of L2-normalised CLIP embeddings, under one of
  three named conventions (:data:`CLIPSCORE_CONVENTIONS`), which differ in more than the scale:
  ``"torchmetrics"`` (the default, registry name ``clipscore``): ViT-L/14, ``100 cos`` per
  image, the table's mean clamped at 0 (torchmetrics clamps after the mean, not per image),
  ``CLIPImageProcessor`` pixels, and prompts over 77 tokens cut to 77 ids, which drops the end
  token as torchmetrics does; ``"hessel"`` (``clipscore-hessel``): Hessel et al.'s ViT-B/32,
  ``"A photo depicts " + prompt``, ``2.5 max(cos, 0)`` per image, OpenAI's torchvision
  preprocessing and ``clip.tokenize(truncate=True)`` (which keeps the end token);
  ``"authors"`` (``clipscore-authors``): the Adjoint Matching authors' raw cosine with ViT-L/14,
  OpenAI's preprocessing and ``clip.tokenize(truncate=True)``.
* PickScore (:class:`PickScore`): ``logit_scale.exp() * cos`` with the PickScore_v1 CLIP
  ViT-H/14 and the LAION ViT-H-14 tokenizer; about 18-24 on real generations.
* Aesthetic (:class:`AestheticScore`): the LAION improved aesthetic predictor, an MLP on the
  L2-normalised CLIP ViT-L/14 image embedding; about 1-10, prompt-independent.

Every score is differentiable with respect to the images; preprocessing is
:class:`am.vision.preprocess.Preprocess` (bicubic resize of the shorter side to 224, centre
crop, OpenAI mean/std), as the models' processors do with PIL; the crop offset follows each
reference (transformers floors it, torchvision rounds it). Weights load strictly: the
``model.safetensors`` header is checked against the model's keys and shapes first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from am.vision.base import ImageScorer, ScorerInfo
from am.vision.checkpoints import check_shapes, module_shapes, read_shapes
from am.vision.preprocess import Preprocess
from am.vision.resources import locate

__all__ = [
    "ClipEncoder",
    "ClipScore",
    "ClipConvention",
    "CLIPSCORE_CONVENTIONS",
    "PickScore",
    "AestheticScore",
    "AestheticMLP",
    "check_clip_dir",
]

PathLike = str | os.PathLike | None
# Persistent buffers in files saved by older transformers, recomputed by the model now.
IGNORABLE = {
    "text_model.embeddings.position_ids": "a buffer older transformers saved; recomputed",
    "vision_model.embeddings.position_ids": "a buffer older transformers saved; recomputed",
}
TRUNCATIONS = ("keep-end", "drop-end")


def check_clip_dir(model_dir: Path, what: str = "CLIP") -> None:
    """Raise :class:`am.vision.checkpoints.WeightsMismatchError` naming ``model.safetensors``
    and the first offending keys unless its header has exactly the keys and shapes of the
    ``CLIPModel`` its ``config.json`` describes (built on ``meta``: nothing is allocated)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig.from_pretrained(model_dir, local_files_only=True)
    with torch.device("meta"):
        expected = module_shapes(CLIPModel(config))
    file = Path(model_dir) / "model.safetensors"
    check_shapes(read_shapes(file), expected, file=file, model=what, ignore=IGNORABLE)


class ClipEncoder(nn.Module):
    """A transformers ``CLIPModel`` with its tokenizer and torch preprocessing; returns
    L2-normalised projected embeddings ``[B, D]`` for images ``[B, 3, H, W]`` in [0, 1] and for
    prompts."""

    def __init__(self, model: nn.Module, tokenizer, preprocess: Preprocess | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        # transformers' processors (the reference for ClipScore and PickScore) floor the offset
        self.preprocess = preprocess or Preprocess(
            size=model.config.vision_config.image_size, crop_offset="floor"
        )

    @classmethod
    def from_dir(
        cls, model_dir: Path, tokenizer_dir: Path | None = None, what: str = "CLIP"
    ) -> ClipEncoder:
        """Load ``CLIPModel`` from ``model_dir`` and ``CLIPTokenizer`` from ``tokenizer_dir``
        (default ``model_dir``); both offline, both already found by :func:`locate`; the
        weights strictly (:func:`check_clip_dir`; ``what`` names the model in its message)."""
        from transformers import CLIPModel, CLIPTokenizer

        check_clip_dir(model_dir, what)
        model = CLIPModel.from_pretrained(model_dir, local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir or model_dir, local_files_only=True)
        return cls(model, tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def image_features(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` in [0, 1] -> unit embeddings ``[B, D]``."""
        pixels = self.preprocess(images).to(self.model.dtype)
        return F.normalize(self.model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)

    def text_features(self, prompts: Sequence[str], truncation: str = "keep-end") -> Tensor:
        """``B`` prompts -> unit embeddings ``[B, D]``. Prompts longer than the model's 77
        positions are cut: ``"keep-end"`` to 75 tokens between the start and end tokens (as
        ``clip.tokenize(truncate=True)`` and transformers' tokenizer do), ``"drop-end"`` to the
        first 77 ids, which loses the end token (torchmetrics' ``_clip_score_update``)."""
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        max_len = self.model.config.text_config.max_position_embeddings
        keep = truncation == "keep-end"
        tokens = self.tokenizer(
            list(prompts),
            padding=True,
            truncation=keep,
            max_length=max_len if keep else None,
            return_tensors="pt",
        ).to(self.device)
        ids, mask = tokens.input_ids[:, :max_len], tokens.attention_mask[:, :max_len]
        out = self.model.get_text_features(input_ids=ids, attention_mask=mask)
        return F.normalize(out.pooler_output, dim=-1)


@dataclass(frozen=True)
class ClipConvention:
    """One ClipScore convention: registry ``name``, weights ``resource``, ``multiplier`` of the
    cosine, prompt ``prefix``, ``clamp`` at 0 ("image": each score, "mean": the table's mean,
    "none"), prompt ``truncation`` (:meth:`ClipEncoder.text_features`), ``crop_offset``
    (:func:`am.vision.preprocess.center_crop`), and the table header's ``version``/``scale``."""

    name: str
    resource: str
    multiplier: float
    prefix: str
    clamp: str
    truncation: str
    crop_offset: str
    version: str
    scale: str


CLIPSCORE_CONVENTIONS = {
    "torchmetrics": ClipConvention(
        "clipscore", "clip-vit-large-patch14", 100.0, "", "mean", "drop-end", "floor",
        "CLIP ViT-L/14 (openai/clip-vit-large-patch14), torchmetrics' CLIPScore convention",
        "100 * cos per image, the mean clamped at 0 (torchmetrics: max(mean, 0)); prompts over "
        "77 tokens lose their end token, as there: about 20-35",
    ),
    "hessel": ClipConvention(
        "clipscore-hessel", "clip-vit-base-patch32", 2.5, "A photo depicts ", "image",
        "keep-end", "round",
        "CLIP ViT-B/32 (openai/clip-vit-base-patch32), Hessel et al. 2021 (jmhessel/clipscore)",
        '2.5 * max(cos, 0) per image, prompt prefixed "A photo depicts ": about 0.5-1',
    ),
    "authors": ClipConvention(
        "clipscore-authors", "clip-vit-large-patch14", 1.0, "", "none", "keep-end", "round",
        "CLIP ViT-L/14, the Adjoint Matching authors' code (OpenAI clip package preprocessing)",
        "raw cos: about 0.2-0.35",
    ),
}  # fmt: skip


def _check_convention(convention: str) -> None:
    if convention not in CLIPSCORE_CONVENTIONS:
        known = ", ".join(CLIPSCORE_CONVENTIONS)
        raise ValueError(f"ClipScore convention must be one of {known}, got {convention!r}")


class ClipScore(ImageScorer):
    """``multiplier * cos(image, prefix + prompt)`` per image ``[B]``, clamped at 0 per image or
    in the table's mean, all by ``convention`` (a key of :data:`CLIPSCORE_CONVENTIONS`)."""

    def __init__(self, encoder: ClipEncoder, *, convention: str = "torchmetrics"):
        super().__init__()
        _check_convention(convention)
        self.convention = c = CLIPSCORE_CONVENTIONS[convention]
        encoder.preprocess = replace(encoder.preprocess, crop_offset=c.crop_offset)
        self.encoder, self.multiplier, self.prefix = encoder, c.multiplier, c.prefix
        self.info = ScorerInfo(c.name, c.version, c.scale)
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: PathLike = None, convention: str = "torchmetrics") -> ClipScore:
        """The ClipScore of ``convention`` with its weights (default: the tables' torchmetrics
        convention on ViT-L/14)."""
        _check_convention(convention)
        resource = CLIPSCORE_CONVENTIONS[convention].resource
        return cls(
            ClipEncoder.from_dir(locate(resource, path), what=resource), convention=convention
        )

    @classmethod
    def hessel(cls, path: PathLike = None) -> ClipScore:
        """Hessel et al. (2021): ViT-B/32, ``"A photo depicts " + prompt``, ``2.5 * max(cos, 0)``."""
        return cls.from_pretrained(path, convention="hessel")

    def cosine(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """The raw cosine ``[B]`` under this convention's preprocessing and truncation."""
        prompts = [self.prefix + p for p in prompts]
        text = self.encoder.text_features(prompts, self.convention.truncation)
        return (self.encoder.image_features(images) * text).sum(-1)

    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        cos = self.cosine(images, prompts)
        return self.multiplier * (cos.clamp(min=0) if self.convention.clamp == "image" else cos)

    def table_mean(self, mean: float) -> float:
        """torchmetrics' convention clamps the mean (``max(mean, 0)``), not each score."""
        return max(mean, 0.0) if self.convention.clamp == "mean" else mean


class PickScore(ImageScorer):
    """``logit_scale.exp() * cos(image, prompt)``: ``[B]`` (PickScore_v1)."""

    info = ScorerInfo(
        "pickscore",
        "PickScore_v1 (yuvalkirstain/PickScore_v1, CLIP ViT-H/14; LAION ViT-H-14 tokenizer)",
        "logit_scale * cos, logit_scale = 100: about 18-24",
    )

    def __init__(self, encoder: ClipEncoder):
        super().__init__()
        self.encoder = encoder
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: PathLike = None, tokenizer_path: PathLike = None) -> PickScore:
        model_dir = locate("pickscore", path)
        tokenizer_dir = locate("clip-vit-h-14-processor", tokenizer_path)
        return cls(ClipEncoder.from_dir(model_dir, tokenizer_dir, what="PickScore_v1"))

    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        cos = (self.encoder.image_features(images) * self.encoder.text_features(prompts)).sum(-1)
        return self.encoder.model.logit_scale.exp() * cos


class AestheticMLP(nn.Module):
    """The LAION improved aesthetic predictor's head: ``[B, 768] -> [B]``; its state-dict keys
    are the published file's (``layers.{0,2,4,6,7}``); dropout is inactive in eval mode."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.layers(embeddings).squeeze(-1)


class AestheticScore(ImageScorer):
    """LAION aesthetic score of each image ``[B]``; the prompts are ignored."""

    info = ScorerInfo(
        "aesthetic",
        "LAION improved aesthetic predictor (sac+logos+ava1-l14-linearMSE) on CLIP ViT-L/14",
        "MLP regression of the 1-10 rating: about 4-7",
    )

    def __init__(self, encoder: ClipEncoder, head: AestheticMLP):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: PathLike = None, clip_path: PathLike = None) -> AestheticScore:
        file = locate("aesthetic", path) / "sac+logos+ava1-l14-linearMSE.pth"
        clip_dir = locate("clip-vit-large-patch14", clip_path)
        from transformers import CLIPConfig

        dim = CLIPConfig.from_pretrained(clip_dir, local_files_only=True).projection_dim
        head = AestheticMLP(dim)
        what = "the LAION aesthetic predictor's MLP"
        check_shapes(read_shapes(file), module_shapes(head), file=file, model=what)
        head.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        encoder = ClipEncoder.from_dir(clip_dir, what="clip-vit-large-patch14")
        # the predictor was trained on OpenAI CLIP's torchvision preprocessing
        encoder.preprocess = replace(encoder.preprocess, crop_offset="round")
        return cls(encoder, head)

    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return self.head(self.encoder.image_features(images).to(self.head.layers[0].weight.dtype))
