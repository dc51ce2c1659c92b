"""Adjoints against autograd through the unrolled discrete sampler (float64, small MLPs), and
the regression target's conditional mean against the exact optimal control."""

import pytest
import torch

from am.adjoint import full_adjoint, lean_adjoint, terminal_adjoint
from am.diffusion import ConstantDiffusion, MemorylessDiffusion
from am.models import TimeMLP
from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule, LinearVPSchedule
from am.sde import DDPMStep, EulerMaruyama, control_coefficient, simulate, uniform_grid, warped_grid


def quadratic_reward(x):
    return -((x - 0.3) ** 2).sum(-1) + torch.sin(x).sum(-1)


def unrolled_objective(model, base, traj, k, x_k, *, schedule, stepper, lam, running_cost):
    """Replay steps k..K-1 of `model` from x_k with the trajectory's noises; return the SOC
    cost sum_j h |u_j|^2 / 2 - lam r(X_K) (running cost optional), differentiable in x_k."""
    x, cost = x_k, 0.0
    for j in range(k, traj.num_steps):
        sv, sv_next = schedule(traj.times[j]), schedule(traj.times[j + 1])
        tj = traj.times[j].expand(x.shape[0])
        v = model(x, tj)
        if running_cost:
            u = control_coefficient(sv, traj.sigmas[j]) * (v - base(x, tj))
            cost = cost + 0.5 * (traj.times[j + 1] - traj.times[j]) * (u**2).sum()
        x = stepper.step(x, v, sv=sv, sv_next=sv_next, sigma=traj.sigmas[j], noise=traj.noises[j])
    return cost - lam * quadratic_reward(x).sum()


def _setup(schedule, stepper, diffusion, seed=0):
    torch.manual_seed(seed)
    base = TimeMLP(3, 32, 2, time_features=4).double().requires_grad_(False)
    model = TimeMLP(3, 32, 2, time_features=4).double()
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(5, 3, dtype=torch.float64, generator=g)
    return base, model, x0, g


@pytest.mark.parametrize("schedule", [FlowMatchingSchedule(), LinearVPSchedule()], ids=repr)
@pytest.mark.parametrize("stepper", [EulerMaruyama(), DDPMStep()], ids=lambda s: s.name)
@pytest.mark.parametrize("warp", [0.0, 0.6], ids=["uniform", "warped"])
def test_lean_adjoint_equals_autograd_through_base_sampler(schedule, stepper, warp):
    diffusion = MemorylessDiffusion(schedule)
    base, _, x0, g = _setup(schedule, stepper, diffusion)
    lam, K = 1.7, 8
    traj = simulate(
        base,
        x0,
        schedule=schedule,
        times=warped_grid(K, warp, dtype=torch.float64),
        diffusion=diffusion,
        stepper=stepper,
        generator=g,
    )
    terminal, _ = terminal_adjoint(quadratic_reward, traj.final, lam)
    adj = lean_adjoint(base, traj, schedule=schedule, stepper=stepper, terminal=terminal)
    for k in range(K + 1):
        xk = traj.states[k].clone().requires_grad_(True)
        obj = unrolled_objective(
            base, base, traj, k, xk, schedule=schedule, stepper=stepper, lam=lam, running_cost=False
        )
        (grad,) = torch.autograd.grad(obj, xk)
        torch.testing.assert_close(adj.adjoints[k], grad, rtol=1e-10, atol=1e-12)
    # base velocities returned for reuse are the base's outputs at the visited states
    for k in range(K):
        torch.testing.assert_close(
            adj.base_velocity[k], base(traj.states[k], traj.times[k].expand(5))
        )


def test_lean_adjoint_uses_base_jacobian_along_finetuned_path():
    # trajectory from the fine-tuned model, Jacobians from the base: a_k = J_base(X_k)^T a_{k+1}
    schedule, stepper = FlowMatchingSchedule(), EulerMaruyama()
    diffusion = MemorylessDiffusion(schedule)
    base, model, x0, g = _setup(schedule, stepper, diffusion, seed=1)
    traj = simulate(
        model,
        x0,
        schedule=schedule,
        times=uniform_grid(6, dtype=torch.float64),
        diffusion=diffusion,
        stepper=stepper,
        generator=g,
    )
    terminal, _ = terminal_adjoint(quadratic_reward, traj.final, 1.0)
    adj = lean_adjoint(
        base, traj, schedule=schedule, stepper=stepper, terminal=terminal, first_step=2
    )
    for k in range(2, 6):
        xk = traj.states[k].clone().requires_grad_(True)
        sv, sv_next = schedule(traj.times[k]), schedule(traj.times[k + 1])
        out = stepper.step(
            xk,
            base(xk, traj.times[k].expand(5)),
            sv=sv,
            sv_next=sv_next,
            sigma=traj.sigmas[k],
            noise=traj.noises[k],
        )
        (vjp,) = torch.autograd.grad(out, xk, grad_outputs=adj.adjoints[k + 1])
        torch.testing.assert_close(adj.adjoints[k], vjp, rtol=1e-10, atol=1e-12)
    assert torch.all(adj.adjoints[:2] == 0)  # skipped below first_step


