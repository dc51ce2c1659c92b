"""Gaussian mixture and its exact velocity, checked against independent formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from am.problems import GaussianMixture, GaussianMixtureVelocity
from am.schedules import FlowMatchingSchedule, LinearVPSchedule

F64 = torch.float64
SCHEDULES = [FlowMatchingSchedule(), LinearVPSchedule()]


def mixture_1d() -> GaussianMixture:
    """The design's exact 1-D problem: 0.5 N(-2, 0.6^2) + 0.5 N(2, 0.6^2)."""
    return GaussianMixture.isotropic(torch.tensor([[-2.0], [2.0]], dtype=F64), 0.6)


def mixture_2d() -> GaussianMixture:
    """Three unequal components with full, anisotropic covariances."""
    means = torch.tensor([[-2.0, 0.5], [1.5, 2.0], [1.0, -1.5]], dtype=F64)
    covs = torch.tensor(
        [[[0.5, 0.2], [0.2, 0.3]], [[0.2, -0.1], [-0.1, 0.6]], [[0.05, 0.0], [0.0, 0.4]]],
        dtype=F64,
    )
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64), means, covs)


def reference_marginal(gm: GaussianMixture, alpha: float, beta: float) -> MixtureSameFamily:
    """``p_t`` built independently with torch.distributions."""
    eye = torch.eye(gm.dim, dtype=F64)
    comps = MultivariateNormal(alpha * gm.means, alpha**2 * gm.covs + beta**2 * eye)
    return MixtureSameFamily(Categorical(probs=gm.weights), comps)


# -- GaussianMixture --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": [1.0, -1.0]}, "positive"),
        ({"weights": [1.0]}, "weights must have shape"),
        ({"covs": [[[1.0, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]}, "symmetric"),
        ({"covs": [[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]}, r"components \[0\]"),
        ({"covs": [[[1.0, 0.0], [0.0, 1.0]]]}, "covs must have shape"),
        ({"means": [0.0, 1.0]}, r"\[N, D\]"),
    ],
)
def test_mixture_validation(kwargs, match):
    args = {
        "weights": [1.0, 3.0],
        "means": [[0.0, 0.0], [1.0, 1.0]],
        "covs": [[[1.0, 0.0], [0.0, 1.0]]] * 2,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**{k: torch.tensor(v) for k, v in args.items()})


def test_mixture_normalises_and_isotropic():
    gm = GaussianMixture.isotropic(
        torch.zeros(2, 3), torch.tensor([0.5, 2.0]), torch.tensor([1.0, 3.0])
    )
    assert torch.allclose(gm.weights, torch.tensor([0.25, 0.75]))
    assert torch.allclose(gm.covs[1], 4 * torch.eye(3))
    assert gm.dim == 3 and gm.mean().shape == (3,)
    g32 = mixture_2d().to(torch.float32)
    assert g32.means.dtype == g32.covs.dtype == g32.weights.dtype == torch.float32


def test_log_prob_matches_torch_distributions():
    gm = mixture_2d()
    x = torch.randn(50, 2, dtype=F64) * 2
    assert torch.allclose(gm.log_prob(x), reference_marginal(gm, 1.0, 0.0).log_prob(x))


def test_log_prob_integrates_to_one_1d():
    grid = torch.linspace(-10, 10, 20001, dtype=F64)
    density = mixture_1d().log_prob(grid[:, None]).exp()
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-10)


def test_sample_moments():
    gm = mixture_2d()
    n = 200_000
    x = gm.sample(n, generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, 2) and x.dtype == F64
    cov = gm.covariance()
    se = (torch.diagonal(cov) / n).sqrt()
    assert ((x.mean(0) - gm.mean()).abs() < 5 * se).all()
    # Sample covariance: entries have sd of order (cov_ii cov_jj / n)^{1/2} times a kurtosis factor.
    assert torch.allclose(torch.cov(x.T), cov, atol=0.03)
    assert gm.sample(0).shape == (0, 2)


def test_responsibilities_are_bayes_rule():
    """``p(i | x) = w_i N(x; mu_i, S_i) / p(x)``, each factor from torch.distributions."""
    gm = mixture_2d()
    x = torch.randn(40, 2, dtype=F64) * 2
    comps = MultivariateNormal(gm.means, gm.covs)
    joint = comps.log_prob(x[:, None, :]) + gm.weights.log()
    expected = (joint - reference_marginal(gm, 1.0, 0.0).log_prob(x)[:, None]).exp()
    assert torch.allclose(gm.responsibilities(x), expected, atol=1e-12)


