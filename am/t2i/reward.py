"""Rewards on latents: decode with the pipeline's VAE, score the image against its prompt.

``reward(z [B, C, h, w], cond) = scorer(decode(z) [B, 3, H, W] in [0, 1], prompts[cond["prompt_index"]])``
with ``decode(z) = (vae.decode(z / scaling_factor + shift_factor) + 1) / 2``, differentiable
through the decoder (the terminal adjoint ``lambda grad r`` needs it). The VAE is frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["LatentDecoder", "DecodedReward"]


class LatentDecoder(nn.Module):
    """``z [B, C, h, w] -> images [B, 3, H, W]`` in [0, 1] (not clipped: the scorers clip)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)

    def forward(self, z: Tensor) -> Tensor:
        latents = z / self.scaling_factor + self.shift_factor
        images = self.vae.decode(latents.to(self.vae.dtype)).sample
        # the scorer's input in float32 whatever the VAE's dtype (at least z's precision)
        return (images.to(torch.promote_types(z.dtype, torch.float32)) + 1) / 2


class DecodedReward(nn.Module):
    """An image scorer ``(images, prompts) -> [B]`` as a reward on latents and prompt
    conditions; ``prompts``: the prompt sampler's list (``cond["prompt_index"]`` rows)."""

    def __init__(self, decoder: LatentDecoder, scorer: Callable, prompts: Sequence[str]):
        super().__init__()
        self.decoder, self.scorer, self.prompts = decoder, scorer, list(prompts)

    def forward(self, z: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        texts = [self.prompts[i] for i in cond["prompt_index"].tolist()]
        return self.scorer(self.decoder(z), texts)
