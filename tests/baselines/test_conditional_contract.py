"""Every registered method on a conditional problem: conditions reach the model, the base and
the reward, row by row.

The row check: three classes whose bases sit 50 apart in 1-D (``N(50 c, 0.5^2)``). Under the
flow-matching path, a state of class ``c`` at time ``t`` lies within a few units of ``50 c t``,
and a terminal sample within a few units of ``50 c``. The model, the base and the reward are
wrapped in checks that raise when a row's state is far from where its condition says it should
be, so a method that hands any row the condition of another row (a mixed-up tile, a shuffled
group) fails here, in whichever call it happens.
"""

import pytest
import torch
from torch import nn

import am.conditions
from am.conditions import ClassLabels
from am.methods import FineTuningProblem
from am.models import ResidualVelocity, TimeMLP
from am.problems import GaussianMixture, GaussianMixtureVelocity, PerClass
from am.rewards import QuadraticReward
from am.schedules import FlowMatchingSchedule
from baselines.registry import METHODS, make_method, method_class

SEP, TOL = 50.0, 10.0
BATCH = 16  # a multiple of GRPO's group size and even (DPO pairs)


class RowCheck(nn.Module):
    """``f(x, [t,] labels)`` after checking every row of ``x`` is near ``50 label t`` (near
    ``50 label`` for a reward, which has no ``t``)."""

    def __init__(self, f: nn.Module):
        super().__init__()
        self.f = f
        self.calls = 0

    def forward(self, x, *rest):
        *t, labels = rest
        where = SEP * labels.to(x.dtype) * (t[0].to(x.dtype) if t else 1.0)
        off = (x.flatten(1) - where[:, None]).abs().max()
        if off > TOL:
            raise AssertionError(f"a row is {float(off):.1f} from its condition's place")
        self.calls += 1
        return self.f(x, *rest)


def conditional_problem(schedule=None):
    schedule = schedule or FlowMatchingSchedule()
    bases = [GaussianMixture.isotropic(torch.tensor([[SEP * c]]), 0.5) for c in range(3)]
    base = RowCheck(PerClass([GaussianMixtureVelocity(b, schedule) for b in bases]))
    reward = RowCheck(
        PerClass([QuadraticReward(torch.tensor([SEP * c + 1.0]), torch.eye(1)) for c in range(3)])
    )
    return base, reward, schedule


def build(name, seed=0, conditions=None, **config):
    torch.manual_seed(seed)
    base, reward, schedule = conditional_problem()
    prob = FineTuningProblem(
        base=base,
        reward=reward,
        schedule=schedule,
        sample_shape=(1,),
        reward_scale=1.0,
        conditions=conditions or ClassLabels(3),
    )
    net = RowCheck(TimeMLP(1, 16, 2, time_features=2, num_classes=3))
    model = ResidualVelocity(base, net)
    cfg = method_class(name).config_class(**config)
    return model, make_method(name, cfg, prob), base, reward


@pytest.mark.parametrize("name", sorted(METHODS))
def test_conditions_reach_model_base_and_reward_row_by_row(name):
    model, method, base, reward = build(name)
    out = method.loss(model, batch_size=BATCH, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    embed = model.net.f.embed.weight.grad
    assert embed is not None and torch.isfinite(embed).all() and embed.abs().sum() > 0
    assert model.net.calls > 0 and reward.calls > 0
    assert base.calls > 0  # every method evaluates the base (as part of the residual model)


class Fixed(ClassLabels):
    """Always the same labels (in runs of ``group``), to compare a batch with its shuffle."""

    def __init__(self, labels):
        super().__init__(3)
        self.labels = labels

    def draw(self, n, generator):
        return self.labels[:n]


@pytest.mark.parametrize("name", ["adjoint_matching", "grpo", "dpo", "draft_lv"])
def test_row_check_catches_a_mixed_up_tile(name, monkeypatch):
    """The check above can fail: conditions spread by ``repeat_interleave`` instead of tiling
    give stacked rows the wrong conditions."""

    def interleaved(cond, n):
        b = cond.shape[0]
        return cond if b == n else cond.repeat_interleave(n // b)

    monkeypatch.setattr(am.conditions, "tile", interleaved)
    # two GRPO groups (of 16) with different labels; every other method sees 0, 1, 2, 0, ...
    model, method, _, _ = build(name, conditions=Fixed(torch.arange(64) % 3))
    with pytest.raises(AssertionError, match="from its condition's place"):
        method.loss(model, batch_size=2 * BATCH, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_shuffled_conditions_change_the_loss(name):
    labels = torch.arange(BATCH) % 3
    losses = []
    for cond in (labels, labels.roll(2)):  # a permutation that moves the first row too
        model, method, _, _ = build(name, conditions=Fixed(cond))
        out = method.loss(model, batch_size=BATCH, generator=torch.Generator().manual_seed(0))
        losses.append(float(out.loss.detach()))
    assert losses[0] != losses[1]
