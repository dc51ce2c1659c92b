"""Torch preprocessing for image scorers: differentiable, batched, on the images' device.

Each scorer's reference fits an image of any aspect ratio into the model's square input in one
of three ways (:data:`FITS`):

* ``"crop"``: shorter side to ``size``, centre crop (``CLIPImageProcessor`` for PickScore and
  ClipScore, OpenAI CLIP's and BLIP's torchvision transforms for ImageReward and the aesthetic
  predictor); these resize a PIL image, so the resized image is rounded to 8 bits there.
* ``"pad"``: longer side to ``size``, zero padding to a square (hpsv2's ``ResizeMaxSize``,
  which HPS v2 / v2.1 scoring uses); hpsv2 resizes the float tensor, so this one is exact.
* ``"stretch"``: straight to ``size x size`` (DreamSim).

Here every step runs on a float tensor, so the gradient reaches the images: ``F.interpolate``
with ``mode="bicubic", antialias=True`` (torch's antialiased bicubic follows PIL's filter, and
is what torchvision's tensor resize calls), the crop by slicing, the pad with ``F.pad``, the
normalisation by broadcasting. The difference from the PIL pipelines on real photographs is
stated in ``docs/image_metrics.md``: PIL rounds the resized image to 8 bits, torch does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from am.fields import FieldError

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Preprocess",
    "resize",
    "FITS",
    "resize_shorter",
    "letterbox",
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


def letterbox(images: Tensor, size: int, fill: float = 0.0) -> Tensor:
    """hpsv2's ``ResizeMaxSize(size)`` on ``images [B, C, H, W]`` -> ``[B, C, size, size]``:
    scale ``size / max(H, W)``, each side ``round(side * scale)`` (Python's half-to-even, as
    there), bicubic, then pad with ``fill`` (``pad // 2`` before, the rest after). An image
    whose longer side is already ``size`` is padded without resizing (hpsv2 returns it
    unpadded, which its model then cannot take: the padding is what its transform means)."""
    h, w = images.shape[-2:]
    scale = size / float(max(h, w))
    if scale == 1.0:
        new_h, new_w, x = h, w, images
    else:
        new_h, new_w = round(h * scale), round(w * scale)
        x = F.interpolate(images, size=(new_h, new_w), mode="bicubic", antialias=True)
    pad_h, pad_w = size - new_h, size - new_w
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill)


CROP_OFFSETS = ("round", "floor")
FITS = ("crop", "pad", "stretch")


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
    """One model's image pipeline: fit to ``size x size`` (``fit``, see :data:`FITS` and the
    module docstring), then normalise with ``mean`` / ``std``.

    ``fit="crop"``: shorter side to ``size``, crop with ``crop_offset`` (:func:`center_crop`:
    "floor" for transformers' processors, "round" for torchvision's). ``fit="pad"``:
    :func:`letterbox` with black (0 before normalisation). ``fit="stretch"``: resize to
    ``size x size``. ``clamp=True`` clips to [0, 1] first, as converting to an 8-bit image would.
    """

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    fit: str = "crop"
    clamp: bool = True
    crop_offset: str = "round"

    def __post_init__(self):
        if self.fit not in FITS:
            raise FieldError("fit", f"fit must be one of {FITS}, got {self.fit!r}")

    def __call__(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` in [0, 1] -> model input ``[B, 3, size, size]``."""
        x = images.clamp(0, 1) if self.clamp else images
        if self.fit == "crop":
            x = center_crop(resize_shorter(x, self.size), self.size, self.crop_offset)
        elif self.fit == "pad":
            x = letterbox(x, self.size)
        else:
            x = resize(x, (self.size, self.size))
        return normalize(x, self.mean, self.std)
