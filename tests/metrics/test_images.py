"""Embedding metrics against hand computations, closed forms and scipy's sqrtm."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from am.metrics.images import (
    Diversity,
    Realism,
    classwise_frechet,
    frechet_distance,
    gaussian_frechet_distance,
    grouped_diversity,
    mean_pairwise_distance,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_psd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=gen(seed), dtype=F64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=F64)


def scipy_frechet(mu1, cov1, mu2, cov2) -> float:
    """The reference FID computation: tr sqrtm(cov1 @ cov2) via scipy, in float64 numpy."""
    mu1, cov1, mu2, cov2 = (np.asarray(t, dtype=np.float64) for t in (mu1, cov1, mu2, cov2))
    covmean = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def test_mean_pairwise_distance_matches_double_loop():
    x = torch.randn(7, 3, generator=gen(0), dtype=F64)
    dists = [
        math.sqrt(sum((x[i, k].item() - x[j, k].item()) ** 2 for k in range(3)))
        for i, j in itertools.combinations(range(7), 2)
    ]
    assert len(dists) == 21
    assert mean_pairwise_distance(x).item() == pytest.approx(sum(dists) / 21, rel=1e-12)
    with pytest.raises(ValueError, match="N >= 2"):
        mean_pairwise_distance(x[:1])


def test_diversity_hand_made_groups():
    # Group 0: 3-4-5 right triangle (distances 3, 4, 5 -> mean 4); group 1: distance 2;
    # group 5: a singleton, skipped. Labels interleaved to check grouping, not order.
    features = torch.tensor(
        [[0.0, 0.0], [10.0, 10.0], [3.0, 0.0], [7.0, 7.0], [12.0, 10.0], [0.0, 4.0]]
    )
    groups = torch.tensor([0, 1, 0, 5, 1, 0])
    result = grouped_diversity(features, groups)
    assert isinstance(result, Diversity)
    torch.testing.assert_close(result.per_group, torch.tensor([4.0, 2.0], dtype=F64))
    assert result.mean == pytest.approx(3.0)
    # std([4, 2], ddof=1) = sqrt(2); / sqrt(2 groups) = 1.
    assert result.stderr == pytest.approx(1.0)


def test_cosine_distance_is_the_authors_dreamsim_formula():
    # The paper's authors: per prompt, sum_{i != j} |e_i - e_j|^2 / (2 n (n - 1)) over
    # L2-normalised embeddings; here the mean over pairs of 1 - cos.
    x = torch.randn(5, 4, generator=gen(1), dtype=F64)
    e = x / x.norm(dim=1, keepdim=True)
    n = 5
    authors = sum(
        (e[i] - e[j]).square().sum().item() for i in range(n) for j in range(n) if i != j
    ) / (2 * n * (n - 1))
    assert mean_pairwise_distance(x, "cosine").item() == pytest.approx(authors, rel=1e-12)
    # 1 - cos of orthogonal and of opposite vectors, grouped
    y = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [-1.0, 0.0]])
    result = grouped_diversity(y, torch.tensor([0, 0, 1, 1]), distance="cosine")
    torch.testing.assert_close(result.per_group, torch.tensor([1.0, 2.0], dtype=F64))
    assert result.stderr == pytest.approx(0.5)  # std([1, 2], ddof=1) / sqrt(2)
    with pytest.raises(ValueError, match="distance must be one of"):
        mean_pairwise_distance(x, "manhattan")


def test_diversity_single_group_and_errors():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [9.0, 9.0]])
    single = grouped_diversity(x, torch.tensor([2, 2, 7]))
    assert single.mean == pytest.approx(5.0)
    assert single.stderr == 0.0
    with pytest.raises(ValueError, match="2 or more members"):
        grouped_diversity(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer labels"):
        grouped_diversity(x, torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="integer labels"):
        grouped_diversity(x, torch.tensor([0, 0]))


def test_gaussian_frechet_diagonal_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([0.5, -1.0, 0.0])
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    got = gaussian_frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got.dtype == F64
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gaussian_frechet_full_covariances_match_scipy():
    d = 5
    cov1, cov2 = random_psd(d, 1), random_psd(d, 2)
    assert not torch.allclose(cov1 @ cov2, cov2 @ cov1)  # non-commuting
    mu1 = torch.randn(d, generator=gen(3), dtype=F64)
    mu2 = torch.randn(d, generator=gen(4), dtype=F64)
    got = gaussian_frechet_distance(mu1, cov1, mu2, cov2).item()
    assert got == pytest.approx(scipy_frechet(mu1, cov1, mu2, cov2), rel=1e-9)
    swapped = gaussian_frechet_distance(mu2, cov2, mu1, cov1).item()
    assert swapped == pytest.approx(got, rel=1e-10)
    assert gaussian_frechet_distance(mu1, cov1, mu1, cov1).item() == pytest.approx(0.0, abs=1e-10)


def test_gaussian_frechet_rejects_bad_shapes():
    with pytest.raises(ValueError, match="mu \\[D\\]"):
        gaussian_frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="cov \\[D, D\\]"):
        gaussian_frechet_distance(torch.zeros(3), torch.eye(2), torch.zeros(3), torch.eye(3))


def test_frechet_distance_converges_to_closed_form():
    n, d = 200_000, 3
    mu1, mu2 = torch.zeros(d, dtype=F64), torch.tensor([1.0, -0.5, 0.5], dtype=F64)
    cov1, cov2 = random_psd(d, 5), random_psd(d, 6)
    x = mu1 + torch.randn(n, d, generator=gen(7), dtype=F64) @ torch.linalg.cholesky(cov1).T
    y = mu2 + torch.randn(n, d, generator=gen(8), dtype=F64) @ torch.linalg.cholesky(cov2).T
    expected = scipy_frechet(mu1, cov1, mu2, cov2)
    got = frechet_distance(x, y)
    # The error is O(1/sqrt(n)): the term linear in the sample means, 2 (mu1 - mu2) . (dmu1 -
    # dmu2), has std 2 sqrt((mu1-mu2)^T (cov1 + cov2) (mu1-mu2) / n) = 0.013 here, and with the
    # covariance terms the error over 20 reseeded runs had std 0.027 (0.3% of the value 8.59)
    # and mean ~0.001 (the O(d/n) bias). rel=2e-2 (0.17) is ~6 standard deviations, yet far
    # below the O(1) change of a wrong formula (e.g. a missing sqrt or factor 2 in the cross term).
    assert got.item() == pytest.approx(expected, rel=2e-2)
    # It is exactly the Gaussian formula on the samples' own moments (ddof=1, as FID).
    own = gaussian_frechet_distance(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T))
    assert got.item() == own.item()


def test_frechet_distance_rejects_bad_shapes():
    x = torch.randn(10, 3, generator=gen(9))
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(x, x[:, :2])
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(x[:1], x)


def test_classwise_frechet_matches_per_class_by_hand():
    g = gen(10)
    generated = torch.randn(30, 2, generator=g, dtype=F64)
    real = torch.randn(40, 2, generator=g, dtype=F64) + 0.3
    gen_groups = torch.tensor([3, 1] * 15)
    real_groups = torch.tensor([1, 3, 4, 3] * 10)  # class 4 has no generations: ignored
    result = classwise_frechet(generated, gen_groups, real, real_groups)
    assert isinstance(result, Realism)
    by_hand = torch.stack(
        [frechet_distance(generated[gen_groups == c], real[real_groups == c]) for c in (1, 3)]
    )
    torch.testing.assert_close(result.per_group, by_hand, rtol=0, atol=0)
    assert result.mean == pytest.approx(by_hand.mean().item())
    spread = abs(by_hand[0] - by_hand[1]).item()  # std(ddof=1) of two values = |a - b| / sqrt 2
    assert result.stderr == pytest.approx(spread / 2)


def test_classwise_frechet_names_missing_or_small_groups():
    x = torch.randn(6, 2, generator=gen(11))
    with pytest.raises(ValueError, match="group 2 has no real features"):
        classwise_frechet(x, torch.tensor([0, 0, 0, 2, 2, 2]), x, torch.tensor([0] * 6))
    with pytest.raises(ValueError, match="group 1 needs >= 2"):
        classwise_frechet(x, torch.tensor([0, 0, 0, 0, 0, 1]), x, torch.tensor([0, 1] * 3))
