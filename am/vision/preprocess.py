"""Torch preprocessing for image scorers: differentiable, batched, on the images' device.

The reference processors (``CLIPImageProcessor``, open_clip's transforms, DreamSim's) resize a
PIL image with bicubic filtering, centre-crop, scale to [0, 1] and normalise. Here the same
steps run on a float tensor, so the gradient reaches the images: ``F.interpolate`` with
``mode="bicubic", antialias=True`` (torch's antialiased bicubic follows PIL's filter), the crop
by slicing, and the normalisation by broadcasting. The difference from the PIL pipelines on
real photographs is measured in ``benchmarks/bench_image_metrics.py`` and stated in
``docs/image_metrics.md``: PIL rounds the resized image to 8 bits, torch does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Preprocess",
    "resize",
    "resize_shorter",
    "center_crop",
    "normalize",
]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_shorter(images: Tensor, size: int, mode: str = "bicubic") -> Tensor:
    """Resize ``images [B, C, H, W]`` so that the shorter side is ``size`` (aspect kept; the
    longer side is ``int(size * long / short)``, as torchvision's ``Resize(int)`` does)."""
    h, w = images.shape[-2:]
    if min(h, w) == size:
        return images
    if h <= w:
        new = (size, int(size * w / h))
    else:
        new = (int(size * h / w), size)
    return resize(images, new, mode)


def resize(images: Tensor, size: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """Resize ``images [B, C, H, W]`` to ``size = (H', W')`` with antialiasing (downscaling)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode=mode, antialias=True, align_corners=False)


CROP_OFFSETS = ("round", "floor")


def center_crop(images: Tensor, size: int, offset: str = "round") -> Tensor:
    """The central ``size x size`` window of ``images [B, C, H, W]`` (H, W >= size).

    When ``H - size`` is odd the window cannot be central: torchvision's ``CenterCrop`` (open_clip,
    DreamSim, ImageReward, OpenAI CLIP) rounds the offset half to even (``offset="round"``),
    transformers' image processors (PickScore, torchmetrics' ClipScore) floor it
    (``offset="floor"``), one pixel apart.
    """
    h, w = images.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w} images")
    if offset == "round":
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    elif offset == "floor":
        top, left = (h - size) // 2, (w - size) // 2
    else:
        raise ValueError(f"offset must be one of {CROP_OFFSETS}, got {offset!r}")
    return images[..., top : top + size, left : left + size]


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(images - mean) / std`` per channel; ``images [B, 3, H, W]``."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s


@dataclass(frozen=True)
class Preprocess:
    """One model's image pipeline: resize, optional centre crop, normalise.

    ``crop=True`` (CLIP, PickScore, HPS, aesthetic, ImageReward): resize the shorter side to
    ``size`` then crop ``size x size``. ``crop=False`` (DreamSim): resize to ``size x size``
    directly. ``clamp=True`` clips to [0, 1] first, as converting to an 8-bit image would.
    ``crop_offset``: see :func:`center_crop` ("floor" for transformers' processors).
    """

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    crop: bool = True
    clamp: bool = True
    crop_offset: str = "round"

    def __call__(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` in [0, 1] -> model input ``[B, 3, size, size]``."""
        x = images.clamp(0, 1) if self.clamp else images
        if self.crop:
            x = center_crop(resize_shorter(x, self.size), self.size, self.crop_offset)
        else:
            x = resize(x, (self.size, self.size))
        return normalize(x, self.mean, self.std)
