"""Sample-set metrics on feature embeddings (digit-classifier features, DreamSim embeddings).

* Diversity (:func:`grouped_diversity`): DreamSim diversity as in the Adjoint Matching paper's
  evaluation. Per prompt (group label), the mean pairwise Euclidean distance of the embeddings
  of its generations (:func:`mean_pairwise_distance`), averaged over prompts with the standard
  error over prompts. It detects the mode collapse reward fine-tuning tends to cause.
* Realism (:func:`classwise_frechet`): the Frechet distance (the FID formula,
  :func:`frechet_distance`) between the Gaussian fits of generated and real features, computed
  per class so that a model cannot score well by matching the pooled distribution with the
  wrong class balance; averaged over classes, with the standard error over classes.

All computations run in float64 on the inputs' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Diversity",
    "Realism",
    "mean_pairwise_distance",
    "grouped_diversity",
    "gaussian_frechet_distance",
    "frechet_distance",
    "classwise_frechet",
]


@dataclass(frozen=True)
class Diversity:
    """Mean pairwise distance averaged over groups; ``per_group`` is ``[G]`` in sorted order."""

    mean: float
    stderr: float
    per_group: Tensor


@dataclass(frozen=True)
class Realism:
    """Frechet distance averaged over groups; ``per_group`` is ``[G]`` in sorted order."""

    mean: float
    stderr: float
    per_group: Tensor


def _features(x: Tensor, name: str, min_rows: int = 2) -> Tensor:
    """Check ``x`` is ``[N, D]`` with ``N >= min_rows``; return it as float64."""
    if x.dim() != 2 or x.shape[0] < min_rows:
        raise ValueError(f"{name} must be [N, D] with N >= {min_rows}, got {tuple(x.shape)}")
    return x.to(torch.float64)


def _groups(groups: Tensor, n: int, name: str) -> Tensor:
    """Check ``groups`` is an integer ``[n]`` label tensor."""
    if groups.shape != (n,) or groups.is_floating_point() or groups.is_complex():
        raise ValueError(f"{name} must be integer labels [{n}], got {tuple(groups.shape)}")
    return groups


def _mean_stderr(values: Tensor) -> tuple[float, float]:
    """Mean over ``values [G]`` and its standard error (std with ddof=1 / sqrt(G); 0 if G=1)."""
    g = values.numel()
    stderr = values.std(correction=1).item() / math.sqrt(g) if g > 1 else 0.0
    return values.mean().item(), stderr


DISTANCES = ("euclidean", "cosine")


def mean_pairwise_distance(features: Tensor, distance: str = "euclidean") -> Tensor:
    """Mean distance over the ``N(N-1)/2`` pairs of ``features [N, D]`` (N >= 2): a float64
    scalar tensor. ``distance="euclidean"``: ``|e_i - e_j|``; ``"cosine"``: ``1 - cos(e_i, e_j)``
    (DreamSim's distance; for unit vectors it is ``|e_i - e_j|^2 / 2``)."""
    x = _features(features, "features")
    if distance == "euclidean":
        return torch.pdist(x).mean()
    if distance == "cosine":
        unit = torch.nn.functional.normalize(x, dim=1)
        i, j = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
        return (1 - (unit[i] * unit[j]).sum(1)).mean()
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def grouped_diversity(features: Tensor, groups: Tensor, distance: str = "euclidean") -> Diversity:
    """Per-group :func:`mean_pairwise_distance` of ``features [N, D]`` grouped by
    ``groups [N]``, averaged over groups with the standard error over groups.

    Groups with a single member are skipped; raises ValueError if no group has 2 members.
    """
    x = _features(features, "features", min_rows=1)
    labels = _groups(groups, x.shape[0], "groups")
    kept = [g for g, count in zip(*labels.unique(return_counts=True), strict=True) if count >= 2]
    values = [mean_pairwise_distance(x[labels == g], distance) for g in kept]
    if not values:
        raise ValueError("diversity needs at least one group with 2 or more members")
    per_group = torch.stack(values)
    mean, stderr = _mean_stderr(per_group)
    return Diversity(mean=mean, stderr=stderr, per_group=per_group)


def _sqrtm_psd(m: Tensor) -> Tensor:
    """Square root ``[D, D]`` of a symmetric PSD ``m [D, D]`` (tiny negative eigenvalues -> 0)."""
    evals, evecs = torch.linalg.eigh((m + m.T) / 2)
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def gaussian_frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> Tensor:
    """Squared Frechet (2-Wasserstein) distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)``.

    ``|mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1^{1/2} cov2 cov1^{1/2})^{1/2})`` -- the FID
    formula; it is the square of the W2 distance. ``mu [D]``, ``cov [D, D]`` symmetric PSD.
    Matrix square roots via ``torch.linalg.eigh``. Returns a float64 scalar tensor.
    """
    mu1, mu2, cov1, cov2 = (t.to(torch.float64) for t in (mu1, mu2, cov1, cov2))
    d = mu1.shape[0] if mu1.dim() == 1 else -1
    if d < 0 or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        shapes = [tuple(t.shape) for t in (mu1, cov1, mu2, cov2)]
        raise ValueError(f"expected mu [D] and cov [D, D], got mu1, cov1, mu2, cov2 {shapes}")
    sqrt1 = _sqrtm_psd(cov1)
    cross = _sqrtm_psd(sqrt1 @ cov2 @ sqrt1).trace()
    return (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross


def frechet_distance(x: Tensor, y: Tensor) -> Tensor:
    """FID-style distance between ``x [N, D]`` and ``y [M, D]``: the Gaussian Frechet distance
    between their sample means and sample covariances (ddof=1). Returns a float64 scalar."""
    x, y = _features(x, "x"), _features(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same D, got {x.shape[1]} and {y.shape[1]}")
    return gaussian_frechet_distance(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T))


def classwise_frechet(
    generated: Tensor, generated_groups: Tensor, real: Tensor, real_groups: Tensor
) -> Realism:
    """Per-group :func:`frechet_distance` between generated ``[N, D]`` and real ``[M, D]``
    features, for every group in ``generated_groups [N]`` (matched by ``real_groups [M]``).

    Raises ValueError naming the group if it has fewer than 2 generated or real features.
    """
    gen, ref = _features(generated, "generated", 1), _features(real, "real", 1)
    gen_labels = _groups(generated_groups, gen.shape[0], "generated_groups")
    ref_labels = _groups(real_groups, ref.shape[0], "real_groups")
    values = []
    for g in gen_labels.unique():
        xg, yg = gen[gen_labels == g], ref[ref_labels == g]
        if yg.shape[0] == 0:
            raise ValueError(f"group {g.item()} has no real features")
        if xg.shape[0] < 2 or yg.shape[0] < 2:
            got = f"{xg.shape[0]} generated, {yg.shape[0]} real"
            raise ValueError(f"group {g.item()} needs >= 2 generated and real features: {got}")
        values.append(frechet_distance(xg, yg))
    per_group = torch.stack(values)
    mean, stderr = _mean_stderr(per_group)
    return Realism(mean=mean, stderr=stderr, per_group=per_group)
