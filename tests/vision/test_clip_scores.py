"""ClipScore's three conventions, PickScore and the aesthetic predictor on tiny random CLIPs,
each against its reference: torchmetrics itself; transcriptions of Hessel et al.'s clipscore
and of the Adjoint Matching authors' ``CLIPScore`` (both OpenAI ``clip`` package recipes);
PickScore's published recipe (transformers' processor + model); LAION's ``simple_inference.py``.
Images are 32 x 51 (the model's 32 on the short side, so the PIL resizes are identities and the
comparisons exact, while the odd crop margin tells the floor and round crop offsets apart); one
prompt is longer than CLIP's 77 positions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from am.vision.checkpoints import WeightsMismatchError  # noqa: E402
from am.vision.clip import AestheticMLP, AestheticScore, ClipEncoder, ClipScore, PickScore  # noqa: E402
from am.vision.resources import MissingWeightsError  # noqa: E402
from am.vision.testing import TEST_SIZES, photos_at, tiny_clip_dir  # noqa: E402

LONG = "a photograph of a lighthouse on a cliff at dusk, " * 3  # 150 characters: > 77 tokens
PROMPTS = ["a red cat", "the dog on a sofa", "x y z", LONG]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip_dir(tmp_path_factory.mktemp("clip"), seed=3)


@pytest.fixture(scope="module")
def uint8_images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 32, 51), generator=g, dtype=torch.uint8)


def _pil(u8):
    from PIL import Image

    return [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in u8]


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


def test_torchmetrics_convention_equals_torchmetrics(clip_dir, uint8_images):
    from torchmetrics.functional.multimodal import clip_score

    model = Transformers4Api(transformers.CLIPModel.from_pretrained(clip_dir).eval())
    processor = transformers.CLIPProcessor.from_pretrained(clip_dir)
    scorer = ClipScore(ClipEncoder.from_dir(clip_dir))  # the default: torchmetrics'
    ours = scorer(uint8_images.float() / 255, PROMPTS)
    with pytest.warns(UserWarning, match="longer than"):  # torchmetrics cuts the long prompt
        one_by_one = [
            clip_score(uint8_images[i], PROMPTS[i], lambda: (model, processor)) for i in range(4)
        ]
        batch = clip_score(list(uint8_images), PROMPTS, lambda: (model, processor))
    # per call, torchmetrics returns max(mean over the call's images of 100 cos, 0)
    torch.testing.assert_close(ours.clamp(min=0), torch.stack(one_by_one), atol=1e-4, rtol=1e-5)
    assert scorer.table_mean(ours.mean().item()) == pytest.approx(batch.item(), abs=1e-4)
    # the clamp after the mean is not the mean of clamped scores on this batch
    assert abs(ours.clamp(min=0).mean() - batch) > 1.0
    # the long prompt lost its end token, as in torchmetrics (keeping it changes the score)
    kept = 100 * scorer.encoder.text_features([LONG], "keep-end")
    dropped = 100 * scorer.encoder.text_features([LONG], "drop-end")
    assert (kept - dropped).abs().max() > 1e-2
    assert "max(mean, 0)" in scorer.info.scale and "torchmetrics" in scorer.info.version


def openai_tokenize(tokenizer, texts, context_length=77):
    """``clip.tokenize(texts, truncate=True)`` (openai/CLIP ``clip/clip.py`` lines 228-243,
    d05afc4) over this vocabulary's BPE: start + BPE + end, cut to 77 with the end token put
    back last, zero padding."""
    sot, eot = tokenizer.bos_token_id, tokenizer.eos_token_id
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        tokens = [sot] + tokenizer(text, add_special_tokens=False).input_ids + [eot]
        if len(tokens) > context_length:
            tokens = tokens[:context_length]
            tokens[-1] = eot
        result[i, : len(tokens)] = torch.tensor(tokens)
    return result


def openai_transform(n_px):
    """OpenAI CLIP's ``_transform`` (openai/CLIP ``clip/clip.py`` lines 79-86, d05afc4): PIL
    bicubic resize of the shorter side, torchvision's centre crop (round), ToTensor, Normalize."""
    T = pytest.importorskip("torchvision.transforms")
    from PIL import Image

    return T.Compose(
        [T.Resize(n_px, interpolation=Image.BICUBIC), T.CenterCrop(n_px), T.ToTensor(),
         T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))]
    )  # fmt: skip


