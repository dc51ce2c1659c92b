"""Per-method checks against something independent (float64, small MLPs).

* discrete adjoint: its gradient is the derivative of the SOC objective (central finite
  differences with common random numbers); checkpointing changes nothing; its control cost is
  ``sum h |u|^2 / 2`` for Euler-Maruyama.
* basic Adjoint Matching (full adjoint): its loss gradient equals twice the discrete adjoint's,
  path by path, on the same noises; the lean adjoint's does not (away from the base).
* DRaFT-K: only the last K model calls carry gradient, and DRaFT-1's gradient is that of the last
  step replayed from ``am.sde.simulate``'s states.
* ReFL: the loss is ``-lambda r`` of the one-step prediction at the reported stop step.
* DPO: ``log 2`` at the base; a gradient step moves probability towards the winners.
* GRPO: the policy-gradient term equals the gradient of ``-mean A log N(X_{k+1}; m, s^2)`` from
  ``torch.distributions`` on the simulated path; advantages are standardised per group.
"""

import pytest
import torch

from am.diffusion import ConstantDiffusion, MemorylessDiffusion, ScaledDiffusion
from am.loss import StepSubset
from am.methods import AdjointMatching, AdjointMatchingConfig, FineTuningProblem
from am.models import TimeMLP
from am.schedules import FlowMatchingSchedule, LinearVPSchedule
from am.sde import (
    control_coefficient,
    endpoint_from_velocity,
    simulate,
    uniform_grid,
    warped_grid,
)
from baselines.basic_adjoint_matching import BasicAdjointMatching, BasicAdjointMatchingConfig
from baselines.discrete_adjoint import DiscreteAdjoint, DiscreteAdjointConfig
from baselines.dpo import DPOConfig, OnlineDPO
from baselines.draft import DRaFT, DRaFTConfig
from baselines.grpo import FlowGRPO, GRPOConfig, group_advantages
from baselines.refl import ReFL, ReFLConfig

D, B = 2, 6


def reward(x):
    return -((x - 0.3) ** 2).sum(-1) + torch.sin(x).sum(-1)


def setup(schedule=None, lam=1.3, seed=0):
    torch.manual_seed(seed)
    base = TimeMLP(D, 16, 2, time_features=2).double().requires_grad_(False)
    model = TimeMLP(D, 16, 2, time_features=2).double()
    model.load_state_dict(base.state_dict())
    with torch.no_grad():  # a model near, but not at, the base
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    prob = FineTuningProblem(
        base=base,
        reward=reward,
        schedule=schedule or FlowMatchingSchedule(),
        sample_shape=(D,),
        reward_scale=lam,
    )
    return model, prob


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def gen(seed=3):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("schedule", [FlowMatchingSchedule(), LinearVPSchedule()], ids=repr)
def test_discrete_adjoint_gradient_is_derivative_of_soc_objective(schedule):
    model, prob = setup(schedule)
    method = DiscreteAdjoint(DiscreteAdjointConfig(num_steps=6), prob)
    method.loss(model, batch_size=B, generator=gen()).loss.backward()
    g = grads(model)
    direction = torch.randn_like(g)
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    def J(vec):
        torch.nn.utils.vector_to_parameters(vec, model.parameters())
        with torch.no_grad():
            return method.objective(model, batch_size=B, generator=gen())[0].mean()

    eps = 1e-6
    fd = (J(flat + eps * direction) - J(flat - eps * direction)) / (2 * eps)
    torch.nn.utils.vector_to_parameters(flat, model.parameters())
    torch.testing.assert_close(torch.dot(g, direction), fd, rtol=1e-6, atol=1e-9)


def test_discrete_adjoint_checkpointing_gives_the_same_gradient():
    out = []
    for ckpt in (False, True):
        model, prob = setup()
        DiscreteAdjoint(DiscreteAdjointConfig(num_steps=5, checkpoint=ckpt), prob).loss(
            model, batch_size=B, generator=gen()
        ).loss.backward()
        out.append(grads(model))
    torch.testing.assert_close(out[0], out[1], rtol=1e-10, atol=1e-12)


