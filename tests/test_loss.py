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


def _authors_rule(batches, quantile, decay=0.9):
    """The authors' per-sample dropping written out from its description: per batch, the
    quantile of sqrt(loss terms), an EMA of it (a running mean while fewer than 1/decay values
    were seen), and the mean of the terms whose root is below that EMA (dropped ones count 0)."""
    ema, updates, losses = None, 0, []
    for terms in batches:
        q = torch.quantile(terms.sqrt().flatten(), quantile).item()
        if updates == 0:
            ema = q
        elif updates < 1 / decay:
            ema = q / (updates + 1) + (1 - 1 / (updates + 1)) * ema
        else:
            ema = decay * ema + (1 - decay) * q
        updates += 1
        losses.append((terms * (terms.sqrt() < ema)).mean())
    return losses, ema


def test_quantile_drop_is_the_authors_rule_with_one_micro_batch():
    from am.distributed import SingleProcess
    from am.loss import QuantileDrop

    g = torch.Generator().manual_seed(0)
    pairs = [
        (torch.randn(4, 6, 3, generator=g, dtype=torch.float64) * s, torch.zeros(4, 6, 3))
        for s in (1.0, 3.0, 0.5, 1.0, 2.0, 1.0)
    ]
    batches = [((c - t) ** 2).sum(-1) for c, t in pairs]
    expected, ema = _authors_rule(batches, 0.9)
    drop, dropped = QuantileDrop(0.9), []
    for (c, t), want in zip(pairs, expected, strict=True):
        out = adjoint_matching_loss(c, target=t.double(), weights=torch.ones(4), drop=drop)
        drop.commit(SingleProcess())
        torch.testing.assert_close(out.loss, want, rtol=1e-12, atol=0)
        dropped.append(out.dropped_fraction)
    # the first batch is cut at its own 0.9 quantile; the small third one, under the EMA that
    # the large second one raised, keeps everything
    assert dropped[0] == pytest.approx(3 / 24) and dropped[2] == 0
    assert drop.updates == 6 and abs(drop.value - ema) < 1e-12


def test_quantile_drop_with_micro_batches_and_its_gradient():
    from am.distributed import SingleProcess
    from am.loss import QuantileDrop

    g = torch.Generator().manual_seed(1)
    drop = QuantileDrop(0.75, decay=0.5)
    drop.load_state_dict({"value": 2.0, "updates": 5})
    chunks = [torch.rand(3, 8, generator=g, dtype=torch.float64) * k for k in (4.0, 9.0, 1.0)]
    qs = [torch.quantile(c.sqrt().flatten(), 0.75).item() for c in chunks]
    for c, q in zip(chunks, qs, strict=True):
        # each micro-batch: one EMA step from the step's starting state, with its own quantile
        assert torch.equal(drop.keep(c), c.sqrt() < 0.5 * 2.0 + 0.5 * q)
    assert drop.value == 2.0  # nothing moves before the step's commit
    drop.commit(SingleProcess())
    value = 2.0
    for q in qs:  # then the EMA advances by every micro-batch, in order
        value = 0.5 * value + 0.5 * q
    assert drop.updates == 8 and abs(drop.value - value) < 1e-12
    # a dropped term carries no gradient
    control = torch.tensor([[[0.1], [5.0], [0.2], [0.3]]], requires_grad=True)
    out = adjoint_matching_loss(
        control, target=torch.zeros(1, 4, 1), weights=torch.ones(1), drop=QuantileDrop(0.5)
    )
    out.loss.backward()
    assert out.dropped_fraction == 0.5  # threshold: the median root (0.25); 0.3 and 5.0 go
    assert control.grad[0, :, 0].tolist() == pytest.approx([0.05, 0.0, 0.1, 0.0])


def test_quantile_drop_lets_non_finite_losses_through_and_checks_its_settings():
    from am.loss import QuantileDrop
    from am.methods import AdjointMatchingConfig

    terms = torch.tensor([[1.0, float("nan")]])
    assert QuantileDrop(0.9).keep(terms).all()  # the loss stays NaN: the trainer stops
    with pytest.raises(ValueError, match="drop quantile must be in"):
        AdjointMatchingConfig(drop_quantile=0.0)
    with pytest.raises(ValueError, match="drop EMA decay must be in"):
        AdjointMatchingConfig(drop_quantile=0.9, drop_ema_decay=1.0)
