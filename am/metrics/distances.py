"""Distances between two empirical sample sets, and the sampling-noise floor to read them by.

A distance between a method's samples and exact target samples is only meaningful next to
the distance between two independent target samples of the same size (:func:`noise_floor`):
a method cannot be told apart from the target below it. All computations run in float64 on
the inputs' device and return Python floats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor

__all__ = [
    "diversity",
    "wasserstein_1d",
    "sliced_wasserstein",
    "energy_distance",
    "sample_distance",
    "noise_floor",
    "noise_floor_pairs",
    "ratio_standard_error",
    "METRICS",
]

# Bound on entries of the [chunk, n + m] (sliced W1) or [chunk, m] (energy) intermediates.
_CHUNK_ELEMENTS = 2**22


def _as_2d(x: Tensor, name: str) -> Tensor:
    """``[n]`` or ``[n, D]`` -> float64 ``[n, D]``."""
    x = torch.as_tensor(x)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [n] or [n, D] tensor, got {tuple(x.shape)}")
    return x.to(torch.float64)


def _w1_sorted(xs: Tensor, ys: Tensor) -> Tensor:
    """Exact W1 between rows of sorted samples ``xs [P, n]``, ``ys [P, m]``: ``[P]``.

    ``W1 = int |F(z) - G(z)| dz``; both CDFs are step functions, constant between consecutive
    points of the merged sample, so the integral is an exact finite sum (any ``n``, ``m``).
    With ``n == m`` the monotone coupling is optimal and the sum is ``mean_i |xs_i - ys_i|``:
    the same number without the merge (a third of the sorts and no searches).
    """
    if xs.shape[-1] == ys.shape[-1]:
        return (xs - ys).abs().mean(-1)
    merged = torch.cat([xs, ys], dim=-1).sort(dim=-1).values  # [P, n + m]
    left = merged[..., :-1].contiguous()
    # Counts are int64; cast before dividing (int / int would give float32 and lose digits).
    cdf_x = torch.searchsorted(xs, left, right=True).to(merged.dtype) / xs.shape[-1]
    cdf_y = torch.searchsorted(ys, left, right=True).to(merged.dtype) / ys.shape[-1]
    return ((cdf_x - cdf_y).abs() * merged.diff(dim=-1)).sum(-1)


def wasserstein_1d(x: Tensor, y: Tensor) -> float:
    """Exact W1 between the empirical distributions of ``x [n]`` and ``y [m]``."""
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[1] != 1 or y.shape[1] != 1:
        raise ValueError(
            f"wasserstein_1d needs 1-D samples, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    return _w1_sorted(x.T.sort(-1).values, y.T.sort(-1).values).item()


def _random_directions(n: int, dim: int, generator: torch.Generator | None, device) -> Tensor:
    """``n`` uniform unit vectors in ``R^dim``: ``[n, dim]``."""
    g = torch.randn(n, dim, generator=generator, dtype=torch.float64, device=device)
    return g / g.norm(dim=1, keepdim=True)


def sliced_wasserstein(
    x: Tensor, y: Tensor, *, n_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Mean exact 1-D W1 of ``x [n, D]`` and ``y [m, D]`` projected on random unit directions.

    In 1-D every direction is ``+-1`` and W1 is sign-invariant, so this equals
    :func:`wasserstein_1d`.
    """
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    dirs = _random_directions(n_projections, x.shape[1], generator, x.device)
    per_chunk = max(1, _CHUNK_ELEMENTS // (x.shape[0] + y.shape[0]))
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for d in dirs.split(per_chunk):
        total = total + _w1_sorted((d @ x.T).sort(-1).values, (d @ y.T).sort(-1).values).sum()
    return (total / n_projections).item()


def _mean_pairwise_distance(a: Tensor, b: Tensor) -> Tensor:
    """``E |A - B|`` over all pairs of rows of ``a [n, D]``, ``b [m, D]``, in row chunks."""
    rows = max(1, _CHUNK_ELEMENTS // b.shape[0])
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for chunk in a.split(rows):
        # The matmul route of cdist loses digits to cancellation; distances near 0 matter here.
        total = total + torch.cdist(chunk, b, compute_mode="donot_use_mm_for_euclid_dist").sum()
    return total / (a.shape[0] * b.shape[0])


def _subsample(x: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    if x.shape[0] <= k:
        return x
    return x[torch.randperm(x.shape[0], generator=generator, device=x.device)[:k]]


def diversity(
    x: Tensor, *, max_samples: int = 2000, generator: torch.Generator | None = None
) -> float:
    """Mean pairwise Euclidean distance ``E |X - X'|`` of ``x [n, D]`` (distinct pairs; on a
    random subset of ``max_samples`` rows): the sample-space analogue of the DreamSim diversity
    the paper reports. For ``N(mu, s^2 I)`` in 1-D it is ``2 s / sqrt(pi)``."""
    x = _as_2d(x, "x").to(torch.float64)
    x = _subsample(x, max_samples, generator)
    n = x.shape[0]
    if n < 2:
        raise ValueError("diversity needs at least 2 samples")
    return float(_mean_pairwise_distance(x, x) * n / (n - 1))


def energy_distance(
    x: Tensor, y: Tensor, *, max_samples: int = 4000, generator: torch.Generator | None = None
) -> float:
    """``sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|)`` (V-statistic, diagonal included, clamped at 0),
    on at most ``max_samples`` random rows of each of ``x [n, D]``, ``y [m, D]``."""
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    x, y = _subsample(x, max_samples, generator), _subsample(y, max_samples, generator)
    e = (
        2 * _mean_pairwise_distance(x, y)
        - _mean_pairwise_distance(x, x)
        - _mean_pairwise_distance(y, y)
    )
    return e.clamp(min=0).sqrt().item()


def _w1_metric(x: Tensor, y: Tensor, generator: torch.Generator | None) -> float:
    return wasserstein_1d(x, y)


def _sliced_metric(x: Tensor, y: Tensor, generator: torch.Generator | None) -> float:
    return sliced_wasserstein(x, y, generator=generator)


def _energy_metric(x: Tensor, y: Tensor, generator: torch.Generator | None) -> float:
    return energy_distance(x, y, generator=generator)


METRICS: dict[str, Callable[[Tensor, Tensor, torch.Generator | None], float]] = {
    "w1": _w1_metric,
    "sliced_w1": _sliced_metric,
    "energy": _energy_metric,
}


def sample_distance(
    x: Tensor, y: Tensor, *, metric: str, generator: torch.Generator | None = None
) -> float:
    """Distance ``metric`` (a key of :data:`METRICS`; ``"w1"`` needs 1-D data) between
    samples ``x [n, D]`` and ``y [m, D]``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {sorted(METRICS)}")
    return METRICS[metric](x, y, generator)


class SampleFn(Protocol):
    """``sample_fn(n, generator=...) -> [n, D]``, e.g. :meth:`GaussianMixture.sample`."""

    def __call__(self, n: int, *, generator: torch.Generator | None = None) -> Tensor: ...


def noise_floor_pairs(
    sample_fn: SampleFn,
    n: int,
    *,
    metric: str,
    generator: torch.Generator | None = None,
    repeats: int = 3,
) -> list[float]:
    """Distances between ``repeats`` pairs of independent size-``n`` samples of ``sample_fn``
    (``[repeats]``, drawn in order: pair ``r`` takes the generator's draws after pair ``r - 1``).
    Their spread is what the floor's mean is uncertain by (:func:`ratio_standard_error`)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    out = []
    for _ in range(repeats):
        a = sample_fn(n, generator=generator)
        b = sample_fn(n, generator=generator)
        out.append(sample_distance(a, b, metric=metric, generator=generator))
    return out


def noise_floor(
    sample_fn: SampleFn,
    n: int,
    *,
    metric: str,
    generator: torch.Generator | None = None,
    repeats: int = 3,
) -> float:
    """Mean distance between two independent size-``n`` samples of ``sample_fn``, over
    ``repeats`` pairs: the smallest distance to the target a method can be judged by."""
    pairs = noise_floor_pairs(sample_fn, n, metric=metric, generator=generator, repeats=repeats)
    return sum(pairs) / len(pairs)


def ratio_standard_error(distances: Sequence[float], floors: Sequence[float]) -> float:
    """Standard error of ``mean(distances) / mean(floors)`` for two independent sets of pair
    distances (first-order delta method): ``r sqrt(s_d^2 / (n d^2) + s_f^2 / (m f^2))`` with
    ``d, f`` the means, ``s_d, s_f`` the sample standard deviations, ``n, m`` the counts. Why it
    matters: in 1-D the W1 of one pair is dominated by how many samples land in a light mode,
    and 5 pairs leave the floor itself uncertain by about 15 % (README, "How to read a ratio").
    ``nan`` with fewer than two of either."""
    d = torch.as_tensor(list(distances), dtype=torch.float64)
    f = torch.as_tensor(list(floors), dtype=torch.float64)
    if d.numel() < 2 or f.numel() < 2:
        return float("nan")
    dm, fm = d.mean(), f.mean()
    rel = d.var() / (d.numel() * dm**2) + f.var() / (f.numel() * fm**2)
    return float(dm / fm * rel.sqrt())
