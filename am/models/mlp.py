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
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 3,
        time_features: int = 4,
        zero_init: bool = False,
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
        if zero_init:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.to(x.dtype).reshape(-1, 1)
        ang = t * self.freqs.to(x.dtype)
        return self.net(torch.cat([x, t, torch.sin(ang), torch.cos(ang)], dim=-1))


class ResidualVelocity(nn.Module):
    """``v_ft(x, t) = v_base(x, t) + net(x, t)``: a fine-tuned model that starts at the base
    (``net`` zero-initialised) and keeps an exact base (e.g. a Gaussian mixture) inside.
    The base is stored frozen and is not part of ``parameters()``' trainable set."""

    def __init__(self, base: nn.Module, net: nn.Module):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.net = net

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.base(x, t) + self.net(x, t)

    def difference(self, x: Tensor, t: Tensor) -> Tensor:
        """``v_ft - v_base`` without evaluating the base (used by :mod:`am.control_variate`)."""
        return self.net(x, t)


def finetunable_copy(base: nn.Module) -> nn.Module:
    """A trainable deep copy of a velocity network (the paper initialises ``v_ft = v_base``)."""
    model = copy.deepcopy(base)
    model.requires_grad_(True)
    return model
