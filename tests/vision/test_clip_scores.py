"""ClipScore, PickScore and the aesthetic predictor on tiny random CLIPs, against torchmetrics,
the PickScore reference recipe (transformers' processor + model) and direct formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from am.vision.clip import AestheticMLP, AestheticScore, ClipEncoder, ClipScore, PickScore  # noqa: E402
from am.vision.resources import MissingWeightsError  # noqa: E402
from am.vision.testing import tiny_clip_dir  # noqa: E402

PROMPTS = ["a red cat", "the dog on a sofa", "x y z", "a painting of a lighthouse"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip_dir(tmp_path_factory.mktemp("clip"), seed=3)


@pytest.fixture(scope="module")
def uint8_images():
    """Images already at the model's 32 x 32, so that resizing and cropping are identities and
    the comparison with the PIL-based reference processors is exact."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_clipscore_equals_torchmetrics(clip_dir, uint8_images):
    from torchmetrics.functional.multimodal import clip_score

    class Transformers4Api(torch.nn.Module):
        """torchmetrics 1.x expects transformers 4's tensors from get_*_features; transformers 5
        returns an output object whose ``pooler_output`` is that tensor."""

        def __init__(self, model):
            super().__init__()
            self.model, self.config = model, model.config

        def get_image_features(self, *args, **kwargs):
            return self.model.get_image_features(*args, **kwargs).pooler_output

        def get_text_features(self, *args, **kwargs):
            return self.model.get_text_features(*args, **kwargs).pooler_output

    model = Transformers4Api(transformers.CLIPModel.from_pretrained(clip_dir).eval())
    processor = transformers.CLIPProcessor.from_pretrained(clip_dir)
    reference = [
        clip_score(uint8_images[i], PROMPTS[i], lambda: (model, processor)).item() for i in range(4)
    ]
    ours = ClipScore(ClipEncoder.from_dir(clip_dir))(uint8_images.float() / 255, PROMPTS)
    # torchmetrics' functional returns max(100 cos, 0) per call
    torch.testing.assert_close(ours, torch.tensor(reference), atol=1e-4, rtol=1e-5)


def test_clipscore_formula_clamp_and_gradient(clip_dir):
    scorer = ClipScore(ClipEncoder.from_dir(clip_dir))
    images = torch.rand(4, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    images.requires_grad_(True)
    cos = scorer.cosine(images, PROMPTS)
    enc = scorer.encoder
    direct = (enc.image_features(images) * enc.text_features(PROMPTS)).sum(-1)
    torch.testing.assert_close(cos, direct)
    score = scorer(images, PROMPTS)
    torch.testing.assert_close(score, 100 * cos.clamp(min=0))
    # the gradient flows through the positive entries (pick a positive-cosine batch)
    positive = cos > 0
    assert positive.any() and (~positive).any(), "seed should give both signs"
    score[positive].sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad[positive].abs().sum() > 0
    assert images.grad[~positive].abs().sum() == 0
    assert all(not p.requires_grad for p in scorer.parameters())


def test_hessel_variant_prefixes_the_prompt(clip_dir, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(clip_dir.parent / "none"))
    hessel = ClipScore.hessel(clip_dir)
    plain = ClipScore(ClipEncoder.from_dir(clip_dir))
    images = torch.rand(4, 3, 32, 32)
    prefixed = [f"A photo depicts {p}" for p in PROMPTS]
    torch.testing.assert_close(hessel.cosine(images, PROMPTS), plain.cosine(images, prefixed))
    torch.testing.assert_close(
        hessel(images, PROMPTS), 2.5 * plain.cosine(images, prefixed).clamp(min=0)
    )
    assert hessel.info.name == "clipscore-hessel" and "2.5" in hessel.info.scale


def test_pickscore_equals_reference_recipe(clip_dir, uint8_images):
    # PickScore's published recipe: processor -> get_*_features -> normalise ->
    # logit_scale.exp() * image @ text.T, diagonal.
    from PIL import Image

    model = transformers.CLIPModel.from_pretrained(clip_dir).eval()
    processor = transformers.CLIPProcessor.from_pretrained(clip_dir)
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in uint8_images]
    with torch.no_grad():
        image_inputs = processor(images=pil, return_tensors="pt")
        text_inputs = processor(
            text=PROMPTS, padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        img = model.get_image_features(**image_inputs).pooler_output
        txt = model.get_text_features(**text_inputs).pooler_output
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        reference = (model.logit_scale.exp() * img @ txt.T).diagonal()
    ours = PickScore.from_pretrained(clip_dir, clip_dir)(uint8_images.float() / 255, PROMPTS)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-5)


def test_pickscore_gradient_reaches_images(clip_dir):
    scorer = PickScore(ClipEncoder.from_dir(clip_dir))
    images = torch.rand(2, 3, 48, 32, requires_grad=True)
    scorer(images, PROMPTS[:2]).sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_aesthetic_loads_published_keys_and_scores(clip_dir, tmp_path):
    # The published file is a bare state dict of the MLP with keys layers.{0,2,4,6,7}.
    torch.manual_seed(5)
    head = AestheticMLP(16)
    state = head.state_dict()
    assert sorted({k.split(".")[1] for k in state}) == ["0", "2", "4", "6", "7"]
    (tmp_path / "aesthetic").mkdir()
    torch.save(state, tmp_path / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth")
    scorer = AestheticScore.from_pretrained(tmp_path / "aesthetic", clip_path=clip_dir)
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    scores = scorer(images, ["ignored"] * 3)
    direct = head.eval()(scorer.encoder.image_features(images))
    torch.testing.assert_close(scores, direct)
    scores.sum().backward()
    assert images.grad.abs().sum() > 0
    # a wrong file is refused with its name
    torch.save(
        {"visual.proj": torch.zeros(2)}, tmp_path / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
    )
    with pytest.raises(ValueError, match="not the LAION aesthetic predictor"):
        AestheticScore.from_pretrained(tmp_path / "aesthetic", clip_path=clip_dir)


def test_missing_weights_name_model_file_and_places(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError) as err:
        PickScore.from_pretrained(tmp_path / "mine")
    message = str(err.value)
    for needle in (
        "pickscore",
        "model.safetensors",
        str(tmp_path / "mine"),
        str(tmp_path / "weights" / "pickscore"),
        "yuvalkirstain/PickScore_v1",
    ):
        assert needle in message, needle
