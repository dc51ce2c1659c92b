"""The one registry of fine-tuning methods (name -> class).

The workflow's method names are these keys: registering a class here is all it takes for a new
method to run in the Snakemake grid and appear in the tables (README, "Add a baseline").
"""

from __future__ import annotations

from am.api import finetune as am_finetune
from am.methods import AdjointMatching, FineTuningProblem, Method
from baselines.am_constant_sigma import AdjointMatchingConstantSigma
from baselines.basic_adjoint_matching import BasicAdjointMatching
from baselines.discrete_adjoint import DiscreteAdjoint
from baselines.dpo import OnlineDPO
from baselines.draft import DRaFT
from baselines.draft_lv import DRaFTLV
from baselines.grpo import FlowGRPO
from baselines.refl import ReFL

METHODS: dict[str, type[Method]] = {
    "adjoint_matching": AdjointMatching,
    "basic_adjoint_matching": BasicAdjointMatching,
    "am_constant_sigma": AdjointMatchingConstantSigma,
    "discrete_adjoint": DiscreteAdjoint,
    "draft": DRaFT,
    "draft_lv": DRaFTLV,
    "refl": ReFL,
    "dpo": OnlineDPO,
    "grpo": FlowGRPO,
}


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


def make_method(name: str, config, problem: FineTuningProblem) -> Method:
    """Instantiate a registered method; ``config`` must be its ``config_class``."""
    return method_class(name)(config, problem)


def finetune(base, reward, *, method: str = "adjoint_matching", config=None, **kwargs):
    """:func:`am.finetune` with the method picked by its registry name, e.g.
    ``finetune(base, reward, method="draft", config={"grad_steps": 40}, schedule=...,
    sample_shape=(2,), reward_scale=1.0)``; ``config``: that method's config instance, a dict
    of its fields, or ``None`` for its recommended config. Returns :class:`am.FineTuneResult`."""
    return am_finetune(base, reward, method=method_class(method), config=config, **kwargs)
