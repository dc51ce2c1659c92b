"""A diffusers ``UNet2DModel`` as a velocity model (diffusers is imported only when used).

    velocity(x [B, C, H, W], t [B], labels [B] | None) = unet(x, time_scale * t, labels).sample

``t`` is this library's time (0 = noise, 1 = data); the UNet's sinusoidal timestep embedding
sees ``time_scale * t`` (default 1000, the range its embedding is designed for). The
network is trained here in this convention (:mod:`am.problems.digits_pretrain`); a checkpoint
trained as a DDPM noise predictor would need its own adapter (a schedule conversion), which
this class does not do.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

__all__ = ["UNetVelocity", "digits_unet", "load_unet"]


def _diffusers():
    try:
        import diffusers
    except ImportError as e:
        raise ImportError(
            "UNetVelocity needs diffusers: pip install -e '.[digits]' (or '.[images]')"
        ) from e
    return diffusers


class UNetVelocity(nn.Module):
    """A (class-conditional) ``diffusers.UNet2DModel`` called as ``(x, t, labels)``."""

    def __init__(self, unet: nn.Module, time_scale: float = 1000.0):
        super().__init__()
        self.unet = unet
        self.time_scale = float(time_scale)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        t = (self.time_scale * t).to(x.dtype).expand(x.shape[0])
        return self.unet(x, t, class_labels=labels).sample


def digits_unet(channels: tuple[int, int] = (16, 32), num_classes: int = 10) -> nn.Module:
    """The digits benchmark's base network: a two-level ``UNet2DModel`` for ``[B, 1, 8, 8]``
    with ``num_classes + 1`` class embeddings (the last is the "no class" of classifier-free
    guidance) and no attention in the down/up blocks (one in the 4x4 middle block)."""
    d = _diffusers()
    return d.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=tuple(channels),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
        num_class_embeds=num_classes + 1,
    )


def load_unet(path: str | Path) -> nn.Module:
    """``UNet2DModel.from_pretrained(path)`` (a folder with ``config.json`` and
    ``diffusion_pytorch_model.safetensors``, as ``save_pretrained`` writes), with an error that
    names the folder and the files looked for when they are missing."""
    path = Path(path)
    needed = [path / "config.json", path / "diffusion_pytorch_model.safetensors"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"UNet2DModel weights not found: looked for {', '.join(missing)} "
            f"(write them with unet.save_pretrained({str(path)!r}))"
        )
    # low_cpu_mem_usage=False: the default asks for accelerate, which a CPU install lacks
    return _diffusers().UNet2DModel.from_pretrained(path, low_cpu_mem_usage=False)
