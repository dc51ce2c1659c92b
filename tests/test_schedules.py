"""Schedules: derivatives vs autograd, memoryless diffusion vs closed forms, boundary values."""

import math

import pytest
import torch

from am.schedules import (
    CosineSchedule,
    DiscreteVPSchedule,
    FlowMatchingSchedule,
    LinearVPSchedule,
    make_schedule,
)

SCHEDULES = [
    FlowMatchingSchedule(),
    LinearVPSchedule(),
    CosineSchedule(),
    CosineSchedule(0.0),
    DiscreteVPSchedule(),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_derivatives_match_autograd(schedule):
    # interior points away from the knots of the discrete schedule
    t = torch.tensor(
        [0.0371, 0.2113, 0.5017, 0.7431, 0.9123], dtype=torch.float64, requires_grad=True
    )
    sv = schedule(t)
    (da,) = torch.autograd.grad(sv.alpha.sum(), t)
    (db,) = torch.autograd.grad(schedule(t).beta.sum(), t)
    torch.testing.assert_close(sv.d_alpha.detach(), da, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(sv.d_beta.detach(), db, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_boundaries(schedule):
    sv = schedule(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(sv.alpha[1], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(sv.beta[1], torch.tensor(0.0, dtype=torch.float64))
    assert sv.alpha[0] < 0.07 and sv.beta[0] > 0.99
    assert torch.isfinite(sv.alpha).all() and torch.isfinite(sv.beta).all()


def test_flow_matching_closed_forms():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    sv = FlowMatchingSchedule()(t)
    torch.testing.assert_close(sv.kappa, 1 / t)
    torch.testing.assert_close(sv.eta, (1 - t) / t)
    torch.testing.assert_close(sv.memoryless_diffusion, torch.sqrt(2 * (1 - t) / t))
    # eta defined from the general formula beta (alpha' beta / alpha - beta')
    torch.testing.assert_close(sv.eta, sv.beta * (sv.d_alpha * sv.beta / sv.alpha - sv.d_beta))
    torch.testing.assert_close(sv.inv_eta, t / (1 - t))


@pytest.mark.parametrize(
    "schedule", [LinearVPSchedule(), CosineSchedule(), DiscreteVPSchedule()], ids=repr
)
def test_vp_memoryless_is_ddpm(schedule):
    # For VP, sigma^2 = 2 eta = abar' / abar: the DDPM diffusion. abar' by autograd, independently.
    t = torch.tensor([0.1234, 0.4321, 0.6789, 0.8765], dtype=torch.float64, requires_grad=True)
    abar = schedule(t).alpha ** 2
    (d_abar,) = torch.autograd.grad(abar.sum(), t)
    sigma = schedule(t.detach()).memoryless_diffusion
    torch.testing.assert_close(sigma**2, d_abar / abar.detach(), rtol=1e-6, atol=1e-10)


def test_discrete_schedule_matches_alphas_cumprod_and_direction():
    sched = DiscreteVPSchedule()
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    acp = torch.cumprod(1 - betas, 0)
    tau = torch.tensor([999, 500, 0])
    t = sched.timestep_to_time(tau)
    assert t[0] == 0.0 and t[1] > t[0] and t[2] > t[1]  # noisiest diffusers timestep is our t = 0
    torch.testing.assert_close(sched(t).alpha ** 2, acp[tau])
    torch.testing.assert_close(sched.time_to_timestep(t), tau.double())


def test_cosine_without_offset_is_trigonometric():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    sv = CosineSchedule(0.0)(t)
    torch.testing.assert_close(sv.alpha, torch.sin(math.pi * t / 2), atol=1e-12, rtol=0)
    torch.testing.assert_close(sv.beta, torch.cos(math.pi * t / 2), atol=1e-7, rtol=0)


def test_inv_eta_finite_at_zero():
    for s in (FlowMatchingSchedule(), CosineSchedule()):
        sv = s(torch.tensor([0.0], dtype=torch.float64))
        assert sv.inv_eta.item() == pytest.approx(0.0, abs=1e-12)
        assert math.isinf(sv.memoryless_diffusion.item())


def test_unknown_schedule_lists_choices():
    with pytest.raises(ValueError, match="valid: .*flow_matching"):
        make_schedule("linear_interp")