def test_occupancy_of_own_samples_is_the_weights():
    """``E_p[p(i | X)] = w_i``: within a few standard errors for the mixture's own samples, and
    far from them for a sample from another mixture."""
    gm = mixture_2d()
    n = 100_000
    r = gm.responsibilities(gm.sample(n, generator=torch.Generator().manual_seed(1)))
    se = r.std(0) / n**0.5
    assert ((r.mean(0) - gm.weights).abs() < 5 * se).all()
    assert torch.allclose(
        gm.occupancy(r.new_zeros(1, 2) + gm.means[0]), r.new_tensor([1.0, 0, 0]), atol=1e-3
    )
    other = GaussianMixture(torch.tensor([0.1, 0.1, 0.8], dtype=F64), gm.means, gm.covs)
    occ = gm.occupancy(other.sample(n, generator=torch.Generator().manual_seed(2)))
    assert (occ - gm.weights).abs().sum() > 0.5
    assert gm.mode_error(other.sample(n, generator=torch.Generator().manual_seed(2))) == (
        pytest.approx(0.5 * float((occ - gm.weights).abs().sum()))
    )


# -- GaussianMixtureVelocity: marginal, score, posterior mean ---------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
@pytest.mark.parametrize("gm", [mixture_1d(), mixture_2d()], ids=["1d", "2d"])
def test_marginal_matches_reference(schedule, gm):
    vel = GaussianMixtureVelocity(gm, schedule)
    x = torch.randn(40, gm.dim, dtype=F64) * 2
    for t in (0.1, 0.5, 0.9):
        sv = schedule(torch.tensor(t, dtype=F64))
        ref = reference_marginal(gm, sv.alpha.item(), sv.beta.item()).log_prob(x)
        assert torch.allclose(vel.marginal_log_prob(x, t), ref, atol=1e-10)


