"""The Adjoint Matching loss: step subsets, clipping, weighting, stop-gradient."""

import pytest
import torch

from am.loss import StepSubset, adjoint_matching_loss


def test_step_subsets():
    g = torch.Generator().manual_seed(0)
    assert StepSubset("all").select(7).tolist() == list(range(7))
    sel = StepSubset("paper").select(40, g)  # 10 random of the first 30, plus the last 10
    assert sel.numel() == 20 and sel.unique().numel() == 20
    assert (sel[:10] < 30).all() and sel[10:].tolist() == list(range(30, 40))
    u = StepSubset("uniform", num_steps=5).select(40, g)
    assert u.numel() == 5 and (u[1:] > u[:-1]).all()
    assert StepSubset("paper").select(4, g).tolist() == [0, 1, 2, 3]  # small K: never out of range
    # start: the steps below it never enter the loss, in every mode
    assert StepSubset("all", start=1).select(5).tolist() == [1, 2, 3, 4]
    assert (StepSubset("uniform", num_steps=39, start=1).select(40, g) >= 1).all()
    assert StepSubset("paper", start=2).select(40, g)[-10:].tolist() == list(range(30, 40))
    with pytest.raises(ValueError, match="start"):
        StepSubset("all", start=5).select(5)
    with pytest.raises(ValueError, match="start"):
        StepSubset("all", start=-1)
    with pytest.raises(ValueError, match="mode"):
        StepSubset("some")
    with pytest.raises(ValueError, match="early_fraction"):
        StepSubset("paper", early_fraction=0.0)


def test_loss_value_and_gradient_match_hand_computation():
    control = torch.randn(3, 4, 2, requires_grad=True)
    target = torch.randn(3, 4, 2, requires_grad=True)
    w = torch.tensor([1.0, 2.0, 0.5])
    out = adjoint_matching_loss(control, target=target, weights=w)
    manual = (w[:, None] * ((control - target) ** 2).sum(-1)).mean()
    torch.testing.assert_close(out.loss, manual)
    out.loss.backward()
    assert target.grad is None  # the target is a constant (stop-gradient)
    torch.testing.assert_close(
        control.grad, 2 * w[:, None, None] * (control - target).detach() / 12
    )


def test_clipping_drops_large_terms_from_the_gradient():
    control = torch.zeros(1, 3, 1, requires_grad=True)
    target = torch.tensor([[[0.5], [1.0], [10.0]]])
    out = adjoint_matching_loss(control, target=target, weights=torch.ones(1), clip=2.0)
    out.loss.backward()
    assert out.clipped_fraction == pytest.approx(1 / 3)
    assert control.grad[0, 2, 0] == 0 and control.grad[0, 0, 0] != 0
    torch.testing.assert_close(out.loss, torch.tensor((0.25 + 1.0 + 2.0) / 3))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differ"):
        adjoint_matching_loss(
            torch.zeros(2, 3, 1), target=torch.zeros(2, 3, 2), weights=torch.ones(2)
        )
