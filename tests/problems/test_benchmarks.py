"""Every registered ground-truth problem: its closed-form target is the reward tilt of its base,
checked by self-normalised importance sampling from the base (independent of the tilt formulas)."""

from __future__ import annotations

import pytest
import torch

from am.problems.benchmarks import PROBLEMS, make_problem
from am.schedules import FlowMatchingSchedule


@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("reward_scale", [1.0, 2.0])
def test_target_is_the_tilt_of_the_base(name, reward_scale):
    gt = make_problem(name, FlowMatchingSchedule(), reward_scale)
    assert gt.name == name and gt.target.dim == gt.base.dim == gt.dim
    x = gt.base.sample(400_000, generator=torch.Generator().manual_seed(0)).double()
    w = torch.softmax(reward_scale * gt.reward(x).double(), 0)
    ess = 1.0 / (w * w).sum()
    assert ess > 1000  # the check below has power
    target = gt.target.to(dtype=torch.float64)
    se = (torch.diagonal(target.covariance()) / ess).sqrt()
    assert ((w @ x - target.mean()).abs() < 5 * se).all()
    # mode weights: E_tilt[p(i | X)] = w_i, so the tilted occupancy is the target's weights
    occ = w @ target.responsibilities(x)
    assert torch.allclose(occ, target.weights, atol=5 / ess.sqrt())
