"""DreamSim embedder on a tiny stand-in ensemble, checked against dreamsim's own code.

The stand-in weights are dreamsim's ``VisionTransformer`` at width 32 (depth 12: the ensemble
reads the DINO CLS token after block 11), written in the released files' formats: the DINO hub
backbone state dict, dreamsim's DINO checkpoint (``student`` with ``module.head.*``), the CLIP
and OpenCLIP ``.pth.tar`` dicts (``state_dict`` with ``proj``) and a peft LoRA directory with
random, non-zero ``lora_B``. The reference is ``dreamsim.dreamsim()`` itself, with
``torch.hub.load`` answered locally the way the DINO hub entry works and the CLIP loaders'
``vit_base`` shrunk to the same tiny ViT.
"""

from __future__ import annotations

import importlib
import math
import statistics
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("dreamsim")
pytest.importorskip("peft")

from dreamsim.feature_extraction.extractor import ViTExtractor  # noqa: E402
from dreamsim.feature_extraction.vision_transformer import (  # noqa: E402
    vit_base,
)

from am.vision.dreamsim import DreamSimEmbedder  # noqa: E402
from am.vision.preprocess import resize  # noqa: E402
from am.vision.resources import MissingWeightsError  # noqa: E402
from amcli.rehearse.scorer_dreamsim import tiny_vit  # noqa: E402

# dreamsim's own builds (the reference, the adapter writer) warn about its deprecated DINO head
# weight_norm and its re-wrapping of the LoRA-injected model; both are expected.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute:UserWarning"),
]

WIDTH, PROJ = 32, 24  # ViT width; CLIP projection size. D = WIDTH + 2 * PROJ.
CLIP_LOADERS = ("load_clip_as_dino", "load_open_clip_as_dino")
CREATE_MODEL = ViTExtractor.__dict__["create_model"]


def _random(vit: nn.Module) -> nn.Module:
    # dreamsim's ViT init leaves the tokens at zero and LayerNorms at identity: perturb them so
    # that every parameter matters.
    with torch.no_grad():
        vit.cls_token.normal_(std=0.5)
        vit.pos_embed.normal_(std=0.5)
        for m in vit.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(std=0.1)
    return vit


@contextmanager
def dreamsim_offline_stand_in():
    """Let ``dreamsim.dreamsim()`` build the tiny ensemble: ``torch.hub.load`` does what the
    ``facebookresearch/dino:main`` entry ``dino_vitb16`` does (``vit_base(patch_size=16,
    num_classes=0)``, strict load of ``<hub_dir>/checkpoints/dino_vitbase16_pretrain.pth``),
    and the CLIP loaders build the tiny ViT in place of ``vit_base``."""
    hub_dirs: list[str] = []

    def load(repo: str, model: str, *args, **kwargs) -> nn.Module:
        assert (repo, model) == ("facebookresearch/dino:main", "dino_vitb16")
        vit = tiny_vit(patch_size=16, num_classes=0)
        path = Path(hub_dirs[-1]) / "checkpoints" / "dino_vitbase16_pretrain.pth"
        vit.load_state_dict(torch.load(path, weights_only=True), strict=True)
        return vit

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "set_dir", hub_dirs.append)
        mp.setattr(torch.hub, "load", load)
        for name in CLIP_LOADERS:
            module = importlib.import_module(f"dreamsim.feature_extraction.{name}")
            mp.setattr(module, "vit_base", tiny_vit)
        yield


