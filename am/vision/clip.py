"""CLIP-based scores through transformers: ClipScore, PickScore and the LAION aesthetic predictor.

* ClipScore (:class:`ClipScore`): ``w * max(cos(f_img, f_txt), 0)`` of L2-normalised CLIP
  embeddings. Default: OpenAI CLIP ViT-L/14 and ``w = 100``, as torchmetrics computes it (the
  tables use this). Option (:meth:`ClipScore.hessel`): Hessel et al.'s original, ViT-B/32 with
  the prompt prefixed ``"A photo depicts "`` and ``w = 2.5``.
* PickScore (:class:`PickScore`): ``logit_scale.exp() * cos`` with the PickScore_v1 CLIP
  ViT-H/14 and the LAION ViT-H-14 tokenizer; about 18-24 on real generations.
* Aesthetic (:class:`AestheticScore`): the LAION improved aesthetic predictor, an MLP on the
  L2-normalised CLIP ViT-L/14 image embedding; about 1-10, prompt-independent.

Every score is differentiable with respect to the images; preprocessing is
:class:`am.vision.preprocess.Preprocess` (bicubic resize of the shorter side to 224, centre
crop, OpenAI mean/std), as the models' processors do with PIL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from am.vision.base import ImageScorer, ScorerInfo
from am.vision.preprocess import Preprocess
from am.vision.resources import locate

__all__ = ["ClipEncoder", "ClipScore", "PickScore", "AestheticScore", "AestheticMLP"]

PathLike = str | os.PathLike | None


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
    def from_dir(cls, model_dir: Path, tokenizer_dir: Path | None = None) -> ClipEncoder:
        """Load ``CLIPModel`` from ``model_dir`` and ``CLIPTokenizer`` from ``tokenizer_dir``
        (default ``model_dir``); both offline, both already checked by :func:`locate`."""
        from transformers import CLIPModel, CLIPTokenizer

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

    def text_features(self, prompts: Sequence[str]) -> Tensor:
        """``B`` prompts -> unit embeddings ``[B, D]`` (truncated to the model's 77 tokens)."""
        max_len = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        ).to(self.device)
        out = self.model.get_text_features(
            input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
        )
        return F.normalize(out.pooler_output, dim=-1)


class ClipScore(ImageScorer):
    """``multiplier * max(cos(image, prefix + prompt), 0)``: ``[B]``."""

    def __init__(
        self,
        encoder: ClipEncoder,
        *,
        multiplier: float = 100.0,
        prefix: str = "",
        info: ScorerInfo | None = None,
    ):
        super().__init__()
        self.encoder, self.multiplier, self.prefix = encoder, float(multiplier), prefix
        self.info = info or ScorerInfo(
            "clipscore",
            "CLIP ViT-L/14 (openai/clip-vit-large-patch14), torchmetrics' definition",
            "100 * max(cos, 0): about 20-35 on text-to-image generations",
        )
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: PathLike = None) -> ClipScore:
        """The tables' ClipScore: ViT-L/14, ``100 * max(cos, 0)``."""
        return cls(ClipEncoder.from_dir(locate("clip-vit-large-patch14", path)))

    @classmethod
    def hessel(cls, path: PathLike = None) -> ClipScore:
        """Hessel et al. (2021): ViT-B/32, ``"A photo depicts " + prompt``, ``2.5 * max(cos, 0)``."""
        info = ScorerInfo(
            "clipscore-hessel",
            "CLIP ViT-B/32 (openai/clip-vit-base-patch32), Hessel et al. 2021",
            '2.5 * max(cos, 0) with the prefix "A photo depicts ": about 0.5-1',
        )
        encoder = ClipEncoder.from_dir(locate("clip-vit-base-patch32", path))
        return cls(encoder, multiplier=2.5, prefix="A photo depicts ", info=info)

    def cosine(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """The raw cosine ``[B]`` (the Adjoint Matching authors' SD table reports this)."""
        text = self.encoder.text_features([self.prefix + p for p in prompts])
        return (self.encoder.image_features(images) * text).sum(-1)

    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return self.multiplier * self.cosine(images, prompts).clamp(min=0)


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
        return cls(
            ClipEncoder.from_dir(model_dir, locate("clip-vit-h-14-processor", tokenizer_path))
        )

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
        state = torch.load(file, map_location="cpu", weights_only=True)
        encoder = ClipEncoder.from_dir(locate("clip-vit-large-patch14", clip_path))
        # the predictor was trained on OpenAI CLIP's torchvision preprocessing
        encoder.preprocess = replace(encoder.preprocess, crop_offset="round")
        head = AestheticMLP(encoder.model.config.projection_dim)
        try:
            head.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{file} is not the LAION aesthetic predictor's MLP: {err}") from err
        return cls(encoder, head)

    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return self.head(self.encoder.image_features(images).to(self.head.layers[0].weight.dtype))
