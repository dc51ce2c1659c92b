"""Velocity-model adapters. Heavy adapters (diffusers pipelines, LoRA) import lazily."""

from am.models.mlp import ResidualVelocity, TimeMLP, finetunable_copy

__all__ = ["ResidualVelocity", "TimeMLP", "finetunable_copy"]
