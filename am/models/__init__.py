"""Velocity models: a time-conditioned MLP (optionally class-conditional), a residual wrapper
that fine-tunes a frozen base, and classifier-free guidance. ``am.models.unet`` wraps a diffusers
``UNet2DModel`` (imported only when used); adapters for text-to-image pipelines (Stable
Diffusion, SD3, Flux) and LoRA are not written yet.
"""

from am.models.guidance import GuidedVelocity
from am.models.mlp import ResidualVelocity, TimeMLP, finetunable_copy

__all__ = ["GuidedVelocity", "ResidualVelocity", "TimeMLP", "finetunable_copy"]
