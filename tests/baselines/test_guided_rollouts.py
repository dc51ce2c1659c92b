"""``rollout_guidance`` for every method whose rollouts are samples: guidance changes the
rollouts and only the rollouts.

The reference is a hand-computed guided velocity, ``v_null + w (v_cond - v_null)`` from two
separate calls of the network (:class:`HandGuided`), independent of
:class:`am.models.GuidedVelocity`'s one batched call. On a tiny class-conditional problem:

- DRaFT, DRaFT-LV, ReFL and GRPO evaluate the velocity only as steps of their sampler (GRPO's
  log-likelihoods and KL are those of the guided policy and guided base, as Flow-GRPO's
  ``train.cfg``), so the guided loss equals the unguided loss of the hand-guided model (and
  base), value and gradient;
- DPO's samples are guided and its denoising errors are not: the guided loss equals the
  unguided preference loss on hand-guided samples;
- Adjoint Matching (the same switch, for comparison): the stored rollouts equal those of the
  hand-guided model, and the regression is the unguided one.
"""

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from am.conditions import ClassLabels
from am.methods import FineTuningProblem
from am.models import TimeMLP
from am.schedules import FlowMatchingSchedule
from baselines.registry import METHODS, make_method, method_class

ROOT = Path(__file__).resolve().parents[2]
W, NULL, B = 3.0, 3, 16  # batch: even (DPO pairs) and a multiple of the GRPO group below
CENTRES = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
SMALL = {  # short grids keep each case well under a second
    "draft": {"num_steps": 6, "grad_steps": 2},
    "draft_lv": {"num_steps": 6, "diffusion": 0.5},
    "refl": {"num_steps": 6},
    "dpo": {"num_steps": 6},
    "grpo": {"num_steps": 6, "group_size": 4},
}


class HandGuided(nn.Module):
    """``v(x, t, null) + w (v(x, t, c) - v(x, t, null))`` from two calls of ``net``."""

    def __init__(self, net: nn.Module, w: float):
        super().__init__()
        self.net, self.w = net, w

    def forward(self, x, t, cond):
        v_cond = self.net(x, t, cond)
        v_null = self.net(x, t, torch.full_like(cond, NULL))
        return v_null + self.w * (v_cond - v_null)


def reward(x, labels):
    return -(x - CENTRES[labels]).pow(2).sum(-1)


def nets():
    torch.manual_seed(0)
    base = TimeMLP(2, 16, 2, time_features=2, num_classes=3).requires_grad_(False)
    model = TimeMLP(2, 16, 2, time_features=2, num_classes=3)  # != base: GRPO's KL is not 0
    return base, model


def problem(base, null="default", conditions=True):
    return FineTuningProblem(
        base=base,
        reward=reward,
        schedule=FlowMatchingSchedule(),
        sample_shape=(2,),
        reward_scale=1.0,
        conditions=ClassLabels(3) if conditions else None,
        null_condition=torch.tensor([NULL]) if null == "default" else null,
    )


def method(name, base, w, **kw):
    cfg = method_class(name).config_class(**SMALL.get(name, {}), rollout_guidance=w, **kw)
    return make_method(name, cfg, problem(base))


def loss_and_grads(m, model, trained):
    out = m.loss(model, batch_size=B, generator=torch.Generator().manual_seed(1))
    out.loss.backward()
    grads = [p.grad.clone() for p in trained.parameters()]
    trained.zero_grad()
    return out, grads


def test_every_sampling_method_has_the_switch():
    """A new method decides: the switch, or a place in this list with its reason."""
    without = {
        n
        for n, c in METHODS.items()
        if "rollout_guidance" not in c.config_class.__dataclass_fields__
    }
    # the discrete adjoint optimises the SOC objective of its own (unguided) path
    assert without == {"discrete_adjoint"}


@pytest.mark.parametrize("name", ["draft", "draft_lv", "refl", "grpo"])
def test_guided_loss_is_the_loss_of_the_hand_guided_sampler(name):
    base, model = nets()
    guided, grads = loss_and_grads(method(name, base, W), model, model)
    hand = method(name, HandGuided(base, W), 1.0)
    ref, ref_grads = loss_and_grads(hand, HandGuided(model, W), model)
    torch.testing.assert_close(guided.loss, ref.loss, rtol=1e-5, atol=1e-6)
    assert guided.metrics.keys() == ref.metrics.keys()
    for key in guided.metrics:
        assert guided.metrics[key] == pytest.approx(ref.metrics[key], rel=1e-5, abs=1e-6), key
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    unguided, _ = loss_and_grads(method(name, base, 1.0), model, model)
    # guidance does change the rollouts
    assert abs(float(unguided.loss.detach() - guided.loss.detach())) > 1e-3


def test_dpo_guides_the_samples_not_the_denoising_errors():
    base, model = nets()
    guided, grads = loss_and_grads(method("dpo", base, W), model, model)
    # the same random stream by hand: P conditions, then the rollout, then the DPO loss
    plain = method("dpo", base, 1.0)
    g = torch.Generator().manual_seed(1)
    c = plain.problem.condition(model, batch_size=B // 2, generator=g)
    x = plain.rollout(HandGuided(model, W), c.cond, B, g).final
    ref = plain.preference_loss(c, x, generator=g)  # c: unguided model and base
    ref.loss.backward()
    torch.testing.assert_close(guided.loss, ref.loss, rtol=1e-5, atol=1e-6)
    assert guided.metrics["reward"] == pytest.approx(ref.metrics["reward"], rel=1e-5)
    for g_, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g_, p.grad, rtol=1e-4, atol=1e-6)
    # guiding the denoising errors too would be another loss
    everywhere = method("dpo", HandGuided(base, W), 1.0)
    other, _ = loss_and_grads(everywhere, HandGuided(model, W), model)
    assert abs(float(other.loss.detach() - guided.loss.detach())) > 1e-3


def test_adjoint_matching_guides_the_rollouts_only():
    base, model = nets()
    guided = method("adjoint_matching", base, W, num_steps=6)
    stored = guided.collect(model, batch_size=B, generator=torch.Generator().manual_seed(1))
    hand = method("adjoint_matching", base, 1.0, num_steps=6)
    ref = hand.collect(
        HandGuided(model, W), batch_size=B, generator=torch.Generator().manual_seed(1)
    )
    for key in ("states", "base_velocity", "target"):
        torch.testing.assert_close(getattr(stored, key), getattr(ref, key), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(guided.regress(model, stored).loss, hand.regress(model, stored).loss)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bad_guidance_is_refused_at_construction(name):
    base, _ = nets()
    with pytest.raises(ValueError, match="rollout_guidance must be a number >= 0"):
        method(name, base, -1.0)
    cfg = method_class(name).config_class(rollout_guidance=W)
    for prob in (problem(base, null=None), problem(base, conditions=False)):
        with pytest.raises(ValueError, match="rollout_guidance needs a conditional problem"):
            make_method(name, cfg, prob)


def test_text_to_image_configs_use_one_guidance_for_every_method():
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["method"]
    methods = yaml.safe_load((ROOT / "config/t2i_gpu.yaml").read_text())["t2i"]["methods"]
    for name, settings in methods.items():
        if "rollout_guidance" in method_class(name).config_class.__dataclass_fields__:
            assert settings.get("rollout_guidance") == paper["rollout_guidance"], name
