"""The antithetic control variate: exactly zero conditional mean, the corrected recursion against
autograd, and on the exact 1-D problem the same mean target with several times less noise."""

import pytest
import torch

from am.adjoint import full_adjoint, lean_adjoint, terminal_adjoint
from am.control_variate import AntitheticCorrections, adjoint_estimate, antithetic_corrections
from am.diffusion import ConstantDiffusion, MemorylessDiffusion
from am.methods import AdjointMatchingConfig
from am.models import ResidualVelocity, TimeMLP
from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule, LinearVPSchedule
from am.sde import (
    DDPMStep,
    EulerMaruyama,
    Trajectory,
    control_coefficient,
    simulate,
    uniform_grid,
)


def reward(x):
    return -((x - 0.3) ** 2).sum(-1) + torch.sin(x).sum(-1)


def _mlps(seed=0):
    torch.manual_seed(seed)
    base = TimeMLP(3, 32, 2, time_features=4).double().requires_grad_(False)
    model = TimeMLP(3, 32, 2, time_features=4).double()
    return base, model


def _trajectory(model, schedule, stepper, K=6, B=5, seed=0, keep_velocities=False):
    g = torch.Generator().manual_seed(seed)
    return simulate(
        model,
        torch.randn(B, 3, dtype=torch.float64, generator=g),
        schedule=schedule,
        times=uniform_grid(K, dtype=torch.float64),
        diffusion=MemorylessDiffusion(schedule),
        stepper=stepper,
        generator=g,
        keep_velocities=keep_velocities,
    )


