"""One contract every registered method satisfies (issue: baselines under one interface).

Parametrised over ``baselines.registry.METHODS`` and two schedules (flow matching, VP): builds
from its default config, the loss is finite, backward reaches the trainable parameters, one
optimiser step changes them, the config round-trips through YAML, and an interrupted run resumes
to the same parameters as an uninterrupted one.
"""

import pytest
import torch
import yaml

from am.methods import FineTuningProblem
from am.models import ResidualVelocity, TimeMLP
from am.problems.benchmarks import make_problem
from am.schedules import make_schedule
from am.train import TrainConfig, Trainer
from amcli.config import ConfigError, parse_run_config, run_config_to_dict
from baselines.registry import METHODS, make_method, method_class

SCHEDULES = ["flow_matching", "vp_linear"]
BATCH = 16  # a multiple of GRPO's default group size and even (DPO pairs)


def build(name, schedule="flow_matching", seed=0, **config):
    torch.manual_seed(seed)
    gt = make_problem("gmm1d_linear", make_schedule(schedule), 1.0)
    prob = FineTuningProblem(
        base=gt.velocity,
        reward=gt.reward,
        schedule=gt.schedule,
        sample_shape=(1,),
        reward_scale=1.0,
    )
    net = TimeMLP(1, 16, 2, time_features=2)  # not zero-initialised: every loss has a gradient
    model = ResidualVelocity(gt.velocity, net)
    cfg = method_class(name).config_class(**config)
    return model, make_method(name, cfg, prob)


def params(model):
    return torch.cat([p.detach().flatten() for p in model.net.parameters()])


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_backward_and_step(name, schedule):
    model, method = build(name, schedule)
    assert method.name == name
    out = method.loss(model, batch_size=BATCH, generator=torch.Generator().manual_seed(0))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert all(isinstance(v, float) for v in out.metrics.values())
    assert "reward" in out.metrics
    out.loss.backward()
    grads = [p.grad for p in model.net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in model.base.parameters())
    before = params(model)
    torch.optim.Adam(model.net.parameters(), lr=1e-2).step()
    assert not torch.equal(before, params(model))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_config_yaml_round_trip(name):
    cfg = parse_run_config({"method": {"name": name}})
    text = yaml.safe_dump(run_config_to_dict(cfg), sort_keys=False)
    again = parse_run_config(yaml.safe_load(text))
    assert again == cfg
    assert again.method_config == method_class(name).config_class()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_resume_equals_uninterrupted(name, tmp_path):
    train = TrainConfig(iterations=4, batch_size=BATCH, lr=1e-2, checkpoint_every=1)
    model, method = build(name, num_steps=4)
    Trainer(method, model, train, tmp_path / "a").fit(progress=False)
    m2, method2 = build(name, num_steps=4)
    Trainer(method2, m2, train, tmp_path / "b").fit(progress=False, until=2)
    m3, method3 = build(name, seed=5, num_steps=4)  # a different init: the checkpoint wins
    tr = Trainer(method3, m3, train, tmp_path / "b")
    tr.fit(progress=False)
    assert tr.iteration == 4
    torch.testing.assert_close(params(m3), params(model), rtol=0, atol=0)


def test_batch_constraints_are_named():
    _, dpo = build("dpo")
    with pytest.raises(ValueError, match="even batch_size"):
        dpo.loss(build("dpo")[0], batch_size=7, generator=torch.Generator())
    model, grpo = build("grpo")
    with pytest.raises(ValueError, match="divisible by group_size"):
        grpo.loss(model, batch_size=20, generator=torch.Generator())


def test_unknown_method_lists_valid_choices():
    with pytest.raises(ConfigError, match="method.name: unknown method 'drift'; valid:.*draft"):
        parse_run_config({"method": {"name": "drift"}})
    with pytest.raises(ValueError, match="valid: .*adjoint_matching"):
        method_class("nope")


@pytest.mark.parametrize(
    "method, key",
    [
        ({"name": "draft", "grad_steps": 0}, "grad_steps"),
        ({"name": "draft", "num_steps": 4, "grad_steps": 5}, "grad_steps"),
        ({"name": "draft_lv", "num_draws": -1}, "num_draws"),
        ({"name": "refl", "window_start": 1.5}, "window_start"),
        ({"name": "dpo", "beta": 0}, "beta"),
        ({"name": "grpo", "group_size": 1}, "group_size"),
        ({"name": "grpo", "noise_level": "loud"}, "noise_level"),
        ({"name": "discrete_adjoint", "stepper": "rk4"}, "stepper"),
        ({"name": "basic_adjoint_matching", "adjoint": "lean"}, "adjoint"),
        ({"name": "am_constant_sigma", "diffusion": "memoryless"}, "diffusion"),
        ({"name": "adjoint_matching", "frobnicate": 1}, "frobnicate"),
    ],
)
def test_invalid_method_config_names_the_key(method, key):
    with pytest.raises(ConfigError, match=key):
        parse_run_config({"method": method})
