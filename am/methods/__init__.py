"""Fine-tuning methods: a method turns rollouts of the current model into a loss.

Only Adjoint Matching lives in the library; baselines live in ``baselines/`` and register
there, next to it, in one dict.
"""

from am.methods.adjoint_matching import AdjointMatching, AdjointMatchingConfig
from am.methods.base import FineTuningProblem, LossOutput, Method

__all__ = ["AdjointMatching", "AdjointMatchingConfig", "FineTuningProblem", "LossOutput", "Method"]
