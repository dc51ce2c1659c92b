"""The torch preprocessing against the PIL-based reference processors on real photographs
(scikit-learn's two sample photos, 427 x 640, and the same resized to every size of
:data:`am.vision.testing.TEST_SIZES`), and its exact pieces against hand computations. HPS's
letterbox is tested in ``test_hps.py``.

Measured (the tolerances below): after resizing 427 x 640 to 224 x 335 and cropping, the torch
pipeline differs from transformers' CLIP processor and from open_clip's eval transform by
0.0011 on average and 0.035 at most, in [0, 1] pixel units (1/255 = 0.0039): the PIL pipelines
round the resized image to 8 bits, torch keeps it in float. The crop offset differs between the
references themselves (floor vs round half to even), which is a one-pixel shift and a 0.12
average difference if mixed up; each scorer uses its reference's convention.
"""

from __future__ import annotations

import pytest
import torch

from am.vision.preprocess import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    Preprocess,
    center_crop,
    normalize,
    resize_shorter,
)
from am.vision.testing import TEST_SIZES, photos_at

STD = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
MEAN_TOL, MAX_TOL = 0.002, 0.05  # [0, 1] pixel units; measured 0.0011 and 0.035


@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("sklearn")
    from PIL import Image

    from am.vision.testing import real_photos

    x = real_photos()
    u8 = (x * 255).round().byte()
    return u8.float() / 255, [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in u8]


def _close_in_pixels(ours, reference):
    diff = (ours - reference).abs() * STD  # back to [0, 1] pixel units
    assert ours.shape == reference.shape == (2, 3, 224, 224)
    assert diff.mean() < MEAN_TOL and diff.max() < MAX_TOL, (diff.mean(), diff.max())


def test_matches_transformers_clip_processor(photos):
    transformers = pytest.importorskip("transformers")
    x, pil = photos
    reference = transformers.CLIPImageProcessor()(images=pil, return_tensors="pt").pixel_values
    _close_in_pixels(Preprocess(crop_offset="floor")(x), reference)
    # the other crop convention is a one-pixel shift: far outside the tolerance
    assert ((Preprocess(crop_offset="round")(x) - reference).abs() * STD).mean() > 10 * MEAN_TOL


def test_matches_open_clip_eval_transform(photos):
    open_clip = pytest.importorskip("open_clip")
    x, pil = photos
    transform = open_clip.image_transform(224, is_train=False)
    _close_in_pixels(Preprocess()(x), torch.stack([transform(im) for im in pil]))
    # portrait orientation crops the other axis
    portrait = torch.stack([transform(im.transpose(0)) for im in pil])  # FLIP_LEFT_RIGHT = 0
    _close_in_pixels(Preprocess()(x.flip(-1)), portrait)


def test_pieces_by_hand():
    x = torch.arange(2 * 3 * 5 * 8, dtype=torch.float32).reshape(2, 3, 5, 8)
    assert resize_shorter(x, 5) is x
    assert resize_shorter(x, 10).shape == (2, 3, 10, 16)
    assert resize_shorter(x.transpose(2, 3), 10).shape == (2, 3, 16, 10)
    # 8 - 5 = 3: round(1.5) = 2 (half to even), floor = 1
    torch.testing.assert_close(center_crop(x, 5), x[..., :, 2:7])
    torch.testing.assert_close(center_crop(x, 5, "floor"), x[..., :, 1:6])
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(x, 6)
    with pytest.raises(ValueError, match="offset must be"):
        center_crop(x, 5, "ceil")
    y = normalize(torch.ones(1, 3, 2, 2), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    expected = [(1 - m) / s for m, s in zip(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, strict=True)]
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor(expected))


def test_clamps_and_keeps_gradients():
    x = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)
    with torch.no_grad():
        x[0, 0, 0, 0] = 1.7  # a sampler's overshoot is clipped, as an 8-bit image would be
    out = Preprocess(size=8)(x)
    assert out.shape == (1, 3, 8, 8)
    out.sum().backward()
    assert x.grad[0, 0, 0, 0] == 0 and x.grad[0, 1].abs().sum() > 0
    unclamped = Preprocess(size=8, clamp=False)(x.detach())
    assert unclamped.max() > out.max()


def test_matches_dreamsim_resize_without_crop(photos):
    """DreamSim's preprocessing: PIL bicubic resize to 224 x 224 (no crop), ToTensor, no
    normalisation. Measured: mean 0.0011, max 0.041 (bicubic overshoot that PIL clips)."""
    transforms = pytest.importorskip("torchvision.transforms")
    x, pil = photos
    t = transforms.Compose(
        [transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BICUBIC),
         transforms.ToTensor()]
    )  # fmt: skip
    reference = torch.stack([t(im) for im in pil])
    ours = Preprocess(fit="stretch", mean=(0, 0, 0), std=(1, 1, 1))(x)
    diff = (ours - reference).abs()
    assert diff.mean() < MEAN_TOL and diff.max() < MAX_TOL, (diff.mean(), diff.max())


def _openai_transform(n_px):
    """OpenAI CLIP's ``_transform`` (openai/CLIP ``clip/clip.py`` lines 79-86, d05afc4), which
    ImageReward copies (THUDM/ImageReward ``ImageReward/ImageReward.py`` lines 30-37, c1392c6)
    and Hessel's clipscore too (jmhessel/clipscore ``clipscore.py`` lines 88-95)."""
    T = pytest.importorskip("torchvision.transforms")
    bicubic = T.InterpolationMode.BICUBIC
    return T.Compose(
        [T.Resize(n_px, interpolation=bicubic), T.CenterCrop(n_px), T.ToTensor(),
         T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)]
    )  # fmt: skip


def _dreamsim_transform(n_px):
    """dreamsim's preprocessing (ssundaram21/dreamsim ``dreamsim/model.py`` lines 298-301,
    db4d16c): resize to a square without crop, no normalisation (the model normalises)."""
    T = pytest.importorskip("torchvision.transforms")
    bicubic = T.InterpolationMode.BICUBIC
    return T.Compose([T.Resize((n_px, n_px), interpolation=bicubic), T.ToTensor()])


SIZES = pytest.mark.parametrize("size", TEST_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")


def _pil(u8):
    from PIL import Image

    return [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in u8]


@SIZES
def test_each_scorer_preprocessing_equals_its_reference_at_real_sizes(size):
    """PickScore and ClipScore (transformers' ``CLIPImageProcessor``), ImageReward and the
    OpenAI-CLIP conventions (torchvision on PIL), DreamSim's own: square, landscape, portrait."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("sklearn")
    u8 = photos_at(*size)
    x, pil = u8.float() / 255, _pil(u8)
    processor = transformers.CLIPImageProcessor()(images=pil, return_tensors="pt").pixel_values
    _close_in_pixels(Preprocess(crop_offset="floor")(x), processor)
    _close_in_pixels(Preprocess()(x), torch.stack([_openai_transform(224)(im) for im in pil]))
    stretched = Preprocess(fit="stretch", mean=(0, 0, 0), std=(1, 1, 1))(x)
    reference = torch.stack([_dreamsim_transform(224)(im) for im in pil])
    diff = (stretched - reference).abs()
    assert diff.mean() < MEAN_TOL and diff.max() < MAX_TOL, (diff.mean(), diff.max())
