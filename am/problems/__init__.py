"""Problems with closed-form ground truth: Gaussian-mixture bases, their exact velocity, and the
named problems (base, reward, exact tilted target) of :data:`PROBLEMS`."""

from am.problems.benchmarks import PROBLEMS, GroundTruth, TargetDistance, make_problem
from am.problems.conditional import ConditionalGroundTruth, PerClass, make_conditional_problem
from am.problems.gaussian_mixture import GaussianMixture, GaussianMixtureVelocity

__all__ = [
    "ConditionalGroundTruth",
    "PerClass",
    "make_conditional_problem",
    "PROBLEMS",
    "GaussianMixture",
    "GaussianMixtureVelocity",
    "GroundTruth",
    "TargetDistance",
    "make_problem",
]
