"""Velocity models: a time-conditioned MLP and a residual wrapper that fine-tunes a frozen base.

Only small networks live here for now; adapters for diffusers pipelines (UNets, transformers,
LoRA) are not written yet.
"""

from am.models.mlp import ResidualVelocity, TimeMLP, finetunable_copy

__all__ = ["ResidualVelocity", "TimeMLP", "finetunable_copy"]