def openai_clip_cosine(clip_dir, u8, texts):
    """The cosine as the OpenAI-``clip``-package recipes compute it: ``_transform`` on PIL
    (Resize bicubic, CenterCrop (round), ToTensor, Normalize), ``clip.tokenize(truncate=True)``,
    ``F.normalize`` both features, sum of products (soc-fine-tuning-sd ``src/metrics.py``
    lines 159-172, 489f904; jmhessel/clipscore ``clipscore.py`` lines 75, 88-95, 148-159)."""
    model = transformers.CLIPModel.from_pretrained(clip_dir).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(clip_dir, model_max_length=77)
    transform = openai_transform(model.config.vision_config.image_size)
    with torch.no_grad():
        image = model.get_image_features(torch.stack([transform(im) for im in _pil(u8)]))
        text = model.get_text_features(openai_tokenize(tokenizer, texts))
        image, text = F.normalize(image.pooler_output), F.normalize(text.pooler_output)
    return (image * text).sum(1)


def test_hessel_convention_equals_clipscore_recipe(clip_dir, uint8_images, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(clip_dir.parent / "none"))
    hessel = ClipScore.from_pretrained(clip_dir, convention="hessel")
    cos = openai_clip_cosine(clip_dir, uint8_images, [f"A photo depicts {p}" for p in PROMPTS])
    reference = 2.5 * cos.clamp(min=0)  # clipscore.py line 159: w * np.clip(cos, 0, None)
    ours = hessel(uint8_images.float() / 255, PROMPTS)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    assert hessel.info.name == "clipscore-hessel" and "2.5" in hessel.info.scale
    assert hessel.table_mean(-1.0) == -1.0  # clamped per image, not in the table


def test_authors_convention_equals_their_clipscore(clip_dir, uint8_images, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(clip_dir.parent / "none"))
    authors = ClipScore.from_pretrained(clip_dir, convention="authors")
    reference = openai_clip_cosine(clip_dir, uint8_images, PROMPTS)
    torch.testing.assert_close(authors(uint8_images.float() / 255, PROMPTS), reference)
    assert authors.info.name == "clipscore-authors" and authors.info.scale.startswith("raw cos")
    with pytest.raises(ValueError, match="torchmetrics, hessel, authors"):
        ClipScore.from_pretrained(clip_dir, convention="openai")