def test_control_cost_is_half_h_u_squared_for_euler_maruyama():
    model, prob = setup()
    K = 5
    method = DiscreteAdjoint(DiscreteAdjointConfig(num_steps=K), prob)
    with torch.no_grad():
        _, _, cost = method.objective(model, batch_size=B, generator=gen())
        g = gen()
        x0 = torch.randn(B, D, generator=g, dtype=torch.float64)
        sched, times = prob.schedule, uniform_grid(K, dtype=torch.float64)
        diffusion = MemorylessDiffusion(sched)
        traj = simulate(model, x0, schedule=sched, times=times, diffusion=diffusion, generator=g)
        expected = torch.zeros(B, dtype=torch.float64)
        for k in range(K):
            x, t = traj.states[k], times[k].expand(B)
            u = control_coefficient(sched(times[k]), traj.sigmas[k]) * (
                model(x, t) - prob.base(x, t)
            )
            expected += 0.5 * (times[k + 1] - times[k]) * (u**2).sum(-1)
    torch.testing.assert_close(cost, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("schedule", [FlowMatchingSchedule(), LinearVPSchedule()], ids=repr)
@pytest.mark.parametrize("warp", [0.0, 0.6], ids=["uniform", "warped"])
def test_basic_adjoint_matching_gradient_equals_twice_the_discrete_adjoints(
    schedule, warp, monkeypatch
):
    """With every step in the loss and uniform weights, the basic AM loss is
    ``sum_k h_k |u_k + sigma_k a~_{k+1}|^2`` whose gradient is ``2 sum_k h_k <du_k, u_k +
    sigma_k a~_{k+1}>``, and the discrete adjoint's ``dJ = sum_k h_k <du_k, u_k + sigma_k
    a~_{k+1}>``; on a warped grid the loss's ``h_k / mean(h)`` weights keep the identity."""
    K = 6
    model, prob = setup(schedule)
    # the discrete adjoint baseline on the same warped grid
    monkeypatch.setattr(
        "baselines.discrete_adjoint.uniform_grid",
        lambda k, **kw: warped_grid(k, warp, **kw),
    )
    DiscreteAdjoint(DiscreteAdjointConfig(num_steps=K), prob).loss(
        model, batch_size=B, generator=gen()
    ).loss.backward()
    g_discrete = grads(model)
    model.zero_grad()
    cfg = BasicAdjointMatchingConfig(
        num_steps=K, steps=StepSubset("all"), weighting="uniform", grid_warp=warp
    )
    BasicAdjointMatching(cfg, prob).loss(model, batch_size=B, generator=gen()).loss.backward()
    torch.testing.assert_close(grads(model), 2 * g_discrete, rtol=1e-8, atol=1e-10)
    # the lean adjoint drops the u terms: a different (biased per path) gradient away from u = 0
    model.zero_grad()
    lean = AdjointMatchingConfig(
        num_steps=K, steps=StepSubset("all"), weighting="uniform", grid_warp=warp
    )
    AdjointMatching(lean, prob).loss(model, batch_size=B, generator=gen()).loss.backward()
    assert (grads(model) - 2 * g_discrete).norm() > 1e-3 * g_discrete.norm()


class Recorder(torch.nn.Module):
    """Wraps a velocity model and records, per call, the time and whether a graph is built."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x, t):
        self.calls.append((float(t[0]), torch.is_grad_enabled()))
        return self.inner(x, t)


@pytest.mark.parametrize("grad_steps", [1, 3, 5])
def test_draft_gradient_flows_only_through_the_last_k_steps(grad_steps):
    model, prob = setup()
    rec = Recorder(model)
    DRaFT(DRaFTConfig(num_steps=5, grad_steps=grad_steps), prob).loss(
        rec, batch_size=B, generator=gen()
    ).loss.backward()
    assert [g for _, g in rec.calls] == [False] * (5 - grad_steps) + [True] * grad_steps
    assert [t for t, _ in rec.calls] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


def test_draft1_gradient_is_the_last_step_replayed_from_simulate():
    model, prob = setup()
    K, lam = 5, prob.reward_scale
    DRaFT(DRaFTConfig(num_steps=K, grad_steps=1), prob).loss(
        model, batch_size=B, generator=gen()
    ).loss.backward()
    g_draft = grads(model)
    model.zero_grad()
    g = gen()
    x0 = torch.randn(B, D, generator=g, dtype=torch.float64)
    times = uniform_grid(K, dtype=torch.float64)
    traj = simulate(
        model,
        x0,
        schedule=prob.schedule,
        times=times,
        diffusion=ConstantDiffusion(0.0),
        generator=g,
    )
    x = traj.states[K - 1]
    x1 = x + (times[K] - times[K - 1]) * model(x, times[K - 1].expand(B))  # Euler on the ODE
    torch.testing.assert_close(x1.detach(), traj.final)
    (-lam * reward(x1).mean()).backward()
    torch.testing.assert_close(g_draft, grads(model), rtol=1e-10, atol=1e-12)


def test_refl_loss_is_reward_of_one_step_prediction_in_the_window():
    model, prob = setup()
    cfg = ReFLConfig(num_steps=8, window_start=0.5)
    seen = set()
    for seed in range(12):
        out = ReFL(cfg, prob).loss(model, batch_size=B, generator=gen(seed))
        k = int(out.metrics["stop_step"])
        seen.add(k)
        g = gen(seed)
        x0 = torch.randn(B, D, generator=g, dtype=torch.float64)
        times = uniform_grid(8, dtype=torch.float64)
        with torch.no_grad():
            traj = simulate(
                model,
                x0,
                schedule=prob.schedule,
                times=times,
                diffusion=ConstantDiffusion(0.0),
                generator=g,
            )
            x = traj.states[k]
            x1_hat = endpoint_from_velocity(
                prob.schedule(times[k]), x, model(x, times[k].expand(B))
            )
        torch.testing.assert_close(out.loss.detach(), -prob.reward_scale * reward(x1_hat).mean())
    assert seen <= set(range(4, 8)) and len(seen) > 1


def test_dpo_is_log2_at_the_base_and_moves_towards_winners():
    model, prob = setup()
    model.load_state_dict(prob.base.state_dict())
    method = OnlineDPO(DPOConfig(num_steps=6, beta=5.0), prob)
    out = method.loss(model, batch_size=64, generator=gen())
    torch.testing.assert_close(out.loss.detach(), torch.log(torch.tensor(2.0, dtype=torch.float64)))
    out.loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(1e-3 * p.grad)
        after = method.loss(model, batch_size=64, generator=gen())
    assert after.loss < out.loss  # the same pairs, noises and times: the margin grew


def test_grpo_policy_gradient_matches_torch_distributions():
    model, prob = setup()
    cfg = GRPOConfig(num_steps=4, group_size=3, kl_coeff=0.0, clip_range=0.5)
    FlowGRPO(cfg, prob).loss(model, batch_size=B, generator=gen()).loss.backward()
    g_grpo = grads(model)
    model.zero_grad()
    g = gen()
    x0 = torch.randn(B, D, generator=g, dtype=torch.float64)
    times = uniform_grid(4, dtype=torch.float64)
    diffusion = ScaledDiffusion(MemorylessDiffusion(prob.schedule), 0.7 / 2**0.5)
    traj = simulate(
        model, x0, schedule=prob.schedule, times=times, diffusion=diffusion, generator=g
    )
    adv = group_advantages(reward(traj.final), 3, 5.0)
    r = reward(traj.final).reshape(2, 3)
    torch.testing.assert_close(
        adv.reshape(2, 3), (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)
    )
    logp = 0.0
    for k in range(4):
        sv, t = prob.schedule(times[k]), times[k].expand(B)
        h, sigma = times[k + 1] - times[k], traj.sigmas[k]
        v = model(traj.states[k], t)
        score = (sv.alpha * v - sv.d_alpha * traj.states[k]) / sv.eta_numerator
        mean = traj.states[k] + h * (v + 0.5 * sigma**2 * score)
        dist = torch.distributions.Normal(mean, sigma * h.sqrt())
        logp = logp + (adv * dist.log_prob(traj.states[k + 1]).sum(-1)).sum()
    (-logp / (4 * B)).backward()
    torch.testing.assert_close(g_grpo, grads(model), rtol=1e-8, atol=1e-10)


def test_grpo_kl_vanishes_at_the_base():
    model, prob = setup()
    model.load_state_dict(prob.base.state_dict())
    out = FlowGRPO(GRPOConfig(num_steps=4, group_size=3), prob).loss(
        model, batch_size=B, generator=gen()
    )
    assert out.metrics["kl"] == 0.0