def write_tiny_dreamsim(directory: Path, seed: int = 0) -> Path:
    """Write the tiny ensemble's files into ``directory`` in the released formats."""
    from dreamsim.config import dreamsim_args
    from dreamsim.model import PerceptualModel
    from peft import LoraConfig, get_peft_model

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
    dino = _random(tiny_vit(patch_size=16, num_classes=0)).state_dict()
    torch.save(dino, directory / "checkpoints" / "dino_vitbase16_pretrain.pth")
    # DINO's training checkpoint: only the student's head is read (and unused by the ensemble).
    hidden, bottleneck, out = 48, 16, 64
    shapes = {"mlp.0": (hidden, WIDTH), "mlp.2": (hidden, hidden), "mlp.4": (bottleneck, hidden)}
    student = {f"module.backbone.{k}": v for k, v in dino.items()}
    for name, shape in shapes.items():
        student[f"module.head.{name}.weight"] = torch.randn(shape, generator=gen) * 0.1
        student[f"module.head.{name}.bias"] = torch.randn(shape[0], generator=gen) * 0.1
    student["module.head.last_layer.weight"] = torch.randn(out, bottleneck, generator=gen)
    torch.save({"student": student}, directory / "dino_vitb16_pretrain.pth")
    for name in ("clip_vitb16", "open_clip_vitb16"):
        vit = tiny_vit(patch_size=16)
        vit.pos_drop = nn.LayerNorm(WIDTH)  # CLIP's ln_pre, as the loaders expect
        state = _random(vit).state_dict()
        state["proj"] = torch.randn(WIDTH, PROJ, generator=gen) / math.sqrt(WIDTH)
        torch.save({"state_dict": state}, directory / f"{name}_pretrain.pth.tar")
    # The LoRA: dreamsim's settings (dropout 0.3, qkv) at rank 4, with lora_B non-zero.
    with dreamsim_offline_stand_in():
        config = dreamsim_args["model_config"]["ensemble"]
        base = PerceptualModel(**config, load_dir=str(directory), device="cpu")
    lora = LoraConfig(r=4, lora_alpha=4, lora_dropout=0.3, bias="none", target_modules=["qkv"])
    peft_model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.3, generator=gen)
    peft_model.save_pretrained(str(directory / "ensemble_lora"))
    return directory


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_dreamsim(tmp_path_factory.mktemp("dreamsim"))


@pytest.fixture(scope="module")
def embedder(weights) -> DreamSimEmbedder:
    return DreamSimEmbedder.from_files(weights, vit=tiny_vit)


def _reference(weights: Path, pretrained: bool) -> nn.Module:
    from dreamsim.model import dreamsim

    with dreamsim_offline_stand_in():
        model, _ = dreamsim(pretrained=pretrained, device="cpu", cache_dir=str(weights))
    return model


