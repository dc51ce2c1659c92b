"""The digits benchmark's data, networks, UNet adapter and pretraining cache."""

import pytest
import torch

import am
from am.conditions import ClassLabels
from am.models.unet import UNetVelocity, digits_unet, load_unet
from am.problems.digits import ClassifierReward, DigitsCNN, load_digits_splits
from am.problems.digits_pretrain import PretrainConfig, digits_assets

pytest.importorskip("sklearn")
pytest.importorskip("diffusers")

TINY = PretrainConfig(flow_steps=4, flow_batch=16, channels=(8, 16), classifier_steps=4)


def _rows(x):
    return {tuple(r.flatten().tolist()) for r in x}


def test_split_is_fixed_stratified_and_disjoint():
    s, again = load_digits_splits(), load_digits_splits()
    assert {k: len(v) for k, v in s.items()} == {
        "test": 400, "flow": 1397, "reward": 701, "heldout": 696,
    }  # fmt: skip
    assert torch.equal(s["test"].images, again["test"].images)
    assert (s["test"].labels.bincount() == 40).all()
    for v in s.values():
        assert v.images.shape[1:] == (1, 8, 8) and v.images.min() == -1 and v.images.max() == 1
    # the load_digits images hold a few exact duplicates; compare by position instead of value
    assert len(_rows(s["reward"].images) & _rows(s["heldout"].images)) <= 5
    assert len(s["reward"]) + len(s["heldout"]) == len(s["flow"])
    assert len(_rows(s["test"].images) & _rows(s["flow"].images)) <= 5


def test_classifier_reward_is_log_probability_with_exact_gradient():
    torch.manual_seed(0)
    reward = ClassifierReward(DigitsCNN().double(), temperature=3.0)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 4, 9])
    r = reward(x, labels)
    expected = torch.log_softmax(reward.classifier(x) / 3.0, -1)[torch.arange(3), labels]
    torch.testing.assert_close(r, expected)
    assert torch.autograd.gradcheck(lambda x: reward(x, labels), (x,))
    assert not any(p.requires_grad for p in reward.parameters())
    with pytest.raises(ValueError, match="temperature"):
        ClassifierReward(DigitsCNN(), temperature=0.0)


def test_unet_velocity_round_trips_through_save_pretrained(tmp_path):
    torch.manual_seed(0)
    v = UNetVelocity(digits_unet((8, 16)))
    x, t, c = torch.randn(4, 1, 8, 8), torch.rand(4), torch.tensor([0, 3, 10, 9])
    out = v(x, t, c)
    assert out.shape == x.shape
    v.unet.save_pretrained(tmp_path / "unet")
    loaded = UNetVelocity(load_unet(tmp_path / "unet"))
    torch.testing.assert_close(loaded(x, t, c), out, rtol=0, atol=0)
    assert not torch.allclose(v(x, t, torch.tensor([1, 3, 10, 9])), out)  # labels reach it
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_unet(tmp_path / "nowhere")


def test_assets_are_trained_once_then_loaded(tmp_path):
    a = digits_assets(tmp_path, TINY)
    assert set(a.accuracy) == {"reward_cnn", "heldout_mlp", "embedding"}
    files = {p.name for p in tmp_path.iterdir()}
    assert {"reward_cnn.safetensors", "heldout_mlp.safetensors", "base_unet"} <= files
    b = digits_assets(tmp_path, TINY)
    x, t, c = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([1, 2])
    torch.testing.assert_close(a.base(x, t, c), b.base(x, t, c), rtol=0, atol=0)
    torch.testing.assert_close(a.reward(x, c), b.reward(x, c), rtol=0, atol=0)
    with pytest.raises(ValueError, match="another pretraining config"):
        digits_assets(tmp_path, PretrainConfig(flow_steps=5, channels=(8, 16)))


def test_loading_the_cache_writes_nothing(tmp_path):
    """Many workflow jobs load the cache at once: loading must not rewrite any of its files."""
    digits_assets(tmp_path, TINY)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    digits_assets(tmp_path, TINY)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before


def test_image_statistics_and_the_seed_standard_error():
    from am.problems.digits_eval import image_statistics, seeds_stderr

    x = torch.full((2, 1, 8, 8), -1.0)
    x[0, 0, 0, :4] = torch.tensor([1.0, 1.05, 1.1, 0.5])  # two in range, one beyond, one ink
    x[1, 0, 0, 0] = -1.2
    stats = image_statistics(x)
    assert stats[0].tolist() == pytest.approx([(-60 + 1 + 1.05 + 1.1 + 0.5) / 64, 1 / 64, 4 / 64])
    assert stats[1].tolist() == pytest.approx([(-63 - 1.2) / 64, 1 / 64, 0.0])
    # one seed: its sampling error; two that agree: not below the sampling error; two that
    # disagree: their spread
    assert seeds_stderr([1.0], [0.3]) == pytest.approx(0.3)
    assert seeds_stderr([1.0, 1.0], [0.3, 0.4]) == pytest.approx((0.125 / 2) ** 0.5)
    assert seeds_stderr([0.0, 2.0], [0.1, 0.1]) == pytest.approx(1.0)


def test_adjoint_matching_runs_on_the_digits_unet(tmp_path):
    a = digits_assets(tmp_path, TINY)
    fm = am.FlowMatchingSchedule()
    result = am.finetune(
        a.base, a.reward, schedule=fm, sample_shape=(1, 8, 8), reward_scale=2.0,
        conditions=ClassLabels(10), config={"num_steps": 4},
        train=am.TrainConfig(iterations=2, batch_size=10), progress=False,
    )  # fmt: skip
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    moved = [
        (p - q).abs().max()
        for p, q in zip(result.model.parameters(), a.base.parameters(), strict=True)
    ]
    assert max(moved) > 0


def test_reference_at_lambda_zero_is_the_plain_average(tmp_path):
    """With ``lambda = 0`` every importance weight is equal: the reference is the base samples'
    own scores (equal counts per class, so class-averaged = pooled)."""
    from am.problems.digits_eval import generate, scores, tilted_reference

    a = digits_assets(tmp_path, TINY)
    x, labels = generate(a.base, per_class=6, num_steps=3, diffusion="memoryless", seed=0)
    ref, plain = tilted_reference(x, labels, a, 0.0), scores(x, labels, a)
    assert ref["ess_min"] == pytest.approx(6) and ref["n_per_class"] == 6
    for key in (
        "reward",
        "heldout",
        "heldout_acc",
        "diversity",
        "pixel_mean",
        "out_of_range",
        "ink",
    ):
        assert ref[key] == pytest.approx(plain[key], rel=1e-5), key
    tilted = tilted_reference(x, labels, a, 5.0)
    assert tilted["reward"] > ref["reward"] and tilted["ess_min"] < 6
