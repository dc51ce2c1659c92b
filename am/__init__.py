"""Adjoint Matching: reward fine-tuning of flow-matching and diffusion models.

Time runs from noise (t = 0, ``N(0, I)``) to data (t = 1); the reference path is
``X_t = beta_t X_0 + alpha_t X_1``. See the README for the symbol table.
"""

from am.api import FineTuneResult, finetune
from am.diffusion import ConstantDiffusion, MemorylessDiffusion, make_diffusion
from am.loss import StepSubset
from am.methods import AdjointMatching, AdjointMatchingConfig
from am.schedules import (
    CosineSchedule,
    DiscreteVPSchedule,
    FlowMatchingSchedule,
    LinearVPSchedule,
    make_schedule,
)
from am.sde import DDPMStep, EulerMaruyama, Trajectory, sample, simulate, uniform_grid
from am.train import TrainConfig, load_weights

__all__ = [
    "AdjointMatching",
    "AdjointMatchingConfig",
    "FineTuneResult",
    "StepSubset",
    "TrainConfig",
    "finetune",
    "ConstantDiffusion",
    "CosineSchedule",
    "DDPMStep",
    "DiscreteVPSchedule",
    "EulerMaruyama",
    "FlowMatchingSchedule",
    "LinearVPSchedule",
    "MemorylessDiffusion",
    "Trajectory",
    "load_weights",
    "make_diffusion",
    "make_schedule",
    "sample",
    "simulate",
    "uniform_grid",
]
