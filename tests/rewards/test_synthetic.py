"""Synthetic rewards: values, gradients, and exact tilts checked by quadrature and by
self-normalised importance sampling."""

from __future__ import annotations

import math

import pytest
import torch

from am.problems import GaussianMixture
from am.rewards import LinearReward, QuadraticReward, Reward

F64 = torch.float64


def mixture_1d() -> GaussianMixture:
    means = torch.tensor([[-2.0], [2.0], [0.5]], dtype=F64)
    return GaussianMixture.isotropic(
        means, torch.tensor([0.6, 0.6, 1.3]), torch.tensor([2.0, 2.0, 1.0])
    )


def mixture_2d() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.5], [1.5, 2.0], [1.0, -1.5]], dtype=F64)
    covs = torch.tensor(
        [[[0.5, 0.2], [0.2, 0.3]], [[0.2, -0.1], [-0.1, 0.6]], [[0.05, 0.0], [0.0, 0.4]]],
        dtype=F64,
    )
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64), means, covs)


def test_reward_values_and_gradients():
    c = torch.tensor([0.5, -2.0], dtype=F64)
    m = torch.tensor([1.0, -1.0], dtype=F64)
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    lin, quad = LinearReward(c), QuadraticReward(m, A)
    assert isinstance(lin, Reward) and isinstance(quad, Reward)
    x = torch.randn(7, 2, dtype=F64, requires_grad=True)
    assert torch.allclose(lin(x), x @ c)
    q = torch.stack([-0.5 * (xi - m) @ A @ (xi - m) for xi in x])
    assert torch.allclose(quad(x), q)
    (g,) = torch.autograd.grad(quad(x).sum(), x)
    assert torch.allclose(g, -(x - m) @ A)
    assert lin(x.float()).dtype == torch.float32
    assert not list(lin.parameters()) and not list(quad.parameters())


def test_reward_validation():
    with pytest.raises(ValueError, match="symmetric"):
        QuadraticReward(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="semi-definite"):
        QuadraticReward(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match=r"\[D, D\]"):
        QuadraticReward(torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="mixture is 2-D"):
        LinearReward(torch.ones(3)).tilt(mixture_2d(), 1.0)
    with pytest.raises(ValueError, match="not normalisable"):
        QuadraticReward(torch.zeros(2), torch.eye(2)).tilt(mixture_2d(), -100.0)


REWARDS_1D = [
    (LinearReward(torch.tensor([1.0], dtype=F64)), 1.0),
    (LinearReward(torch.tensor([1.0], dtype=F64)), -0.7),
    (QuadraticReward(torch.tensor([1.0], dtype=F64), torch.tensor([[2.0]], dtype=F64)), 1.5),
    (QuadraticReward(torch.tensor([-3.0], dtype=F64), torch.tensor([[0.3]], dtype=F64)), 4.0),
]


@pytest.mark.parametrize(("reward", "scale"), REWARDS_1D)
def test_tilt_matches_quadrature_1d(reward, scale):
    base = mixture_1d()
    grid = torch.linspace(-25, 25, 50001, dtype=F64)
    unnorm = (base.log_prob(grid[:, None]) + scale * reward(grid[:, None])).exp()
    target = unnorm / torch.trapezoid(unnorm, grid)
    tilted = reward.tilt(base, scale).log_prob(grid[:, None]).exp()
    assert (tilted - target).abs().max() < 1e-8
    # The tilt is not the identity, so the check above has something to detect.
    assert (base.log_prob(grid[:, None]).exp() - target).abs().max() > 1e-2


def test_linear_tilt_closed_form_and_composition():
    """Design's example: means shift by S c, weights times exp(c.mu + c.S.c / 2)."""
    base = GaussianMixture.isotropic(torch.tensor([[-2.0], [2.0]], dtype=F64), 0.6)
    tilted = LinearReward(torch.tensor([1.0], dtype=F64)).tilt(base, 1.0)
    assert torch.allclose(tilted.means[:, 0], torch.tensor([-2 + 0.36, 2 + 0.36], dtype=F64))
    ratio = tilted.weights[1] / tilted.weights[0]
    assert ratio.item() == pytest.approx(math.exp(4.0), rel=1e-12)
    reward = LinearReward(torch.tensor([0.3, -1.0], dtype=F64))
    twice = reward.tilt(reward.tilt(mixture_2d(), 0.4), 0.6)
    once = reward.tilt(mixture_2d(), 1.0)
    for a, b in ((twice.weights, once.weights), (twice.means, once.means)):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize(
    "reward",
    [
        LinearReward(torch.tensor([0.5, -0.3], dtype=F64)),
        QuadraticReward(
            torch.tensor([1.0, -1.0], dtype=F64), torch.tensor([[0.5, 0.3], [0.3, 1.0]], dtype=F64)
        ),
    ],
    ids=["linear", "quadratic"],
)
def test_tilt_zero_scale_is_identity(reward):
    base = mixture_2d()
    tilted = reward.tilt(base, 0.0)
    for a, b in (
        (tilted.weights, base.weights),
        (tilted.means, base.means),
        (tilted.covs, base.covs),
    ):
        assert torch.allclose(a, b, atol=1e-12)
    assert reward.tilt(base.to(torch.float32), 0.5).means.dtype == torch.float32


@pytest.mark.parametrize(
    ("reward", "scale"),
    [
        (LinearReward(torch.tensor([0.5, -0.3], dtype=F64)), 1.0),
        (
            QuadraticReward(
                torch.tensor([1.0, -1.0], dtype=F64),
                torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64),
            ),
            0.8,
        ),
    ],
    ids=["linear", "quadratic"],
)
def test_tilt_matches_importance_sampling_2d(reward, scale):
    """Self-normalised weights exp(scale r) on base samples give the tilted moments."""
    base = mixture_2d()
    tilted = reward.tilt(base, scale)
    x = base.sample(300_000, generator=torch.Generator().manual_seed(3))
    w = torch.softmax(scale * reward(x), dim=0)
    mean, cov = tilted.mean(), tilted.covariance()
    centred = x - mean  # centred at the exact mean: E_w[centred centred^T] = cov, no plug-in bias
    features = torch.cat([x, (centred[:, :, None] * centred[:, None, :]).flatten(1)], dim=1)
    exact = torch.cat([mean, cov.flatten()])
    est = w @ features
    # Delta-method standard error of a self-normalised importance-sampling estimate.
    se = ((w[:, None] ** 2) * (features - est) ** 2).sum(0).sqrt()
    assert ((est - exact).abs() < 5 * se + 1e-12).all(), (est - exact) / se
    base_exact = torch.cat(
        [base.mean(), (base.covariance() + torch.outer(*(2 * [base.mean() - mean]))).flatten()]
    )
    assert ((base_exact - exact).abs() > 10 * se).any()
