"""HPS v2 / v2.1 on a tiny open_clip model of the ViT-H-14 family, against the hpsv2 package's
scoring recipe (open_clip's eval transform on PIL images, the model's normalised features)."""

from __future__ import annotations

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from am.vision.hps import HPSv2  # noqa: E402
from am.vision.resources import MissingWeightsError  # noqa: E402
from am.vision.testing import tiny_open_clip  # noqa: E402

PROMPTS = ["a red cat", "the dog on a sofa", "x y z"]


def test_hps_equals_reference_recipe_and_has_gradients():
    from PIL import Image

    model, tokenizer = tiny_open_clip(seed=1)
    g = torch.Generator().manual_seed(0)
    uint8 = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    # hpsv2.score: preprocess_val(PIL) -> model(image, text) -> diag(image @ text.T)
    transform = open_clip.image_transform(model.visual.image_size, is_train=False)
    pixels = torch.stack([transform(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in uint8])
    with torch.no_grad():
        out = model(pixels, tokenizer(PROMPTS))
        image, text = (
            (out["image_features"], out["text_features"]) if isinstance(out, dict) else out[:2]
        )
        reference = 100 * (image @ text.T).diagonal()
    scorer = HPSv2(model, tokenizer, version="v2.1")
    images = (uint8.float() / 255).requires_grad_(True)
    scores = scorer(images, PROMPTS)
    torch.testing.assert_close(scores, reference, atol=1e-4, rtol=1e-5)
    scores.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert "v2.1" in scorer.info.version and scorer.info.name == "hpsv2.1"


def test_version_is_required_and_checked(tmp_path, monkeypatch):
    model, tokenizer = tiny_open_clip()
    with pytest.raises(TypeError):
        HPSv2(model, tokenizer)  # no default version: v2.0 and v2.1 are easy to mix up
    with pytest.raises(ValueError, match="v2.0"):
        HPSv2(model, tokenizer, version="2")
    with pytest.raises(TypeError):
        HPSv2.from_pretrained()


def test_checkpoint_round_trip_ddp_prefix_and_wrong_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    source, tokenizer = tiny_open_clip(seed=2)
    # the released files hold {"state_dict": ...}; training checkpoints add DDP's "module."
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    directory = tmp_path / "hps"
    directory.mkdir()
    torch.save({"state_dict": state, "epoch": 1}, directory / "HPS_v2_compressed.pt")
    fresh, _ = tiny_open_clip(seed=9)
    loaded = HPSv2.from_pretrained(version="v2.0", path=directory, model=fresh)
    images = torch.rand(3, 3, 32, 32)
    expected = HPSv2(source, tokenizer, version="v2.0")(images, PROMPTS)
    torch.testing.assert_close(loaded(images, PROMPTS), expected)
    # v2.1 looks for its own file
    with pytest.raises(MissingWeightsError, match="HPS_v2.1_compressed.pt"):
        HPSv2.from_pretrained(version="v2.1", path=directory, model=fresh)
    torch.save(
        {"state_dict": {"layers.0.weight": torch.zeros(1)}}, directory / "HPS_v2_compressed.pt"
    )
    with pytest.raises(ValueError, match="no open_clip CLIP state dict"):
        HPSv2.from_pretrained(version="v2.0", path=directory, model=fresh)
