"""Checkpoints keep the trained state, not the frozen weights; a wrong base is refused."""

import pytest
import torch
from torch import nn

from am.checkpoints import frozen_fingerprint, load_trained_state, trained_state
from am.train import Trainer, load_weights
from tests.test_train import build, params


class Adapted(nn.Module):
    """A frozen 'base' layer, a trainable adapter and a buffer."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(0)  # the same adapter every time; the base weight depends on seed
        self.base = nn.Linear(8, 8)
        with torch.no_grad():
            self.base.weight.copy_(torch.randn(8, 8, generator=torch.Generator().manual_seed(seed)))
            self.base.bias.zero_()
        self.base.requires_grad_(False)
        self.adapter = nn.Linear(8, 8)
        self.register_buffer("scale", torch.tensor(2.0))


def test_trained_state_leaves_out_the_frozen_parameters_and_keeps_buffers():
    state = trained_state(Adapted(0))
    assert sorted(state) == ["adapter.bias", "adapter.weight", "scale"]
    fp = frozen_fingerprint(Adapted(0))
    assert fp["names"] == ["base.weight", "base.bias"]
    w = Adapted(0).base.weight.double()
    torch.testing.assert_close(fp["sums"][0], torch.stack([w.sum(), w.abs().sum()]))


def test_round_trip_restores_the_trained_state_on_the_same_base():
    src = Adapted(0)
    with torch.no_grad():
        src.adapter.weight.add_(1.0)
        src.scale.fill_(3.0)
    dst = Adapted(0)
    load_trained_state(dst, trained_state(src), source="ckpt", fingerprint=frozen_fingerprint(src))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=k)


def test_another_base_is_refused_by_its_fingerprint():
    src = Adapted(0)
    with pytest.raises(ValueError, match=r"other base weights: 1 of the 2 frozen .*base\.weight"):
        load_trained_state(
            Adapted(1), trained_state(src), source="ckpt", fingerprint=frozen_fingerprint(src)
        )


def test_another_architecture_is_refused_naming_the_entries():
    class Other(Adapted):
        def __init__(self):
            super().__init__(0)
            self.head = nn.Linear(8, 2)

    with pytest.raises(ValueError, match=r"missing trained entries \['head.weight', 'head.bias'\]"):
        load_trained_state(Other(), trained_state(Adapted(0)), source="ckpt")
    with pytest.raises(ValueError, match=r"missing trained entries \['head.weight', 'head.bias'\]"):
        load_trained_state(
            Other(),
            trained_state(Adapted(0)),
            source="ckpt",
            fingerprint=frozen_fingerprint(Adapted(0)),
        )
    with pytest.raises(ValueError, match=r"unexpected entries \['head.weight', 'head.bias'\]"):
        load_trained_state(Adapted(0), trained_state(Other()), source="ckpt")
    renamed = Adapted(0)
    fp = frozen_fingerprint(renamed)
    fp["names"][0] = "stem.weight"
    with pytest.raises(ValueError, match=r"other frozen parameters .*\['stem.weight'\]"):
        load_trained_state(renamed, trained_state(renamed), source="ckpt", fingerprint=fp)


def test_the_loading_model_may_freeze_what_training_trained():
    """A run's weights load into a frozen copy (e.g. for sampling): what the checkpoint holds is
    loaded whatever the loading model's requires_grad flags."""
    src = Adapted(0)
    with torch.no_grad():
        src.adapter.weight.add_(1.0)
    dst = Adapted(0).requires_grad_(False)
    load_trained_state(dst, trained_state(src), source="ckpt", fingerprint=frozen_fingerprint(src))
    torch.testing.assert_close(dst.adapter.weight, src.adapter.weight, rtol=0, atol=0)


def test_a_full_state_dict_still_loads_frozen_weights_included():
    """Checkpoints written before the trained state existed hold every parameter."""
    src = Adapted(1)
    dst = Adapted(0)
    load_trained_state(dst, src.state_dict(), source="old checkpoint")
    torch.testing.assert_close(dst.base.weight, src.base.weight, rtol=0, atol=0)


def _freeze_first_layer(model):
    model.net.net[0].requires_grad_(False)
    return model


def test_trainer_resumes_exactly_with_a_frozen_part_and_refuses_another_base(tmp_path):
    model, method, cfg = build(checkpoint_every=1)
    _freeze_first_layer(model)
    Trainer(method, model, cfg, tmp_path / "a").fit(progress=False)

    m2, method2, _ = build(checkpoint_every=1)
    Trainer(method2, _freeze_first_layer(m2), cfg, tmp_path / "b").fit(progress=False, until=3)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert "net.net.0.weight" not in state["model"] and "net.net.2.weight" in state["model"]
    assert state["frozen"]["names"] == ["net.net.0.weight", "net.net.0.bias"]

    m3, method3, _ = build(checkpoint_every=1)
    tr = Trainer(method3, _freeze_first_layer(m3), cfg, tmp_path / "b")
    tr.fit(progress=False)
    torch.testing.assert_close(params(m3), params(model), rtol=0, atol=0)
    # the fine-tuned weights load into a freshly built model (EMA off: the raw parameters)
    fresh, _, _ = build()
    load_weights(_freeze_first_layer(fresh), tmp_path / "b" / "checkpoint.pt", ema=False)
    torch.testing.assert_close(params(fresh), params(model), rtol=0, atol=0)

    other, method4, _ = build(seed=5)  # another initialisation of the frozen layer
    with pytest.raises(ValueError, match="trained on other base weights"):
        Trainer(method4, _freeze_first_layer(other), cfg, tmp_path / "b").load_checkpoint()
    with pytest.raises(ValueError, match="trained on other base weights"):
        load_weights(_freeze_first_layer(build(seed=5)[0]), tmp_path / "b" / "checkpoint.pt")
