"""The one registry of fine-tuning methods (name -> class)."""

from __future__ import annotations

from am.methods import AdjointMatching, FineTuningProblem, Method

METHODS: dict[str, type[Method]] = {
    "adjoint_matching": AdjointMatching,
}


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


def make_method(name: str, config, problem: FineTuningProblem) -> Method:
    """Instantiate a registered method; ``config`` must be its ``config_class``."""
    return method_class(name)(config, problem)
