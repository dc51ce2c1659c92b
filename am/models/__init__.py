"""Velocity models: a time-conditioned MLP (optionally class-conditional), a residual wrapper
that fine-tunes a frozen base, and classifier-free guidance.

Only small networks live here for now; adapters for diffusers pipelines (UNets, transformers,
LoRA) are not written yet.
"""

from am.models.guidance import GuidedVelocity
from am.models.mlp import ResidualVelocity, TimeMLP, finetunable_copy

__all__ = ["GuidedVelocity", "ResidualVelocity", "TimeMLP", "finetunable_copy"]
