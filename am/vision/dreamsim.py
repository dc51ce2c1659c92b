"""DreamSim (Fu et al. 2023) embeddings and diversity, built offline on the ``dreamsim`` package.

The model is dreamsim 0.2.1's own ensemble -- ``PerceptualModel`` with DINO ViT-B/16 (CLS token
of block 11), CLIP and OpenCLIP ViT-B/16 (projected embeddings), concatenated, mean-centred and
L2-normalised, with the ensemble LoRA on every ``qkv`` -- assembled as ``dreamsim.dreamsim()``
does, except for where the weights come from. ``dreamsim.dreamsim()`` downloads a zip, and its
DINO backbone comes from ``torch.hub.load('facebookresearch/dino:main', 'dino_vitb16')``, which
clones a GitHub repository. Here, while ``PerceptualModel`` is constructed, dreamsim's
``ViTExtractor.create_model`` is swapped for :func:`_create_model`, which builds the DINO ViT the
way that hub entry does (``vit_base(patch_size=16, num_classes=0)``, strict load of
``dino_vitbase16_pretrain.pth``, the file torch.hub keeps under ``<hub_dir>/checkpoints/``) and
leaves CLIP and OpenCLIP to dreamsim's own loaders, which read local ``.pth.tar`` files.

The distance is ``1 - cos`` of the embeddings; diversity is its mean over the pairs of each
prompt's images, averaged over prompts (:func:`am.metrics.images.grouped_diversity`).
Preprocessing is in torch (:meth:`DreamSimEmbedder.preprocess`), so embeddings are
differentiable with respect to the images; dreamsim resizes PIL images to 224 x 224 (bicubic,
no crop) and normalises per backbone inside the model, so no normalisation happens here.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import operator
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from am.metrics.images import Diversity, grouped_diversity
from am.vision.base import ScorerInfo, check_images
from am.vision.checkpoints import WeightsMismatchError, check_shapes, module_shapes, read_shapes
from am.vision.preprocess import resize
from am.vision.resources import locate

__all__ = ["DreamSimEmbedder", "build_dreamsim", "check_lora", "IMAGE_SIZE", "TABLE_SCALE"]

IMAGE_SIZE = 224
# Tables report diversity x 100: the paper's Table 2 (base model 56.53) cannot be on the 0 .. 1
# scale of the mean pairwise 1 - cos, which the authors' SD 1.5 README reports (0.3849)
TABLE_SCALE = 100.0
DINO_BACKBONE = "checkpoints/dino_vitbase16_pretrain.pth"  # what the DINO hub entry downloads
DINO_FULL = "dino_vitb16_pretrain.pth"  # dreamsim's copy of the DINO checkpoint (head weights)
LORA_DIR = "ensemble_lora"
# peft writes safetensors; older peft (the released zip may come from one) wrote a .bin
LORA_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "bias", "target_modules")
_HEAD = ("mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "mlp.4.weight")
_HEAD += ("mlp.4.bias", "last_layer.weight")
_LOADERS = ("load_clip_as_dino", "load_open_clip_as_dino")

# ``vit(patch_size=16, **kwargs) -> VisionTransformer``; dreamsim's ``vit_base`` by default.
ViTFactory = Callable[..., nn.Module]


def _load_dino(load_dir: Path, vit: ViTFactory) -> tuple[nn.Module, nn.Module]:
    """The DINO ViT-B/16 backbone as ``torch.hub.load('facebookresearch/dino:main',
    'dino_vitb16')`` builds it, plus the projection head dreamsim attaches (unused by the
    ensemble's CLS features, kept so that the module tree, and LoRA's name matching, is
    dreamsim's)."""
    from dreamsim.feature_extraction.vision_transformer import DINOHead

    backbone = vit(patch_size=16, num_classes=0)
    file = load_dir / DINO_BACKBONE
    check_shapes(read_shapes(file), module_shapes(backbone), file=file, model="DreamSim's DINO")
    state = torch.load(file, map_location="cpu", weights_only=True)
    backbone.load_state_dict(state, strict=True)
    student = torch.load(load_dir / DINO_FULL, map_location="cpu", weights_only=True)["student"]
    head = DINOHead(backbone.embed_dim, 2048)
    # Assigned through ``.data`` as dreamsim does: the checkpoint's head need not have
    # DINOHead(D, 2048)'s shapes (DINO's own head has 65536 outputs), which load_state_dict
    # would refuse.
    for name in _HEAD:
        operator.attrgetter(name)(head).data = student[f"module.head.{name}"]
    return backbone, head


@contextlib.contextmanager
def _offline_backbones(vit: ViTFactory | None = None) -> Iterator[None]:
    """While active, dreamsim's ``ViTExtractor`` builds the ensemble's backbones from local
    files only. ``vit`` (tests) replaces the ViT-B constructor for all three backbones; the
    CLIP loaders call ``vit_base`` by its module-global name, so it is swapped there."""
    from dreamsim.feature_extraction.extractor import ViTExtractor
    from dreamsim.feature_extraction.vision_transformer import vit_base

    original = ViTExtractor.__dict__["create_model"]
    dreamsim_create = ViTExtractor.create_model
    loaders = [importlib.import_module(f"dreamsim.feature_extraction.{m}") for m in _LOADERS]
    saved = [module.vit_base for module in loaders]

    def create_model(model_type: str, load_dir: str = "./models") -> object:
        if model_type == "dino_vitb16":
            return _load_dino(Path(load_dir), vit or vit_base)
        if model_type in ("clip_vitb16", "open_clip_vitb16"):
            try:  # dreamsim's loaders load strictly, but torch's error does not name the file
                return dreamsim_create(model_type, load_dir)
            except RuntimeError as err:
                file = Path(load_dir) / f"{model_type}_pretrain.pth.tar"
                first = str(err).splitlines()[:3]
                raise WeightsMismatchError(
                    f"{file} does not fit DreamSim's {model_type}: {' '.join(first)}"
                ) from err
        raise ValueError(f"offline DreamSim builds the ensemble's backbones only, not {model_type}")

    ViTExtractor.create_model = staticmethod(create_model)
    if vit is not None:
        for module in loaders:
            module.vit_base = vit
    try:
        yield
    finally:
        ViTExtractor.create_model = original
        for module, constructor in zip(loaders, saved, strict=True):
            module.vit_base = constructor


def build_dreamsim(
    load_dir: str | os.PathLike, device: str = "cpu", vit: ViTFactory | None = None
) -> nn.Module:
    """dreamsim's ensemble ``PeftModel`` (what ``dreamsim.dreamsim(normalize_embeds=True)``
    returns) from the files in ``load_dir``: eval mode, every weight frozen.

    ``load_dir`` holds ``dino_vitb16_pretrain.pth``, ``clip_vitb16_pretrain.pth.tar``,
    ``open_clip_vitb16_pretrain.pth.tar``, ``ensemble_lora/`` and ``checkpoints/
    dino_vitbase16_pretrain.pth``. ``vit`` overrides the ViT-B/16 constructor (tiny models in
    tests); the real checkpoints need the default.
    """
    from dreamsim.config import dreamsim_args
    from dreamsim.model import PerceptualModel
    from peft import LoraConfig, PeftModel, get_peft_model

    load_dir = Path(load_dir)
    config = dreamsim_args["model_config"]["ensemble"]
    adapter = load_dir / LORA_DIR
    settings = json.loads((adapter / "adapter_config.json").read_text())
    with _offline_backbones(vit), warnings.catch_warnings():
        # dreamsim's own steps warn every time: its DINO head uses the deprecated weight_norm,
        # and re-wrapping the LoRA-injected model (below) trips peft's multiple-adapter check,
        # though the adapter name is the same ("default") and only one adapter results.
        warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated")
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        model = PerceptualModel(
            **config, load_dir=str(load_dir), normalize_embeds=True, device=device
        )
        # The LoRA as dreamsim.dreamsim() applies it: inject from the adapter's config, then
        # load the adapter's weights into the injected layers.
        model = get_peft_model(model, LoraConfig(**{k: settings[k] for k in LORA_KEYS}))
        # peft only warns about adapter entries that match no injected layer: check first.
        check_lora(adapter, model)
        model = PeftModel.from_pretrained(model.base_model.model, str(adapter)).to(device)
    return model.eval().requires_grad_(False)


def lora_file(adapter: Path) -> Path:
    """The adapter's weight file in ``adapter`` (:data:`LORA_WEIGHTS`, first found)."""
    for name in LORA_WEIGHTS:
        if (adapter / name).is_file():
            return adapter / name
    raise FileNotFoundError(f"{adapter} holds no adapter weights ({' or '.join(LORA_WEIGHTS)})")


def check_lora(adapter: Path, model: nn.Module) -> None:
    """Raise :class:`WeightsMismatchError` naming the adapter file and the first offending keys
    unless its keys and shapes are exactly those of the LoRA injected in ``model`` (a
    ``PeftModel``, as :func:`peft.get_peft_model_state_dict` names them)."""
    from peft import get_peft_model_state_dict

    file = lora_file(adapter)
    expected = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
    check_shapes(read_shapes(file), expected, file=file, model="DreamSim's ensemble LoRA")


class DreamSimEmbedder(nn.Module):
    """DreamSim embeddings ``[B, D]`` (D = 1792 for the real ensemble) of images in [0, 1].

    ``model`` is anything with ``embed(x [B, 3, 224, 224] in [0, 1]) -> [B, D]`` (dreamsim's
    ``PerceptualModel`` or its ``PeftModel``). Build it on its final device: dreamsim keeps the
    CLIP projections as plain tensors moved per call to the device given at construction, so a
    later ``.to()`` is not supported.
    """

    info = ScorerInfo(
        "dreamsim",
        "DreamSim 0.2.1 ensemble (DINO + CLIP + OpenCLIP ViT-B/16, LoRA)",
        "diversity: 100 * mean pairwise (1 - cos) of a prompt's images, 0 .. 100 (the paper's "
        "Table 2 scale; diversity() and the authors' SD 1.5 README give it / 100)",
    )

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        device: str = "cpu",
        vit: ViTFactory | None = None,
    ) -> DreamSimEmbedder:
        """The released DreamSim ensemble from ``locate("dreamsim", path)``; raises
        :class:`am.vision.resources.MissingWeightsError` naming the missing files. ``vit``: see
        :func:`build_dreamsim` (tiny stand-ins in tests)."""
        return cls.from_files(locate("dreamsim", path), device=device, vit=vit)

    @classmethod
    def from_files(
        cls, load_dir: str | os.PathLike, device: str = "cpu", vit: ViTFactory | None = None
    ) -> DreamSimEmbedder:
        """Build from the files in ``load_dir`` (no search); ``vit``: see :func:`build_dreamsim`."""
        return cls(build_dreamsim(load_dir, device=device, vit=vit))

    def train(self, mode: bool = True) -> DreamSimEmbedder:
        # A fixed metric: the LoRA's dropout must stay off.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` -> ``[B, 3, 224, 224]``: clamp to [0, 1] (as the 8-bit PIL
        image would be), antialiased bicubic resize without crop (dreamsim's ``Resize((224,
        224), BICUBIC)``). No normalisation: ``PerceptualModel`` normalises per backbone."""
        return resize(images.clamp(0, 1), (IMAGE_SIZE, IMAGE_SIZE))

    def embed(self, images: Tensor) -> Tensor:
        """Unit-norm, mean-centred embeddings ``[B, D]`` of ``images [B, 3, H, W]`` in [0, 1];
        differentiable with respect to the images."""
        check_images(images)
        return self.model.embed(self.preprocess(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.embed(images)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """DreamSim distance ``1 - cos`` ``[B]`` between ``a [B, 3, H, W]`` and ``b``."""
        return 1 - F.cosine_similarity(self.embed(a), self.embed(b), dim=-1)

    @torch.no_grad()
    def embed_batched(self, images: Tensor, batch_size: int = 32) -> Tensor:
        """:meth:`embed` of ``images [N, 3, H, W]`` (any device) ``batch_size`` at a time, without
        gradients; returns ``[N, D]`` on the model's device."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_images(images)
        device = self.device
        chunks = [
            self.embed(images[i : i + batch_size].to(device))
            for i in range(0, images.shape[0], batch_size)
        ]
        return torch.cat(chunks)

    def diversity(self, images: Tensor, groups: Tensor, batch_size: int = 32) -> Diversity:
        """DreamSim diversity of ``images [N, 3, H, W]`` with prompt labels ``groups [N]``: per
        prompt, the mean ``1 - cos`` over the pairs of its images; averaged over prompts with
        the standard error over prompts (prompts with one image are skipped). On the 0 .. 1
        scale; tables multiply by :data:`TABLE_SCALE`."""
        embeddings = self.embed_batched(images, batch_size)
        return grouped_diversity(embeddings, groups.to(embeddings.device), distance="cosine")
