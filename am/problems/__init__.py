"""Problems with closed-form ground truth: Gaussian-mixture bases and their exact velocity."""

from am.problems.gaussian_mixture import GaussianMixture, GaussianMixtureVelocity

__all__ = ["GaussianMixture", "GaussianMixtureVelocity"]
