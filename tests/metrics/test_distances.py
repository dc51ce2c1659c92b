"""Sample distances against exact values and scipy's implementations."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from am.metrics import (
    METRICS,
    energy_distance,
    noise_floor,
    noise_floor_pairs,
    ratio_standard_error,
    sample_distance,
    sliced_wasserstein,
    wasserstein_1d,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_w1_point_masses_and_shift():
    assert wasserstein_1d(torch.tensor([1.5]), torch.tensor([-2.0])) == pytest.approx(3.5)
    x = torch.randn(1000, generator=gen(0), dtype=F64)
    assert wasserstein_1d(x, x + 0.7) == pytest.approx(0.7, abs=1e-12)
    assert wasserstein_1d(x, x[torch.randperm(1000)]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("n", "m"), [(137, 59), (1, 40), (500, 501), (64, 64), (1, 1), (2000, 2000)]
)
def test_w1_any_sizes_matches_scipy(n, m):
    g = gen(n * m)
    x = torch.randn(n, generator=g, dtype=F64)
    y = 0.5 + 2 * torch.rand(m, generator=g, dtype=F64)
    y[: m // 3] = torch.round(y[: m // 3])  # ties inside y and possibly across the sets
    ref = scipy.stats.wasserstein_distance(x.numpy(), y.numpy())
    assert wasserstein_1d(x, y) == pytest.approx(ref, rel=1e-12, abs=1e-14)
    assert wasserstein_1d(x[:, None], y[:, None]) == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_sliced_equals_w1_in_one_dimension():
    g = gen(1)
    x, y = torch.randn(300, 1, generator=g), 1 + 0.5 * torch.randn(170, 1, generator=g)
    assert sliced_wasserstein(x, y, n_projections=16, generator=g) == pytest.approx(
        wasserstein_1d(x[:, 0], y[:, 0]), rel=1e-12
    )


def test_sliced_of_shift_is_mean_projected_shift():
    """Every projection of ``x`` vs ``x + s`` is a shift by ``u.s``; in 2-D ``E|u.s| = 2|s|/pi``."""
    x = torch.randn(400, 2, generator=gen(2), dtype=F64)
    s = torch.tensor([0.6, -0.8], dtype=F64)  # |s| = 1
    value = sliced_wasserstein(x, x + s, n_projections=4096, generator=gen(3))
    assert value == pytest.approx(2 / math.pi, abs=0.02)


def test_energy_distance():
    x = torch.randn(800, 3, generator=gen(4), dtype=F64)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-7)
    shift = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    values = [energy_distance(x, x + a * shift) for a in (0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values


def test_energy_distance_matches_scipy_in_1d():
    """In 1-D scipy's energy distance ``sqrt(2 int (F - G)^2)`` equals the V-statistic form."""
    g = gen(5)
    x, y = torch.randn(313, generator=g, dtype=F64), 0.3 + torch.randn(177, generator=g, dtype=F64)
    ref = scipy.stats.energy_distance(x.numpy(), y.numpy())
    assert energy_distance(x, y) == pytest.approx(ref, rel=1e-10)


def test_energy_distance_subsampling_is_seeded():
    g = gen(6)
    x, y = torch.randn(3000, 2, generator=g), torch.randn(3000, 2, generator=g) + 0.5
    a = energy_distance(x, y, max_samples=500, generator=gen(7))
    b = energy_distance(x, y, max_samples=500, generator=gen(7))
    full = energy_distance(x, y)
    assert a == b and a == pytest.approx(full, rel=0.25)


def test_sample_distance_dispatch():
    x = torch.randn(50, 1, generator=gen(8))
    assert sample_distance(x, x + 1, metric="w1") == pytest.approx(1.0, abs=1e-6)
    assert set(METRICS) == {"w1", "sliced_w1", "energy"}
    for name in METRICS:
        assert sample_distance(x, x + 1, metric=name, generator=gen(0)) > 0.5
    with pytest.raises(ValueError, match=r"valid: \['energy', 'sliced_w1', 'w1'\]"):
        sample_distance(x, x, metric="kl")
    with pytest.raises(ValueError, match="1-D"):
        sample_distance(torch.zeros(5, 2), torch.zeros(5, 2), metric="w1")


def test_noise_floor_scales_like_inverse_sqrt_n():
    def sample_fn(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, 1, generator=generator, dtype=F64)

    small = noise_floor(sample_fn, 500, metric="w1", generator=gen(9), repeats=20)
    large = noise_floor(sample_fn, 8000, metric="w1", generator=gen(10), repeats=20)
    assert 2.8 < small / large < 5.7, small / large  # 1/sqrt(n) predicts 4


def test_noise_floor_is_the_mean_of_its_pairs_in_draw_order():
    def sample_fn(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, 1, generator=generator, dtype=F64)

    pairs = noise_floor_pairs(sample_fn, 300, metric="w1", generator=gen(4), repeats=6)
    assert len(pairs) == 6 and len(set(pairs)) == 6
    floor = noise_floor(sample_fn, 300, metric="w1", generator=gen(4), repeats=6)
    assert floor == pytest.approx(sum(pairs) / 6, rel=1e-12)
    # pair r is the r-th pair drawn: the first 3 of 6 are the 3 of a 3-pair floor
    first = noise_floor_pairs(sample_fn, 300, metric="w1", generator=gen(4), repeats=3)
    assert first == pairs[:3]


def test_ratio_standard_error_matches_the_spread_of_the_ratio():
    # the delta method against Monte Carlo: 20 000 replicates of (20 distances, 20 floors)
    g = gen(3)
    n = m = 20
    d = 1.0 + 0.2 * torch.randn(20_000, n, generator=g, dtype=F64)
    f = 0.5 + 0.1 * torch.randn(20_000, m, generator=g, dtype=F64)
    ratios = d.mean(1) / f.mean(1)
    exact = 2.0 * (0.04 / (n * 1.0) + 0.01 / (m * 0.25)) ** 0.5  # 0.126
    assert float(ratios.std()) == pytest.approx(exact, rel=0.05)
    estimates = [ratio_standard_error(d[i].tolist(), f[i].tolist()) for i in range(300)]
    assert sum(estimates) / 300 == pytest.approx(exact, rel=0.05)
    assert math.isnan(ratio_standard_error([1.0], [1.0, 2.0]))  # one distance: no spread
