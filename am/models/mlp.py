"""Small velocity networks and the fine-tuned-model wrappers."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

__all__ = ["TimeMLP", "ResidualVelocity", "finetunable_copy"]


class TimeMLP(nn.Module):
    """``(x [B, D], t [B]) -> [B, D]``: an MLP on ``[x, Fourier(t)]`` with SiLU activations.

    ``zero_init=True`` zeroes the last layer, so a residual built from it starts at the base.
    ``num_classes=C`` makes it class-conditional, ``(x, t, labels [B]) -> [B, D]``, with a
    learned embedding of width ``hidden`` added to the first layer's output; labels ``0..C-1``,
    and label ``C`` (the last row of the embedding) is the "no class" of classifier-free
    guidance.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 3,
        time_features: int = 4,
        zero_init: bool = False,
        num_classes: int | None = None,
    ):
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1 or time_features < 0:
            raise ValueError("TimeMLP needs dim, hidden, depth >= 1 and time_features >= 0")
        self.dim = dim
        self.register_buffer(
            "freqs", math.pi * torch.arange(1, time_features + 1, dtype=torch.float32)
        )
        layers, width = [], dim + 1 + 2 * time_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.embed = None if num_classes is None else nn.Embedding(num_classes + 1, hidden)
        if zero_init:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        t = t.to(x.dtype).reshape(-1, 1)
        ang = t * self.freqs.to(x.dtype)
        h = torch.cat([x, t, torch.sin(ang), torch.cos(ang)], dim=-1)
        if self.embed is None:
            if cond is not None:
                raise ValueError("this TimeMLP is unconditional (num_classes=None): got a cond")
            return self.net(h)
        if cond is None:
            raise ValueError(f"this TimeMLP is conditional ({self.num_classes} classes): no cond")
        h = self.net[0](h) + self.embed(cond)
        return self.net[1:](h)


class ResidualVelocity(nn.Module):
    """``v_ft(x, t) = v_base(x, t) + net(x, t)``: a fine-tuned model that starts at the base
    (``net`` zero-initialised) and keeps an exact base (e.g. a Gaussian mixture) inside.
    The base is stored frozen and is not part of ``parameters()``' trainable set."""

    def __init__(self, base: nn.Module, net: nn.Module):
        super().__init__()
        # a plain callable base (an exact velocity written as a function) has nothing to freeze
        self.base = base.requires_grad_(False) if isinstance(base, nn.Module) else base
        self.net = net

    def forward(self, x: Tensor, t: Tensor, *cond) -> Tensor:
        # ``*cond``: nothing for an unconditional pair, the condition for a conditional one
        return self.base(x, t, *cond) + self.net(x, t, *cond)

    def difference(self, x: Tensor, t: Tensor, *cond) -> Tensor:
        """``v_ft - v_base`` without evaluating the base (used by :mod:`am.control_variate`)."""
        return self.net(x, t, *cond)


HALF_DTYPES = (torch.bfloat16, torch.float16)


def finetunable_copy(base: nn.Module) -> nn.Module:
    """A trainable deep copy of a velocity network (the paper initialises ``v_ft = v_base``),
    in float32 when the base's weights are bfloat16/float16.

    Why float32: an AdamW step of lr 2e-5 on bfloat16 weights rounds away for most entries
    (one step changed 5.6 % of a tiny SD3 transformer's entries, against 99 % in float32).
    This is the convention of diffusers' training scripts: frozen weights in the half
    ``weight_dtype``, trainable ones in float32 (``examples/text_to_image/train_text_to_image.py``
    keeps the trained UNet in float32 and casts only the frozen VAE and text encoder;
    ``examples/dreambooth/train_dreambooth_lora_sd3.py`` calls
    ``cast_training_params(models, dtype=torch.float32)``), the forward in half precision by
    autocast (accelerate's ``prepare``; here the denoiser adapters, which keep the base's
    compute dtype)."""
    model = copy.deepcopy(base)
    if any(t.dtype in HALF_DTYPES for t in [*model.parameters(), *model.buffers()]):
        model.float()  # parameters and buffers (a half-precision base has no float64 ones)
    model.requires_grad_(True)
    return model
