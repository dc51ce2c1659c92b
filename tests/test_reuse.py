"""Rollout reuse (am.reuse): one batch of rollouts serving several optimiser steps."""

import pytest
import torch

from am.methods import AdjointMatching, AdjointMatchingConfig, FineTuningProblem
from am.models import ResidualVelocity, TimeMLP
from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule
from am.train import TrainConfig, Trainer
from baselines.registry import METHODS, make_method, method_class


def build(name="adjoint_matching", seed=0, **config):
    torch.manual_seed(seed)
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    prob = FineTuningProblem(
        base=gt.velocity, reward=gt.reward, schedule=gt.schedule, sample_shape=(1,),
        reward_scale=1.0,
    )  # fmt: skip
    model = ResidualVelocity(gt.velocity, TimeMLP(1, 16, 2, time_features=2))
    cfg = method_class(name).config_class(**{"num_steps": 6, **config})
    return model, make_method(name, cfg, prob)


def params(model):
    return torch.cat([p.detach().flatten() for p in model.net.parameters()])


@pytest.mark.parametrize("control_variate", ["none", "antithetic"])
def test_loss_is_regress_of_collect_bit_for_bit(control_variate):
    model, method = build(control_variate=control_variate)
    a = method.loss(model, batch_size=8, generator=torch.Generator().manual_seed(3))
    stored = method.collect(model, batch_size=8, generator=torch.Generator().manual_seed(3))
    b = method.regress(model, stored)
    assert torch.equal(a.loss, b.loss)
    # a minibatch of every row in order is the same loss
    c = method.regress(model, stored.rows(torch.arange(8)))
    assert torch.equal(a.loss, c.loss)


def test_one_update_per_rollout_is_todays_trainer():
    train = TrainConfig(iterations=3, batch_size=8, lr=1e-2)
    m1, method1 = build()
    Trainer(method1, m1, train).fit(progress=False)
    m2, method2 = build()
    Trainer(method2, m2, TrainConfig(**{**vars(train), "updates_per_rollout": 1})).fit(
        progress=False
    )
    assert torch.equal(params(m1), params(m2))


def test_reuse_draws_one_batch_per_round_and_serves_each_rollout_equally():
    model, method = build()
    calls = []
    collect = method.collect

    def counting(*args, **kwargs):
        calls.append(1)
        return collect(*args, **kwargs)

    method.collect = counting
    train = TrainConfig(iterations=8, batch_size=8, lr=1e-2, updates_per_rollout=4, minibatch=4)
    trainer = Trainer(method, model, train)
    served = torch.zeros(8, dtype=torch.long)
    for _ in range(4):  # one round: four optimiser steps on minibatches of 4
        u = trainer.iteration % 4
        trainer.step()
        served += torch.bincount(trainer.reuse.order[u * 4 : (u + 1) * 4], minlength=8)
    assert len(calls) == 1 and (served == 2).all() and trainer.reuse.serves_per_rollout == 2
    trainer.step()  # the next round draws new rollouts
    assert len(calls) == 2


def test_reuse_resumes_mid_round_exactly(tmp_path):
    train = TrainConfig(
        iterations=6, batch_size=8, lr=1e-2, updates_per_rollout=4, minibatch=2, checkpoint_every=1
    )
    m1, method1 = build(control_variate="antithetic")
    Trainer(method1, m1, train, tmp_path / "a").fit(progress=False)
    m2, method2 = build(control_variate="antithetic")
    Trainer(method2, m2, train, tmp_path / "b").fit(progress=False, until=2)  # mid-round
    m3, method3 = build(seed=7, control_variate="antithetic")  # the checkpoint must win
    trainer = Trainer(method3, m3, train, tmp_path / "b")
    trainer.fit(progress=False)
    assert trainer.iteration == 6
    assert torch.equal(params(m3), params(m1))


@pytest.mark.parametrize("name", sorted(n for n, c in METHODS.items() if c.no_reuse_reason))
def test_methods_that_cannot_reuse_refuse_it(name):
    model, method = build(name)
    with pytest.raises(ValueError, match=f"{name} cannot reuse rollouts"):
        Trainer(method, model, TrainConfig(batch_size=16, updates_per_rollout=2))


def test_reuse_config_is_checked():
    with pytest.raises(ValueError, match="multiple of train.batch_size"):
        TrainConfig(batch_size=8, updates_per_rollout=3, minibatch=3)
    with pytest.raises(ValueError, match="minibatch"):
        TrainConfig(batch_size=8, minibatch=16)
    with pytest.raises(ValueError, match="updates_per_rollout"):
        TrainConfig(updates_per_rollout=0)
    AdjointMatching(AdjointMatchingConfig(), build()[1].problem)  # the method itself is fine