def _images(n: int, h: int = 224, w: int = 224, seed: int = 1) -> torch.Tensor:
    """Smooth random images ``[n, 3, h, w]`` in [0, 1] (4 x 4 noise, upsampled): pixel noise
    would give nearly equal embeddings, hence distances too small to test against."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=gen)
    return F.interpolate(coarse, size=(h, w), mode="bilinear").clamp(0, 1)


def test_embed_is_unit_norm_and_differentiable(embedder):
    images = (0.1 + 0.8 * _images(3, 64, 80)).requires_grad_(True)
    e = embedder.embed(images)
    assert e.shape == (3, WIDTH + 2 * PROJ)
    assert torch.isfinite(e).all()
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(e.mean(dim=1), torch.zeros(3), atol=1e-6, rtol=0)
    # A random projection: the norm alone is constant, so its gradient would vanish.
    (e * torch.randn_like(e)).sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in embedder.parameters())
    assert not embedder.train().training


def test_build_restores_dreamsim(embedder):
    assert ViTExtractor.__dict__["create_model"] is CREATE_MODEL
    for name in CLIP_LOADERS:
        assert importlib.import_module(f"dreamsim.feature_extraction.{name}").vit_base is vit_base


def test_distance_matches_dreamsim(embedder, weights):
    reference = _reference(weights, pretrained=True)
    a, b = _images(4, seed=2), _images(4, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(embedder.embed(a), reference.embed(a), atol=1e-6, rtol=0)
        ours, theirs = embedder.distance(a, b), reference(a, b)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
        assert ours.shape == (4,) and (ours > 1e-2).all()
        # Other sizes: the reference on our torch resize, to the same precision.
        x, y = _images(2, 160, 200, seed=4), _images(2, 160, 200, seed=5)
        size = (224, 224)
        theirs = reference(resize(x, size), resize(y, size))
        torch.testing.assert_close(embedder.distance(x, y), theirs, atol=1e-6, rtol=0)


def test_lora_is_applied(embedder, weights):
    plain = _reference(weights, pretrained=False)  # LoRA injected but lora_B = 0: no adapter
    assert all((p == 0).all() for n, p in plain.named_parameters() if "lora_B" in n)
    a, b = _images(4, seed=6), _images(4, seed=7)
    with torch.no_grad():
        ours, without = embedder.distance(a, b), plain(a, b)
    assert (ours - without).abs().max() > 1e-2 * without.abs().max()


def _hand_diversity(embeddings: torch.Tensor, groups: list[int]) -> tuple[float, float]:
    per_group = []
    for g in sorted(set(groups)):
        rows = [embeddings[i].double() for i, label in enumerate(groups) if label == g]
        pairs = [(i, j) for i in range(len(rows)) for j in range(i + 1, len(rows))]
        if not pairs:
            continue  # a prompt with one image has no pairs
        cos = [float(rows[i] @ rows[j] / (rows[i].norm() * rows[j].norm())) for i, j in pairs]
        per_group.append(sum(1 - c for c in cos) / len(cos))
    return statistics.mean(per_group), statistics.stdev(per_group) / math.sqrt(len(per_group))


class _MeanColour(nn.Module):
    """A stand-in model whose embedding of a flat-colour image is its colour."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def test_diversity_against_hand_computation():
    colours = torch.rand(10, 3, generator=torch.Generator().manual_seed(8))
    images = colours[:, :, None, None].expand(10, 3, 8, 8)
    groups = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    result = DreamSimEmbedder(_MeanColour()).diversity(images, torch.tensor(groups), batch_size=3)
    mean, stderr = _hand_diversity(colours, groups)
    assert result.per_group.shape == (3,)
    assert result.mean == pytest.approx(mean, abs=1e-6)
    assert result.stderr == pytest.approx(stderr, abs=1e-6)


def test_diversity_of_the_model_batches_consistently(embedder):
    images, groups = _images(6, 96, 96, seed=9), [0, 1, 0, 1, 0, 1]
    result = embedder.diversity(images, torch.tensor(groups), batch_size=4)
    with torch.no_grad():
        mean, stderr = _hand_diversity(embedder.embed(images), groups)
    assert result.mean == pytest.approx(mean, abs=1e-6)
    assert result.stderr == pytest.approx(stderr, abs=1e-6)


def test_from_pretrained_names_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError) as err:
        DreamSimEmbedder.from_pretrained(tmp_path / "empty")
    for name in (
        "dino_vitb16_pretrain.pth",
        "clip_vitb16_pretrain.pth.tar",
        "open_clip_vitb16_pretrain.pth.tar",
        "ensemble_lora/adapter_config.json",
        "checkpoints/dino_vitbase16_pretrain.pth",
    ):
        assert name in str(err.value)


def test_diversity_equals_the_authors_formula():
    """microsoft/soc-fine-tuning-sd ``src/metrics.py`` lines 117-124 (489f904): normalised
    embeddings, ``sum |e_i - e_j|^2`` over all ordered pairs over ``2 n (n - 1)``; one prompt.
    That is the mean pairwise ``1 - cos`` (0 .. 1, their README's 0.3849), which tables show
    x 100 (the paper's Table 2 scale)."""
    from am.vision.dreamsim import TABLE_SCALE

    colours = torch.rand(10, 3, generator=torch.Generator().manual_seed(11))
    images = colours[:, :, None, None].expand(10, 3, 8, 8)
    ours = DreamSimEmbedder(_MeanColour()).diversity(images, torch.zeros(10, dtype=torch.long))
    e = colours.double() / colours.double().norm(dim=-1, keepdim=True)
    n = e.shape[0]
    variance = ((e.unsqueeze(0) - e.unsqueeze(1)) ** 2).sum() / (2 * n * (n - 1))
    assert ours.mean == pytest.approx(variance.item(), abs=1e-6)
    assert TABLE_SCALE == 100.0 and "100 *" in DreamSimEmbedder.info.scale
