"""HPS v2 / v2.1 against hpsv2's own scoring recipe, at real sizes and aspect ratios.

The reference is a transcription of hpsv2's eval transform (tgxs002/HPSv2 at 866735e):
``hpsv2/img_score.py`` lines 20-37 call ``create_model_and_transforms(...,
light_augmentation=True)``, which (``hpsv2/src/open_clip/factory.py`` lines 368-375) returns
``image_transform(..., resize_longest_max=True)``; that is (``transform.py`` lines 141-157)
RGB -> ``ToTensor()`` -> ``ResizeMaxSize(image_size, fill=0)`` -> ``Normalize(OpenAI mean/std)``,
and ``ResizeMaxSize.forward`` (``transform.py`` lines 37-49) is transcribed below. The score
(``img_score.py`` lines 76-81) is the diagonal of ``image_features @ text_features.T``.
"""

from __future__ import annotations

import pytest
import torch

open_clip = pytest.importorskip("open_clip")
TF = pytest.importorskip("torchvision.transforms.functional")

from torchvision.transforms import InterpolationMode  # noqa: E402

from am.vision.checkpoints import WeightsMismatchError  # noqa: E402
from am.vision.hps import HPSv2  # noqa: E402
from am.vision.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Preprocess  # noqa: E402
from am.vision.resources import MissingWeightsError  # noqa: E402
from am.vision.testing import TEST_SIZES, photos_at, tiny_open_clip  # noqa: E402

PROMPTS = ["a red cat", "the dog on a sofa"]