@pytest.mark.parametrize("schedule", [FlowMatchingSchedule(), LinearVPSchedule()], ids=repr)
@pytest.mark.parametrize("stepper", [EulerMaruyama(), DDPMStep()], ids=lambda s: s.name)
def test_correction_is_odd_in_the_step_noise(schedule, stepper):
    # From one state X_k, the steps with noise eps and -eps get corrections that cancel exactly:
    # E[delta_{k+1} | X_k] = 0 whatever the estimate g (here an untrained network).
    base, model = _mlps()
    traj = _trajectory(model, schedule, stepper)
    k, B = 2, 5
    eps = torch.randn(B, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x_k = traj.states[k].repeat(2, 1)
    noise = torch.cat([eps, -eps])
    sv, sv_next = schedule(traj.times[k]), schedule(traj.times[k + 1])
    v = model(x_k, traj.times[k].expand(2 * B))
    states = traj.states.repeat(1, 2, 1)
    states[k + 1] = stepper.step(x_k, v, sv=sv, sv_next=sv_next, sigma=traj.sigmas[k], noise=noise)
    noises = traj.noises.repeat(1, 2, 1)
    noises[k] = noise
    paired = Trajectory(states, traj.times, noises, traj.sigmas)
    g = adjoint_estimate(
        model, base, reward=reward, reward_scale=1.3, schedule=schedule, trajectory=paired
    )
    delta = antithetic_corrections(g, paired, schedule=schedule, stepper=stepper, first_step=k)
    assert delta[k + 1].abs().max() > 1e-4  # not trivially zero
    torch.testing.assert_close(delta[k + 1][:B], -delta[k + 1][B:], rtol=1e-12, atol=1e-12)
    assert torch.all(delta[: k + 1] == 0)


def _corrected_setup(seed: int, K: int):
    """FM + Euler-Maruyama rollout of a small MLP model, its terminal adjoint and the antithetic
    corrections built from the model: what both corrected-recursion tests start from."""
    schedule, stepper = FlowMatchingSchedule(), EulerMaruyama()
    base, model = _mlps(seed)
    traj = _trajectory(model, schedule, stepper, K=K)
    terminal, _ = terminal_adjoint(reward, traj.final, 1.0)
    g = adjoint_estimate(
        model, base, reward=reward, reward_scale=1.0, schedule=schedule, trajectory=traj
    )
    delta = antithetic_corrections(g, traj, schedule=schedule, stepper=stepper)
    return schedule, stepper, base, model, traj, terminal, delta


def test_corrected_recursion_equals_vjp_of_corrected_adjoint():
    schedule, stepper, base, _, traj, terminal, delta = _corrected_setup(1, K=6)
    adj = lean_adjoint(
        base, traj, schedule=schedule, stepper=stepper, terminal=terminal, corrections=delta
    )
    plain = lean_adjoint(base, traj, schedule=schedule, stepper=stepper, terminal=terminal)
    assert (adj.adjoints[0] - plain.adjoints[0]).abs().max() > 1e-6
    for k in range(6):
        xk = traj.states[k].clone().requires_grad_(True)
        out = stepper.step(
            xk,
            base(xk, traj.times[k].expand(5)),
            sv=schedule(traj.times[k]),
            sv_next=schedule(traj.times[k + 1]),
            sigma=traj.sigmas[k],
            noise=traj.noises[k],
        )
        (vjp,) = torch.autograd.grad(out, xk, grad_outputs=adj.adjoints[k + 1] - delta[k + 1])
        torch.testing.assert_close(adj.adjoints[k], vjp, rtol=1e-10, atol=1e-12)
    steps = torch.tensor([1, 4])
    torch.testing.assert_close(
        adj.target_adjoint(steps, 1), adj.adjoints[steps + 1] - delta[steps + 1]
    )
    torch.testing.assert_close(adj.target_adjoint(steps, 0), adj.adjoints[steps])
    # zero corrections reproduce the plain lean adjoint
    zero = lean_adjoint(
        base,
        traj,
        schedule=schedule,
        stepper=stepper,
        terminal=terminal,
        corrections=torch.zeros_like(delta),
    )
    torch.testing.assert_close(zero.adjoints, plain.adjoints, rtol=0, atol=0)
    with pytest.raises(ValueError, match="corrections must have"):
        lean_adjoint(
            base, traj, schedule=schedule, stepper=stepper, terminal=terminal, corrections=delta[1:]
        )


def test_full_adjoint_takes_the_corrections_the_same_way():
    """Basic Adjoint Matching with the control variate: ``a_k = J_k^{ft T} (a_{k+1} - delta_{k+1})
    + h grad |u(X_k)|^2 / 2``, checked against autograd through the fine-tuned step."""
    schedule, stepper, base, model, traj, terminal, delta = _corrected_setup(2, K=5)
    kw = dict(schedule=schedule, stepper=stepper, terminal=terminal)
    adj = full_adjoint(base, model, traj, corrections=delta, **kw)
    assert (adj.adjoints[0] - full_adjoint(base, model, traj, **kw).adjoints[0]).abs().max() > 1e-6
    for k in range(5):
        xk = traj.states[k].clone().requires_grad_(True)
        t, sv = traj.times[k].expand(5), schedule(traj.times[k])
        v_ft = model(xk, t)
        out = stepper.step(
            xk,
            v_ft,
            sv=sv,
            sv_next=schedule(traj.times[k + 1]),
            sigma=traj.sigmas[k],
            noise=traj.noises[k],
        )
        u = control_coefficient(sv, traj.sigmas[k]) * (v_ft - base(xk, t))
        h = traj.times[k + 1] - traj.times[k]
        cost = 0.5 * h * (u**2).sum()
        (vjp,) = torch.autograd.grad((out * (adj.adjoints[k + 1] - delta[k + 1])).sum() + cost, xk)
        torch.testing.assert_close(adj.adjoints[k], vjp, rtol=1e-10, atol=1e-12)


def test_same_mean_target_with_less_noise_on_exact_problem():
    # Optimal paths of the exact 1-D problem (v*); estimate g from v* itself (what a converged
    # model gives). The corrected target -sigma_k e_{k+1} has the plain target's mean at every
    # step (difference within 4 standard errors) and about 3x less variance where the
    # target is noisy (t = 0.1 .. 0.4).
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    sched, stepper, K, P = gt.schedule, EulerMaruyama(), 20, 40_000
    g = torch.Generator().manual_seed(0)
    traj = simulate(
        gt.target_velocity,
        torch.randn(P, 1, dtype=torch.float64, generator=g),
        schedule=sched,
        times=uniform_grid(K, dtype=torch.float64),
        diffusion=MemorylessDiffusion(sched),
        stepper=stepper,
        generator=g,
    )
    terminal, _ = terminal_adjoint(gt.reward, traj.final, gt.reward_scale)
    est = adjoint_estimate(
        gt.target_velocity,
        gt.velocity,
        reward=gt.reward,
        reward_scale=gt.reward_scale,
        schedule=sched,
        trajectory=traj,
    )
    delta = antithetic_corrections(est, traj, schedule=sched, stepper=stepper)
    plain = lean_adjoint(gt.velocity, traj, schedule=sched, stepper=stepper, terminal=terminal)
    cv = lean_adjoint(
        gt.velocity, traj, schedule=sched, stepper=stepper, terminal=terminal, corrections=delta
    )
    steps = torch.arange(K)
    y_plain = -traj.sigmas[:, None, None] * plain.target_adjoint(steps, 1)
    y_cv = -traj.sigmas[:, None, None] * cv.target_adjoint(steps, 1)
    diff = (y_plain - y_cv)[:-1, :, 0]  # last step: linear reward, no correction (0 / 0)
    z = diff.mean(1) / (diff.std(1) / P**0.5)
    assert z.abs().max() < 4.0, z
    ratio = y_plain[..., 0].var(1) / y_cv[..., 0].var(1)
    assert ratio[2:9].min() > 2.5, (
        ratio
    )  # measured 2.8-3.0 at K = 20 (about 6 at K = 40)  # t = 0.1 .. 0.4


def test_config_rejects_unknown_control_variate():
    with pytest.raises(ValueError, match="control_variate"):
        AdjointMatchingConfig(control_variate="jvp")


def test_estimate_uses_residual_difference_and_matches_generic_form():
    # ResidualVelocity.difference (no base forward) gives the same g as v_ft - v_base
    schedule = FlowMatchingSchedule()
    base, net = _mlps(2)
    model = ResidualVelocity(base, net)
    traj = _trajectory(model, schedule, EulerMaruyama())
    kwargs = dict(reward=reward, reward_scale=1.0, schedule=schedule, trajectory=traj)
    fast = adjoint_estimate(model, base, **kwargs)
    generic = adjoint_estimate(lambda x, t: model(x, t), base, **kwargs)
    x = traj.states[3]
    torch.testing.assert_close(fast(x, 3), generic(x, 3))
    assert fast(x, 3).abs().max() > 0
    torch.testing.assert_close(
        fast(x, 6), -torch.func.vmap(torch.func.grad(lambda z: reward(z[None])[0]))(x)
    )


@pytest.mark.parametrize("adjoint", ["lean", "full"])
def test_corrections_made_during_the_adjoint_pass_equal_the_precomputed_ones(adjoint):
    """AntitheticCorrections (g at X_j from the rollout's velocities and the adjoint's v_base,
    a forward only at the mirrored states) gives the increments and adjoints of
    antithetic_corrections (g at both points), with B rows per step through the network
    instead of 2B; without the rollout's velocities it falls back to 2B."""
    schedule, stepper, K, B = FlowMatchingSchedule(), EulerMaruyama(), 6, 5
    base, net = _mlps(4)
    model = ResidualVelocity(base, net)
    traj = _trajectory(model, schedule, stepper, K=K, B=B, seed=1, keep_velocities=True)
    torch.testing.assert_close(
        traj.velocities[2], model(traj.states[2], traj.times[2].expand(B)), rtol=0, atol=0
    )
    terminal, _ = terminal_adjoint(reward, traj.final, 1.3)
    kw = dict(reward=reward, reward_scale=1.3, schedule=schedule, trajectory=traj)
    rows = []
    net.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    delta = antithetic_corrections(
        adjoint_estimate(model, base, **kw), traj, schedule=schedule, stepper=stepper, first_step=1
    )
    assert sum(rows) == (K - 2) * 2 * B  # g at X_j and its mirror, j = 2 .. K - 1 (g_K: exact)

    def run(corrections):
        rows.clear()
        common = dict(schedule=schedule, stepper=stepper, terminal=terminal, first_step=1)
        if adjoint == "lean":
            return lean_adjoint(base, traj, corrections=corrections, **common)
        return full_adjoint(base, model, traj, corrections=corrections, **common)

    eager = run(delta)
    eager_rows = list(rows)  # the full adjoint's own forwards (none for the lean one)
    lazy = run(AntitheticCorrections(model, base, stepper=stepper, first_step=1, **kw))
    extra = list(rows)
    for r in eager_rows:
        extra.remove(r)
    assert extra == [(K - 2) * B]  # only the mirrored states, all steps in one call
    torch.testing.assert_close(lazy.corrections[2:], delta[2:], rtol=1e-10, atol=1e-12)
    assert torch.all(lazy.corrections[:2] == 0)  # first_step = 1: delta_1 is not needed
    torch.testing.assert_close(lazy.adjoints, eager.adjoints, rtol=1e-10, atol=1e-12)
    late = AntitheticCorrections(model, base, stepper=stepper, first_step=3, **kw)
    with pytest.raises(ValueError, match="first_step"):  # its batch does not hold step 2
        late(2, traj.velocities[2])
    no_velocities = Trajectory(traj.states, traj.times, traj.noises, traj.sigmas)
    kw["trajectory"] = no_velocities
    fallback = AntitheticCorrections(model, base, stepper=stepper, **kw)
    rows.clear()
    torch.testing.assert_close(fallback(3, None), delta[3], rtol=1e-10, atol=1e-12)
    assert rows == [2 * B]


def test_a_deterministic_rollout_gets_zero_corrections_without_a_forward():
    """sigma = 0 (the ODE): no step has noise to mirror, so every increment is zero and the
    batched estimate at the mirrored states is never evaluated."""
    schedule, K, B = FlowMatchingSchedule(), 5, 4
    base, net = _mlps(4)
    model = ResidualVelocity(base, net)
    traj = simulate(
        model,
        torch.randn(B, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
        schedule=schedule,
        times=uniform_grid(K, dtype=torch.float64),
        diffusion=ConstantDiffusion(0.0),
        keep_velocities=True,
    )
    rows = []
    net.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    make = AntitheticCorrections(
        model,
        base,
        reward=reward,
        reward_scale=1.0,
        schedule=schedule,
        stepper=EulerMaruyama(),
        trajectory=traj,
    )
    for j in range(K, 0, -1):
        v_base = base(traj.states[j], traj.times[j].expand(B)) if j < K else None
        assert torch.all(make(j, v_base) == 0)
    assert rows == []