@pytest.mark.parametrize("diffusion", ["memoryless", 0.7])
def test_full_adjoint_equals_autograd_of_soc_cost(diffusion):
    schedule, stepper = FlowMatchingSchedule(), EulerMaruyama()
    diff = (
        MemorylessDiffusion(schedule) if diffusion == "memoryless" else ConstantDiffusion(diffusion)
    )
    base, model, x0, g = _setup(schedule, stepper, diff, seed=2)
    lam, K = 0.8, 7
    traj = simulate(
        model,
        x0,
        schedule=schedule,
        times=uniform_grid(K, dtype=torch.float64),
        diffusion=diff,
        stepper=stepper,
        generator=g,
    )
    terminal, _ = terminal_adjoint(quadratic_reward, traj.final, lam)
    adj = full_adjoint(base, model, traj, schedule=schedule, stepper=stepper, terminal=terminal)
    for k in range(K + 1):
        xk = traj.states[k].clone().requires_grad_(True)
        obj = unrolled_objective(
            model, base, traj, k, xk, schedule=schedule, stepper=stepper, lam=lam, running_cost=True
        )
        (grad,) = torch.autograd.grad(obj, xk)
        torch.testing.assert_close(adj.adjoints[k], grad, rtol=1e-9, atol=1e-11)
    # and it differs from the lean adjoint away from the optimum (the u terms matter)
    lean = lean_adjoint(base, traj, schedule=schedule, stepper=stepper, terminal=terminal)
    k = K - 2
    assert (lean.adjoints[k] - adj.adjoints[k]).abs().max() > 1e-3 * adj.adjoints[k].abs().max()


def test_regression_target_is_unbiased_for_optimal_control():
    # Simulate the optimal process (exact v* of the tilted mixture); the conditional mean of the
    # target -sigma_k a_{k+1} must equal u*(X_k) up to the K = 40 discretisation bias, which is
    # far smaller than that of the a_k index (docs/maths.md section 5).
    schedule, stepper = FlowMatchingSchedule(), EulerMaruyama()
    gt = make_problem("gmm1d_linear", schedule, 1.0)
    base, vstar = gt.velocity, gt.target_velocity
    K, n = 40, 20000
    g = torch.Generator().manual_seed(0)
    times = uniform_grid(K)
    traj = simulate(
        vstar,
        torch.randn(n, 1, generator=g),
        schedule=schedule,
        times=times,
        diffusion=MemorylessDiffusion(schedule),
        stepper=stepper,
        generator=g,
    )
    terminal, _ = terminal_adjoint(gt.reward, traj.final, 1.0)
    adj = lean_adjoint(base, traj, schedule=schedule, stepper=stepper, terminal=terminal)

    def residuals(k):
        x, tk, sig = traj.states[k], times[k].expand(n), traj.sigmas[k]
        ustar = control_coefficient(schedule(times[k]), sig) * (vstar(x, tk) - base(x, tk))
        return x, ustar, -sig * adj.adjoints[k + 1] - ustar, -sig * adj.adjoints[k] - ustar

    h = 1.0 / K  # the discrete optimum differs from u* at first order in h
    for k in (30, 34, 38):  # late steps: light-tailed targets, so the test is sharp
        x, ustar, right, _ = residuals(k)
        se = right.std() / n**0.5
        assert right.mean().abs() < 4 * se + h * ustar.abs().mean(), (k, right.mean(), se)
        assert (right * x).mean().abs() < 4 * (right * x).std() / n**0.5 + h
    for k in (1, 2, 3):  # early steps: the a_k index is badly biased, a_{k+1} is not
        x, ustar, right, wrong = residuals(k)
        se = right.std() / n**0.5
        assert right.mean().abs() < 4 * se + 4 * h * ustar.abs().mean(), (k, right.mean(), se)
        assert wrong.mean().abs() > 3 * right.mean().abs() + 4 * se, (k, wrong.mean(), right.mean())