def hpsv2_transform(image_uint8: torch.Tensor, max_size: int) -> torch.Tensor:
    """hpsv2's ``preprocess_val`` on one ``[3, H, W]`` uint8 image, transcribed."""
    img = image_uint8.float() / 255  # ToTensor() of the RGB PIL image
    height, width = img.shape[1:]  # ResizeMaxSize.forward, transform.py lines 38-49
    scale = max_size / float(max(height, width))
    if scale != 1.0:
        new_size = tuple(round(dim * scale) for dim in (height, width))
        img = TF.resize(img, new_size, InterpolationMode.BICUBIC)
        pad_h = max_size - new_size[0]
        pad_w = max_size - new_size[1]
        img = TF.pad(img, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2])
    return TF.normalize(img, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


@pytest.mark.parametrize("size", TEST_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_letterbox_equals_hpsv2_transform(size):
    u8 = photos_at(*size)
    reference = torch.stack([hpsv2_transform(im, 224) for im in u8])
    ours = Preprocess(size=224, fit="pad")(u8.float() / 255)
    # both resize the float tensor with torch's antialiased bicubic: equal to rounding error
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    if size[0] != size[1]:  # the centre crop the scorer used before is far from it
        cropped = Preprocess(size=224, fit="crop")(u8.float() / 255)
        assert (cropped - reference).abs().mean() > 0.1


@pytest.mark.parametrize("size", TEST_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_scores_equal_hpsv2_recipe_per_aspect_ratio(size):
    model, tokenizer = tiny_open_clip(seed=1)
    u8 = photos_at(*size)
    pixels = torch.stack([hpsv2_transform(im, model.visual.image_size[0]) for im in u8])
    with torch.no_grad():
        out = model(pixels, tokenizer(PROMPTS))
        image, text = (
            (out["image_features"], out["text_features"]) if isinstance(out, dict) else out[:2]
        )
        reference = (image @ text.T).diagonal()  # hpsv2.score(): the raw cosine
    images = (u8.float() / 255).requires_grad_(True)
    scores = HPSv2(model, tokenizer, version="v2.1")(images, PROMPTS)
    torch.testing.assert_close(scores, 100 * reference, atol=1e-4, rtol=1e-5)
    raw = HPSv2(model, tokenizer, version="v2.1", scale="cos")(images.detach(), PROMPTS)
    torch.testing.assert_close(raw, reference, atol=1e-6, rtol=1e-5)
    scores.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_version_and_scale_are_named():
    model, tokenizer = tiny_open_clip()
    with pytest.raises(TypeError):
        HPSv2(model, tokenizer)  # no default version: v2.0 and v2.1 are easy to mix up
    with pytest.raises(ValueError, match="v2.0"):
        HPSv2(model, tokenizer, version="2")
    with pytest.raises(ValueError, match="scale"):
        HPSv2(model, tokenizer, version="v2.1", scale="x100")
    with pytest.raises(TypeError):
        HPSv2.from_pretrained()
    info = HPSv2(model, tokenizer, version="v2.1", scale="cos").info
    assert info.name == "hpsv2.1-cos" and "raw cos" in info.scale and "v2.1" in info.version
    info = HPSv2(model, tokenizer, version="v2.0").info
    assert info.name == "hpsv2.0" and info.scale.startswith("100 * cos")


def _save(directory, state, name="HPS_v2_compressed.pt"):
    directory.mkdir(exist_ok=True)
    torch.save({"state_dict": state, "epoch": 1}, directory / name)
    return directory / name


def test_checkpoint_round_trip_and_ddp_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    source, tokenizer = tiny_open_clip(seed=2)
    # the released files hold {"state_dict": ...}; training checkpoints add DDP's "module."
    _save(tmp_path / "hps", {f"module.{k}": v for k, v in source.state_dict().items()})
    fresh, _ = tiny_open_clip(seed=9)
    loaded = HPSv2.from_pretrained(version="v2.0", path=tmp_path / "hps", model=fresh)
    images = torch.rand(2, 3, 40, 24)
    expected = HPSv2(source, tokenizer, version="v2.0")(images, PROMPTS)
    torch.testing.assert_close(loaded(images, PROMPTS), expected)
    with pytest.raises(MissingWeightsError, match="HPS_v2.1_compressed.pt"):  # its own file
        HPSv2.from_pretrained(version="v2.1", path=tmp_path / "hps", model=fresh)


def _refused(tmp_path, state, *needles):
    file = _save(tmp_path / "hps", state)
    fresh, _ = tiny_open_clip(seed=9)
    with pytest.raises(WeightsMismatchError) as err:
        HPSv2.from_pretrained(version="v2.0", path=tmp_path / "hps", model=fresh)
    for needle in (str(file), "ViT-H-14", *needles):
        assert needle in str(err.value), (needle, str(err.value))


def test_refuses_missing_block(tmp_path):
    state = {k: v for k, v in tiny_open_clip()[0].state_dict().items() if "resblocks.1." not in k}
    _refused(tmp_path, state, "missing", "resblocks.1.")


def test_refuses_extra_key(tmp_path):
    state = dict(tiny_open_clip()[0].state_dict(), score_head=torch.zeros(3))
    _refused(tmp_path, state, "unexpected", "score_head")


def test_refuses_wrong_architecture(tmp_path):
    # a model of another width: every key present, the shapes differ
    other = open_clip.create_model(
        "ViT-H-14",
        pretrained=None,
        embed_dim=16,
        vision_cfg=dict(image_size=32, layers=2, width=48, head_width=8, patch_size=8),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=4, layers=2),
    )
    _refused(tmp_path, other.state_dict(), "wrong shape", "visual.")


def test_letterbox_pads_an_image_whose_long_side_is_already_224():
    """hpsv2 returns such an image unpadded (its model then fails); here it is padded with
    black on both sides, unresized."""
    u8 = photos_at(224, 160)
    ours = Preprocess(size=224, fit="pad")(u8.float() / 255)
    assert ours.shape[-2:] == (224, 224)
    normalised = TF.normalize(u8.float() / 255, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    torch.testing.assert_close(ours[..., 32:192], normalised)  # 32 columns of padding each side
    black = TF.normalize(torch.zeros(3, 224, 32), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    torch.testing.assert_close(ours[0, :, :, :32], black)
    torch.testing.assert_close(ours[0, :, :, 192:], black)
