"""SDE simulation: marginals with zero control, finiteness at the ends, the DDPM step."""

import math

import pytest
import torch

from am.diffusion import ConstantDiffusion, MemorylessDiffusion, make_diffusion
from am.metrics.distances import wasserstein_1d
from am.problems.gaussian_mixture import GaussianMixture, GaussianMixtureVelocity
from am.schedules import CosineSchedule, FlowMatchingSchedule, LinearVPSchedule
from am.sde import (
    DDPMStep,
    EulerMaruyama,
    control_coefficient,
    drift,
    endpoint_from_velocity,
    sample,
    score_from_velocity,
    simulate,
    uniform_grid,
    warped_grid,
)

BIMODAL = GaussianMixture.isotropic(torch.tensor([[-2.0], [2.0]]), 0.6)


def reference_marginal(mix, schedule, t, n, g):
    """Independent sampler of X_t = beta Z + alpha X_1."""
    sv = schedule(torch.tensor(t))
    return sv.beta * torch.randn(n, mix.dim, generator=g) + sv.alpha * mix.sample(n, generator=g)


@pytest.mark.parametrize("diffusion", ["memoryless", "ode", 0.5, 2.0])
def test_zero_control_marginals_match_base(diffusion):
    # Fine grid so discretisation error is small next to the sampling noise of 20k samples.
    sched, n, K = FlowMatchingSchedule(), 20000, 200
    g = torch.Generator().manual_seed(0)
    v = GaussianMixtureVelocity(BIMODAL, sched)
    traj = simulate(
        v,
        torch.randn(n, 1, generator=g),
        schedule=sched,
        times=uniform_grid(K),
        diffusion=make_diffusion(diffusion, sched),
        generator=g,
    )
    floor = wasserstein_1d(
        reference_marginal(BIMODAL, sched, 1.0, n, g)[:, 0], BIMODAL.sample(n, generator=g)[:, 0]
    )
    for k in (K // 4, K // 2, K):
        t = float(traj.times[k])
        ref = reference_marginal(BIMODAL, sched, t, n, g)
        w1 = wasserstein_1d(traj.states[k, :, 0], ref[:, 0])
        assert w1 < 3 * floor + 0.02, (diffusion, t, w1, floor)
    # and a wrong model is detected at the same tolerance (the check can fail)
    shifted = GaussianMixture.isotropic(torch.tensor([[-2.0], [2.3]]), 0.6)
    w1_wrong = wasserstein_1d(traj.states[K, :, 0], shifted.sample(n, generator=g)[:, 0])
    assert w1_wrong > 3 * floor + 0.02


@pytest.mark.parametrize(
    "schedule", [FlowMatchingSchedule(), CosineSchedule(), LinearVPSchedule()], ids=repr
)
@pytest.mark.parametrize("stepper", [EulerMaruyama(), DDPMStep()], ids=lambda s: s.name)
def test_steppers_finite_at_both_ends(schedule, stepper):
    v = GaussianMixtureVelocity(BIMODAL, schedule)
    g = torch.Generator().manual_seed(1)
    for K in (1, 2, 10):
        traj = simulate(
            v,
            torch.randn(512, 1, generator=g),
            schedule=schedule,
            times=uniform_grid(K),
            diffusion=MemorylessDiffusion(schedule),
            stepper=stepper,
            generator=g,
        )
        assert torch.isfinite(traj.states).all() and torch.isfinite(traj.sigmas).all()


def test_memoryless_grid_uses_paper_offset_only_at_singular_point():
    sched = FlowMatchingSchedule()
    times = uniform_grid(10, dtype=torch.float64)
    sig = MemorylessDiffusion(sched).on_grid(times)
    h = 0.1
    assert sig[0].item() == pytest.approx(math.sqrt(2 * (1 + h) / h))  # sqrt(2(1-t+h)/(t+h)) at t=0
    t = times[1:-1]
    torch.testing.assert_close(sig[1:], torch.sqrt(2 * (1 - t) / t))


def test_memoryless_drift_is_two_v_minus_kappa_x():
    sched = FlowMatchingSchedule()
    x = torch.randn(64, 1, dtype=torch.float64)
    t = torch.tensor(0.37, dtype=torch.float64)
    v = GaussianMixtureVelocity(BIMODAL.to(torch.float64), sched)(x, t.expand(64))
    sv = sched(t)
    torch.testing.assert_close(drift(sv, x, v, sv.memoryless_diffusion), 2 * v - sv.kappa * x)
    # the score from the velocity is the exact score
    torch.testing.assert_close(
        score_from_velocity(sv, x, v),
        GaussianMixtureVelocity(BIMODAL.to(torch.float64), sched).score(x, t.expand(64)),
    )
    # memoryless control coefficient sqrt(2 / eta)
    torch.testing.assert_close(
        control_coefficient(sv, sv.memoryless_diffusion), torch.sqrt(2 / sv.eta)
    )


def test_endpoint_prediction_is_posterior_mean():
    for sched in (FlowMatchingSchedule(), LinearVPSchedule()):
        mix = BIMODAL.to(torch.float64)
        vel = GaussianMixtureVelocity(mix, sched)
        x = torch.randn(32, 1, dtype=torch.float64)
        t = torch.full((32,), 0.6, dtype=torch.float64)
        y = endpoint_from_velocity(sched(t).broadcast_to(x), x, vel(x, t))
        torch.testing.assert_close(y, vel.posterior_mean(x, t))


@pytest.mark.parametrize("schedule", [FlowMatchingSchedule(), LinearVPSchedule()], ids=repr)
def test_ddpm_step_converges_on_gaussian_data(schedule):
    # The DDPM step replaces X_1 by E[X_1|X_t], dropping Var(X_1|X_t): under-dispersed on a
    # coarse grid (docs/maths.md section 6), consistent as K grows.
    mix = GaussianMixture(torch.ones(1), torch.tensor([[1.5]]), torch.tensor([[[0.25]]])).to(
        torch.float64
    )
    v = GaussianMixtureVelocity(mix, schedule)
    g = torch.Generator().manual_seed(3)
    n = 100000
    var_tol = 5 * 0.25 * math.sqrt(2 / n)

    def draw(K):
        return sample(
            v,
            n,
            (1,),
            schedule=schedule,
            num_steps=K,
            diffusion=MemorylessDiffusion(schedule),
            stepper=DDPMStep(),
            generator=g,
            dtype=torch.float64,
        )

    coarse, fine = draw(4), draw(500)
    assert abs(fine.mean().item() - 1.5) < 5 * 0.5 / math.sqrt(n)
    assert abs(fine.var().item() - 0.25) < var_tol + 0.01
    assert coarse.var().item() < 0.25 - 10 * var_tol  # under-dispersed, as documented


def test_bad_grids_raise():
    v = GaussianMixtureVelocity(BIMODAL, FlowMatchingSchedule())
    x0 = torch.randn(4, 1)
    with pytest.raises(ValueError, match="strictly increasing"):
        simulate(
            v,
            x0,
            schedule=FlowMatchingSchedule(),
            times=torch.tensor([0.0, 0.5, 0.5, 1.0]),
            diffusion=ConstantDiffusion(0.0),
        )
    with pytest.raises(ValueError, match="num_steps"):
        uniform_grid(-3)
    with pytest.raises(ValueError, match="memoryless"):
        make_diffusion("ddim", FlowMatchingSchedule())


def test_warped_grid():
    K = 40
    torch.testing.assert_close(warped_grid(K, 0.0), uniform_grid(K), rtol=0, atol=0)
    for warp in (0.5, -0.5, 0.95):
        t = warped_grid(K, warp, dtype=torch.float64)
        assert t.shape == (K + 1,) and t[0] == 0 and t[-1] == 1
        assert torch.all(t[1:] > t[:-1])
        h = t[1:] - t[:-1]
        # steps (1 + warp) times the uniform one at the ends, (1 - warp) mid-way (to O(1/K))
        assert abs(h[0] * K - (1 + warp)) < 0.01 and abs(h[K // 2] * K - (1 - warp)) < 0.01
        torch.testing.assert_close(h.sum(), torch.tensor(1.0, dtype=torch.float64))
    for bad in (1.0, -1.0, True, "0.5"):
        with pytest.raises(ValueError, match="warp"):
            warped_grid(K, bad)


def test_simulate_keeps_the_velocities_it_evaluated_on_request():
    schedule = FlowMatchingSchedule()
    calls = []

    def velocity(x, t):
        calls.append(x.clone())
        return -x * t[:, None]

    kw = dict(
        schedule=schedule,
        times=uniform_grid(4, dtype=torch.float64),
        diffusion=MemorylessDiffusion(schedule),
        generator=torch.Generator().manual_seed(0),
    )
    x0 = torch.randn(3, 2, dtype=torch.float64)
    traj = simulate(velocity, x0, keep_velocities=True, **kw)
    assert simulate(velocity, x0, **kw).velocities is None
    for k in range(4):
        torch.testing.assert_close(calls[k], traj.states[k], rtol=0, atol=0)
        torch.testing.assert_close(traj.velocities[k], -traj.states[k] * traj.times[k])
    with pytest.raises(ValueError, match="keep_velocities needs keep_trajectory"):
        simulate(velocity, x0, keep_velocities=True, keep_trajectory=False, **kw)


@pytest.mark.parametrize("schedule", [FlowMatchingSchedule(), LinearVPSchedule(), CosineSchedule()])
def test_step_coefficients_are_the_written_out_steps(schedule):
    """The affine coefficients reproduce the steps as written in the papers (float64): EM as
    ``x + h b + sigma sqrt(h) eps`` with ``b`` from the paper's Eq. 6 (:func:`drift`), the DDPM step as
    ``alpha' y + Phi (x - alpha y) + sqrt(beta'^2 - Phi^2 beta^2) eps``; and the whole grid's
    coefficients from one vectorised call equal the per-step ones."""
    g = torch.Generator().manual_seed(0)
    times = warped_grid(12, 0.3, dtype=torch.float64)
    sigmas = MemorylessDiffusion(schedule).on_grid(times).to(torch.float64)
    em, ddpm = EulerMaruyama(), DDPMStep()
    grid_em = em.on_grid(schedule, times, sigmas).unbind()
    for k in range(12):
        sv, sv_next, h = schedule(times[k]), schedule(times[k + 1]), times[k + 1] - times[k]
        x, v, eps = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
        for sigma in (sigmas[k], torch.tensor(0.0, dtype=torch.float64)):
            written = x + h * drift(sv, x, v, sigma) + sigma * torch.sqrt(h) * eps
            got = em.step(x, v, sv=sv, sv_next=sv_next, sigma=sigma, noise=eps)
            torch.testing.assert_close(got, written, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            grid_em[k].apply(x, v, eps),
            em.step(x, v, sv=sv, sv_next=sv_next, sigma=sigmas[k], noise=eps),
            rtol=1e-12,
            atol=1e-12,
        )
        y = endpoint_from_velocity(sv, x, v)
        phi = (sv_next.beta / sv.beta) ** 2 * (sv.alpha / sv_next.alpha)
        scale = torch.sqrt(torch.clamp(sv_next.beta**2 - phi**2 * sv.beta**2, min=0.0))
        written = sv_next.alpha * y + phi * (x - sv.alpha * y) + scale * eps
        got = ddpm.step(x, v, sv=sv, sv_next=sv_next, sigma=sigmas[k], noise=eps)
        torch.testing.assert_close(got, written, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spec", ["ode", "memoryless", 0.5])
def test_sample_takes_a_diffusion_by_name_or_number(spec):
    """``am.sample(..., diffusion="ode")`` is the same draw as with the built Diffusion; a wrong
    name is refused before any step."""
    fm = FlowMatchingSchedule()
    velocity = GaussianMixtureVelocity(BIMODAL, fm)
    draw = lambda d: sample(  # noqa: E731
        velocity, 64, (1,), schedule=fm, num_steps=8, diffusion=d,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    torch.testing.assert_close(draw(spec), draw(make_diffusion(spec, fm)), atol=0, rtol=0)
    with pytest.raises(ValueError, match="diffusion must be"):
        draw("sde")