def test_flow_matching_endpoints():
    gm = mixture_2d()
    vel = GaussianMixtureVelocity(gm, FlowMatchingSchedule())
    x = torch.randn(64, 2, dtype=F64) * 2
    # t = 1: the data mixture; v(x, 1) = E[X_1 - X_0 | X_1 = x] = x.
    assert torch.allclose(vel.marginal_log_prob(x, 1.0), gm.log_prob(x), atol=1e-12)
    assert torch.allclose(vel(x, 1.0), x, atol=1e-12)
    # t = 0: N(0, I); v(x, 0) = E[X_1] - x.
    normal = MultivariateNormal(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    assert torch.allclose(vel.marginal_log_prob(x, 0.0), normal.log_prob(x), atol=1e-12)
    assert torch.allclose(vel(x, 0.0), gm.mean() - x, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flow_matching_finite_at_ends(dtype):
    vel = GaussianMixtureVelocity(mixture_2d(), FlowMatchingSchedule()).to(dtype)
    x = (torch.randn(256, 2) * 3).to(dtype)
    for t in (0.0, 1e-7, 1 - 1e-7, 1.0):
        for out in (vel(x, t), vel.score(x, t), vel.posterior_mean(x, t)):
            assert out.dtype == dtype and torch.isfinite(out).all(), t
    assert torch.allclose(vel(x, 1.0), x, atol=1e-5)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
def test_score_velocity_posterior_mean_identities(schedule):
    gm = mixture_2d()
    vel = GaussianMixtureVelocity(gm, schedule)
    x = (torch.randn(100, 2, dtype=F64) * 2).requires_grad_(True)
    t = torch.rand(100, dtype=F64) * 0.9 + 0.05  # a different t per row
    (grad,) = torch.autograd.grad(vel.marginal_log_prob(x, t).sum(), x)
    s = vel.score(x, t)
    assert torch.allclose(s, grad, atol=1e-10)
    sv = schedule(t)
    # v = kappa x + eta s and Tweedie E[X_1 | x] = (x + beta^2 s) / alpha, at interior t.
    v_ref = sv.kappa[:, None] * x + sv.eta[:, None] * s
    assert torch.allclose(vel(x, t), v_ref, atol=1e-8, rtol=1e-8)
    mean_ref = (x + sv.beta[:, None] ** 2 * s) / sv.alpha[:, None]
    assert torch.allclose(vel.posterior_mean(x, t), mean_ref, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
@pytest.mark.parametrize("gm", [mixture_1d(), mixture_2d()], ids=["1d", "2d"])
def test_continuity_equation(schedule, gm):
    """``d/dt log p_t + div v + v . grad log p_t = 0`` (= ``(d/dt p + div(p v)) / p``)."""
    vel = GaussianMixtureVelocity(gm, schedule)
    n = 64
    x = (torch.randn(n, gm.dim, dtype=F64) * 2).requires_grad_(True)
    for t0 in (0.1, 0.3, 0.6, 0.9):
        t = torch.full((n,), t0, dtype=F64, requires_grad=True)
        logp = vel.marginal_log_prob(x, t)
        d_t, grad_x = torch.autograd.grad(logp.sum(), (t, x))
        v = vel(x, t)
        div = sum(
            torch.autograd.grad(v[:, j].sum(), x, retain_graph=True)[0][:, j] for j in range(gm.dim)
        )
        residual = d_t + div + (v * grad_x).sum(-1)
        scale = d_t.abs() + div.abs() + 1.0
        assert (residual.abs() / scale).max() < 1e-9, t0


def test_per_row_time_and_chunking():
    gm = mixture_2d()
    vel = GaussianMixtureVelocity(gm, FlowMatchingSchedule())
    small = GaussianMixtureVelocity(gm, FlowMatchingSchedule(), chunk_elements=7)
    x = torch.randn(23, 2, dtype=F64)
    t = torch.linspace(0, 1, 23, dtype=F64)
    rows = torch.cat([vel(x[i : i + 1], t[i]) for i in range(23)])
    assert torch.allclose(vel(x, t), rows, atol=1e-14)
    assert small.chunk_rows == 1
    assert torch.allclose(small(x, t), rows, atol=1e-14)
    assert not list(vel.parameters())


def test_velocity_gradcheck():
    vel = GaussianMixtureVelocity(mixture_2d(), FlowMatchingSchedule())
    x = torch.randn(5, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.05, 0.3, 0.5, 0.8, 0.99], dtype=F64)
    assert torch.autograd.gradcheck(lambda y: vel(y, t), (x,))


def test_monte_carlo_regression():
    """E[(alpha' X_1 + beta' X_0 - v(X_t)) g(X_t)] = 0 for any g: v is the conditional mean."""
    gm = mixture_2d()
    schedule = FlowMatchingSchedule()
    vel = GaussianMixtureVelocity(gm, schedule)
    gen = torch.Generator().manual_seed(1)
    n = 200_000
    x1 = gm.sample(n, generator=gen)
    x0 = torch.randn(n, 2, generator=gen, dtype=F64)
    t = 0.02 + 0.96 * torch.rand(n, generator=gen, dtype=F64)
    sv = schedule(t).broadcast_to(x1)
    xt = sv.beta * x0 + sv.alpha * x1
    target = sv.d_alpha * x1 + sv.d_beta * x0
    tests = [torch.ones(n, dtype=F64), xt[:, 0], xt[:, 1], torch.tanh(xt[:, 0] * xt[:, 1]), t]

    def max_z(v: torch.Tensor) -> float:
        z = []
        for g in tests:
            prod = (target - v) * g[:, None]
            z.append((prod.mean(0) / (prod.std(0) / math.sqrt(n))).abs().max().item())
        return max(z)

    assert max_z(vel(xt, t)) < 5.0
    # The check has power: the velocity of a slightly different mixture is rejected.
    shifted = GaussianMixture(gm.weights, gm.means + 0.2, gm.covs)
    assert max_z(GaussianMixtureVelocity(shifted, schedule)(xt, t)) > 10.0


def test_input_validation():
    vel = GaussianMixtureVelocity(mixture_2d(), FlowMatchingSchedule())
    with pytest.raises(ValueError, match=r"x must be \[B, 2\]"):
        vel(torch.zeros(4, 3), 0.5)
    with pytest.raises(ValueError, match="t must be"):
        vel(torch.zeros(4, 2), torch.zeros(3))


def test_project_is_the_law_of_the_projected_samples():
    """Moments in closed form (a^T mean, a^T Cov a), the identity changes nothing, and the
    projected density matches a histogram of projected samples."""
    g = torch.Generator().manual_seed(0)
    d = 5
    root = torch.randn(3, d, d, generator=g, dtype=torch.float64)
    gm = GaussianMixture(
        torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64),
        3 * torch.randn(3, d, generator=g, dtype=torch.float64),
        root @ root.mT + 0.1 * torch.eye(d, dtype=torch.float64),
    )
    a = torch.randn(d, 2, generator=g, dtype=torch.float64)
    p = gm.project(a)
    torch.testing.assert_close(p.mean(), gm.mean() @ a)
    torch.testing.assert_close(p.covariance(), a.T @ gm.covariance() @ a)
    x = torch.randn(7, d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        gm.project(torch.eye(d, dtype=torch.float64)).log_prob(x), gm.log_prob(x)
    )
    # 1-D projection: a histogram of 200k projected samples against the projected density
    u = a[:, :1]
    y = (gm.sample(200_000, generator=g) @ u)[:, 0]
    counts, edges = torch.histogram(y, bins=40)
    width = edges[1] - edges[0]
    centres = (edges[:-1] + edges[1:]) / 2
    density = gm.project(u).log_prob(centres[:, None]).exp()
    torch.testing.assert_close(counts / (len(y) * width), density, atol=4e-3, rtol=0.05)
    with pytest.raises(ValueError, match=r"\[D=5, K\]"):
        gm.project(torch.ones(4, 2))
