"""Metrics: distances between sample sets and exact targets, with their noise floor."""

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

__all__ = [
    "METRICS",
    "energy_distance",
    "noise_floor",
    "noise_floor_pairs",
    "ratio_standard_error",
    "sample_distance",
    "sliced_wasserstein",
    "wasserstein_1d",
]
