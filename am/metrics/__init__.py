"""Metrics: distances between sample sets and exact targets, with their noise floor, and an
importance-sampling reference for tilted targets without a closed form."""

from am.metrics.distances import (
    METRICS,
    energy_distance,
    noise_floor,
    noise_floor_pairs,
    ratio_standard_error,
    sample_distance,
    sliced_wasserstein,
    wasserstein_1d,
)
from am.metrics.images import (
    Diversity,
    Realism,
    classwise_frechet,
    frechet_distance,
    gaussian_frechet_distance,
    grouped_diversity,
    mean_pairwise_distance,
)
from am.metrics.importance import (
    TiltedEstimate,
    classwise_tilted_expectation,
    tilted_expectation,
)

__all__ = [
    "Diversity",
    "Realism",
    "classwise_frechet",
    "frechet_distance",
    "gaussian_frechet_distance",
    "grouped_diversity",
    "mean_pairwise_distance",
    "TiltedEstimate",
    "classwise_tilted_expectation",
    "tilted_expectation",
    "METRICS",
    "energy_distance",
    "noise_floor",
    "noise_floor_pairs",
    "ratio_standard_error",
    "sample_distance",
    "sliced_wasserstein",
    "wasserstein_1d",
]
