"""The digits reference's estimator against closed forms at the grid the comparison uses.

The digits benchmark's reference is the importance-sampling estimate of the tilt of the K-step
memoryless sampler's own marginal (docs/digits.md, "One discretisation"). On Gaussian classes
the exact velocity is affine in ``x``, so the K-step Euler-Maruyama chain is linear-Gaussian:
its marginal is the Gaussian whose mean and covariance are propagated step by step, and its
tilt by a quadratic reward is closed-form again. The estimate must land there, and measurably
away from the tilt of the exact (continuous-time) base, or the check could not tell the grids
apart.
"""

import pytest
import torch

from am.diffusion import make_diffusion
from am.metrics import classwise_tilted_expectation
from am.problems.conditional import PerClass
from am.problems.gaussian_mixture import GaussianMixture, GaussianMixtureVelocity
from am.rewards.synthetic import QuadraticReward
from am.schedules import FlowMatchingSchedule
from am.sde import EulerMaruyama, sample, uniform_grid

FM = FlowMatchingSchedule()
K = 10  # the digits comparison's grid
MEANS = torch.tensor([[-1.0, 0.5], [1.5, 0.0], [0.0, -1.5]], dtype=torch.float64)
# narrow classes, as the digits' pixels are: the last steps' noise, which the K-step chain adds
# and the continuous one does not, is then a visible part of the marginal (variances 10-30 %
# above the base's at K = 10)
COVS = 0.1 * torch.tensor(
    [[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]], [[0.2, 0.0], [0.0, 0.6]]],
    dtype=torch.float64,
)
CENTRES = torch.tensor([[0.0, 1.5], [2.5, 1.0], [1.0, -2.0]], dtype=torch.float64)


def gaussian(mean, cov) -> GaussianMixture:
    return GaussianMixture(torch.ones(1, dtype=torch.float64), mean[None], cov[None])


def sampler_marginal(base: GaussianMixture) -> GaussianMixture:
    """The exact law of ``X_K`` of the K-step memoryless Euler-Maruyama chain of ``base``'s
    exact velocity: each step ``x -> c_x x + c_v v(x, t_k) + c_eps eps`` is affine in ``x``
    (Gaussian data), its matrix read off at the basis vectors."""
    velocity = GaussianMixtureVelocity(base, FM)
    times = uniform_grid(K, dtype=torch.float64)
    sigmas = make_diffusion("memoryless", FM).on_grid(times).double()
    d = base.dim
    mean, cov = torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)
    for k, c in enumerate(EulerMaruyama().on_grid(FM, times, sigmas).unbind()):
        points = torch.cat([mean[None], mean[None] + torch.eye(d, dtype=torch.float64)])
        step = c.x * points + c.v * velocity(points, times[k].expand(d + 1))
        jac = (step[1:] - step[:1]).T  # column i: the image of e_i
        mean, cov = step[0], jac @ cov @ jac.T + c.noise**2 * torch.eye(d, dtype=torch.float64)
    return gaussian(mean, cov)


def moments(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[N, 4]``: the coordinates and their squared distances to the class's base mean (a
    fixed function per class; centred, so the spread is not drowned by the mean's square)."""
    return torch.cat([x, (x - MEANS[labels]) ** 2], 1)


def exact_moments(g: GaussianMixture, c: int) -> torch.Tensor:
    mean, cov = g.means[0], g.covs[0]
    return torch.cat([mean, (mean - MEANS[c]) ** 2 + torch.diagonal(cov)])


@pytest.mark.parametrize("reward_scale", [1.0, 4.0])
def test_reference_is_the_tilt_of_the_comparisons_sampler(reward_scale):
    bases = [gaussian(m, s) for m, s in zip(MEANS, COVS, strict=True)]
    rewards = [QuadraticReward(c, torch.eye(2, dtype=torch.float64)) for c in CENTRES]
    per_class = 10000
    labels = torch.arange(3).repeat_interleave(per_class)
    x = sample(
        PerClass([GaussianMixtureVelocity(b, FM) for b in bases]), len(labels), (2,),
        schedule=FM, num_steps=K, diffusion="memoryless", cond=labels, dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    log_w = reward_scale * PerClass(rewards)(x, labels)
    est = classwise_tilted_expectation(moments(x, labels), labels=labels, log_weights=log_w)
    assert est.n == per_class and 0.2 * per_class < est.ess < per_class
    pairs = list(enumerate(zip(rewards, bases, strict=True)))
    discrete = torch.stack(
        [exact_moments(r.tilt(sampler_marginal(b), reward_scale), c) for c, (r, b) in pairs]
    ).mean(0)
    continuous = torch.stack([exact_moments(r.tilt(b, reward_scale), c) for c, (r, b) in pairs])
    continuous = continuous.mean(0)
    z_discrete = (est.mean - discrete) / est.stderr
    z_continuous = (est.mean - continuous) / est.stderr
    assert z_discrete.abs().max() < 4, z_discrete
    # the check has the power to tell the grids apart
    assert z_continuous.abs().max() > 8, z_continuous


def test_classwise_estimate_is_the_average_of_each_class_alone():
    g = torch.Generator().manual_seed(1)
    values, labels = torch.randn(30, 2, generator=g), torch.arange(3).repeat_interleave(10)
    log_w = torch.randn(30, generator=g)
    est = classwise_tilted_expectation(values, labels=labels, log_weights=log_w)
    means, ses = [], []
    for c in range(3):
        w = torch.softmax(log_w[labels == c].double(), 0)
        m = (w[:, None] * values[labels == c].double()).sum(0)
        means.append(m)
        ses.append(((w[:, None] ** 2) * (values[labels == c] - m) ** 2).sum(0))
    torch.testing.assert_close(est.mean, torch.stack(means).mean(0))
    torch.testing.assert_close(est.stderr, torch.stack(ses).sum(0).sqrt() / 3)
    with pytest.raises(ValueError, match="labels"):
        classwise_tilted_expectation(values, labels=labels[:5], log_weights=log_w)