def test_clipscore_gradient_reaches_images(clip_dir):
    scorer = ClipScore(ClipEncoder.from_dir(clip_dir))
    images = torch.rand(4, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    images.requires_grad_(True)
    scorer(images, PROMPTS).sum().backward()  # no per-image clamp: every image gets a gradient
    assert torch.isfinite(images.grad).all() and (images.grad.abs().sum((1, 2, 3)) > 0).all()
    assert all(not p.requires_grad for p in scorer.parameters())


def pickscore_recipe(clip_dir, uint8_images):
    """PickScore's published recipe: processor -> get_*_features -> normalise ->
    logit_scale.exp() * image @ text.T, diagonal."""
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
        return (model.logit_scale.exp() * img @ txt.T).diagonal()


def test_pickscore_equals_reference_recipe(clip_dir, uint8_images):
    reference = pickscore_recipe(clip_dir, uint8_images)
    ours = PickScore.from_pretrained(clip_dir, clip_dir)(uint8_images.float() / 255, PROMPTS)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("size", TEST_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pickscore_at_real_sizes_is_the_recipe_up_to_resampling(clip_dir, size):
    """Square, portrait and landscape photos, end to end: the processor resizes with PIL, this
    suite with torch (differentiable), so the scores agree to resampling noise only (measured
    on this tiny model: at most 0.012, under 0.5 % of the scores' spread of 2.3-3.6); fitting
    a non-square image any other way (letterbox, stretch) is 0.38-2.6 off."""
    photos = photos_at(*size)
    u8 = torch.cat([photos, photos.flip(-1)])
    reference = pickscore_recipe(clip_dir, u8)
    scorer = PickScore.from_pretrained(clip_dir, clip_dir)
    error = (scorer(u8.float() / 255, PROMPTS) - reference).abs().max()
    assert error < 0.02, error
    if size[0] != size[1]:
        for fit in ("pad", "stretch"):
            scorer.encoder.preprocess = dataclasses.replace(scorer.encoder.preprocess, fit=fit)
            wrong = (scorer(u8.float() / 255, PROMPTS) - reference).abs().max()
            assert wrong > 10 * max(error, 1e-3), (fit, wrong, error)


def test_pickscore_gradient_reaches_images(clip_dir):
    scorer = PickScore(ClipEncoder.from_dir(clip_dir))
    images = torch.rand(2, 3, 48, 32, requires_grad=True)
    scorer(images, PROMPTS[:2]).sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def aesthetic_reference(clip_dir, state, u8):
    """LAION's ``simple_inference.py`` (christophschuhmann/improved-aesthetic-predictor at
    6934dd8), in numpy: OpenAI CLIP's preprocessing and image features (lines 103-113), the
    numpy L2 normalisation ``normalized`` (lines 84-89, 115), and the MLP of lines 47-60 as
    matrix products of the file's weights (no activations; dropout is off at inference)."""
    model = transformers.CLIPModel.from_pretrained(clip_dir).eval()
    transform = openai_transform(model.config.vision_config.image_size)
    with torch.no_grad():
        pixels = torch.stack([transform(im) for im in _pil(u8)])
        features = model.get_image_features(pixels).pooler_output.double().numpy()
    l2 = np.atleast_1d(np.linalg.norm(features, 2, -1))
    l2[l2 == 0] = 1
    x = features / np.expand_dims(l2, -1)
    for i in (0, 2, 4, 6, 7):
        x = x @ state[f"layers.{i}.weight"].double().numpy().T + state[f"layers.{i}.bias"].numpy()
    return torch.from_numpy(x[:, 0])


def test_aesthetic_equals_simple_inference(clip_dir, uint8_images, tmp_path):
    # The published file is a bare state dict of the MLP with keys layers.{0,2,4,6,7}.
    torch.manual_seed(5)
    state = AestheticMLP(16).state_dict()
    (tmp_path / "aesthetic").mkdir()
    file = tmp_path / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(state, file)
    scorer = AestheticScore.from_pretrained(tmp_path / "aesthetic", clip_path=clip_dir)
    images = (uint8_images.float() / 255).requires_grad_(True)
    scores = scorer(images, ["ignored"] * 4)
    reference = aesthetic_reference(clip_dir, state, uint8_images)
    torch.testing.assert_close(scores.double(), reference, atol=1e-5, rtol=1e-5)
    assert reference.std() > 1e-3  # distinct images give distinct scores
    scores.sum().backward()
    assert images.grad.abs().sum() > 0
    # a wrong file is refused, naming the file and the key
    torch.save(dict(state, extra=torch.zeros(2)), file)
    with pytest.raises(WeightsMismatchError, match="unexpected 1 key.*extra") as err:
        AestheticScore.from_pretrained(tmp_path / "aesthetic", clip_path=clip_dir)
    assert str(file) in str(err.value) and "aesthetic" in str(err.value)


def _broken_clip(clip_dir, tmp_path, edit):
    import shutil

    from safetensors.torch import load_file, save_file

    directory = Path(shutil.copytree(clip_dir, tmp_path / "clip"))
    file = directory / "model.safetensors"
    state = load_file(file)
    edit(state)
    save_file(state, file)
    return directory, file


@pytest.mark.parametrize(
    "edit, needles",
    [
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("vision_model.")],
         ("missing", "vision_model.")),
        (lambda s: s.update(extra_head=torch.zeros(3)), ("unexpected 1", "extra_head")),
        (lambda s: s.update({"text_projection.weight": s["text_projection.weight"][:-1].clone()}),
         ("wrong shape", "text_projection")),
    ],
    ids=["missing-vision-tower", "extra-key", "wrong-shape"],
)  # fmt: skip
def test_clip_weights_load_strictly(clip_dir, tmp_path, edit, needles):
    directory, file = _broken_clip(clip_dir, tmp_path, edit)
    with pytest.raises(WeightsMismatchError) as err:
        PickScore.from_pretrained(directory, directory)
    for needle in (str(file), "PickScore_v1", *needles):
        assert needle in str(err.value), (needle, str(err.value))


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
