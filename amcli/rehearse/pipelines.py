"""Write random-weight SD 1.5, SD 3.5 medium and reduced-depth Flux pipelines as the hub has them.

Each writer builds the pipeline from the published configs (:mod:`amcli.rehearse.configs`) with
random weights and saves it with the libraries' own ``save_pretrained``, so ``model_index.json``,
the subfolders, ``config.json`` files, variants and shard indices are what diffusers and
transformers write and read; the CLIP tokenizer folders are then replaced by the hub's four
files (:func:`amcli.rehearse.tokenizer.write_clip_tokenizer`: the real vocabulary, in the old
format the published folders have, not the ``tokenizer.json`` that transformers 5 writes).

* ``sd15``: ``StableDiffusionPipeline`` (UNet 860M, CLIP ViT-L/14 text encoder, VAE, the
  safety checker and its feature extractor, PNDM as published), float32 files and the
  ``variant="fp16"`` files beside them (``*.fp16.safetensors``), as the hub has both.
* ``sd35m``: ``StableDiffusion3Pipeline`` (MMDiT-X 2.5B, CLIP-L and bigG with their tokenizers),
  float16. T5-XXL is omitted, ``text_encoder_3=None``: ``model_index.json`` names it
  ``[null, null]``, and the pipeline then feeds zeros in T5's place (diffusers supports it).
* ``flux``: ``FluxPipeline`` at FLUX.1-dev's widths with 2 + 2 of its 19 + 38 blocks, bfloat16,
  the transformer and T5 sharded (``*-0000k-of-0000n.safetensors`` + ``*.index.json``) as the
  hub's are. Flux cannot drop T5 (its transformer attends to it), so T5 is written at T5-XXL's
  width (4096, 64 heads) with 2 of its 24 layers: prompt embeddings of the real shape, 0.5B
  parameters instead of 4.8B (9.5 GB). Its tokenizer has T5's sizes and special ids but not its
  vocabulary (:func:`amcli.rehearse.tokenizer.t5_tokenizer`).

``scale="tiny"`` writes the same layout at test widths (seconds, a few MB).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from amcli.rehearse.configs import config
from amcli.rehearse.tokenizer import write_clip_tokenizer

__all__ = ["FAMILIES", "REPO_IDS", "Written", "write_pipeline", "cache_snapshot"]

# the hub id each family rehearses (what a config's model.path names)
REPO_IDS = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd35m": "stabilityai/stable-diffusion-3.5-medium",
    "flux": "black-forest-labs/FLUX.1-dev",
}
# the components the hub shards, and a shard size that splits them as the hub's are split:
# FLUX.1-dev's transformer in 3 files, T5 in 2 (here 2.1 GB and 1.0 GB at full size)
_SHARDS = {
    "flux": {"transformer": {"full": "1GB", "tiny": "100KB"},
             "text_encoder_2": {"full": "600MB", "tiny": "1200KB"}},
}  # fmt: skip


@dataclass(frozen=True)
class Written:
    """A written pipeline: its ``family``, ``folder``, the hub id it rehearses, the ``dtype``
    of its main files, the ``variant`` written beside them (or ``None``), and the parameter
    count of each component with weights."""

    family: str
    folder: Path
    repo_id: str
    dtype: str
    variant: str | None
    parameters: dict[str, int]


def _clip(name: str, scale: str, *, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(CLIPTextConfig(**config(name, scale)))


def _clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """The real CLIP tokenizer (for the pipeline's constructor; its folder is rewritten later)."""
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer(Path(tmp), pad_token=pad_token)
        return CLIPTokenizer.from_pretrained(tmp)


def _sd15(scale: str):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline
    from diffusers import UNet2DConditionModel as UNet
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPConfig, CLIPImageProcessor

    safety = config("safety_checker", scale)
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**config("sd15_vae", scale)),
        text_encoder=_clip("clip_l", scale, projection=False), tokenizer=_clip_tokenizer(),
        unet=UNet(**config("sd15_unet", scale)),
        scheduler=PNDMScheduler(**config("sd15_scheduler", scale)),
        safety_checker=StableDiffusionSafetyChecker(CLIPConfig(**safety)),
        feature_extractor=CLIPImageProcessor(
            size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3,
        ),
        requires_safety_checker=True,
    )  # fmt: skip


def _sd35m(scale: str):
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    return StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**config("sd35m_transformer", scale)),
        scheduler=FlowMatchEulerDiscreteScheduler(**config("sd35m_scheduler", scale)),
        vae=AutoencoderKL(**config("sd3_vae", scale)),
        text_encoder=_clip("clip_l", scale, projection=True), tokenizer=_clip_tokenizer(),
        text_encoder_2=_clip("clip_g", scale, projection=True),
        tokenizer_2=_clip_tokenizer(pad_token="!"),
        text_encoder_3=None, tokenizer_3=None,
    )  # fmt: skip


def _flux(scale: str):
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from amcli.rehearse.tokenizer import t5_tokenizer

    return FluxPipeline(
        transformer=FluxTransformer2DModel(**config("flux_transformer", scale)),
        scheduler=FlowMatchEulerDiscreteScheduler(**config("flux_scheduler", scale)),
        vae=AutoencoderKL(**config("flux_vae", scale)),
        text_encoder=_clip("clip_l", scale, projection=False), tokenizer=_clip_tokenizer(),
        text_encoder_2=T5EncoderModel(T5Config(**config("t5_xxl", scale))),
        tokenizer_2=t5_tokenizer(),
    )  # fmt: skip


@dataclass(frozen=True)
class _Family:
    build: Callable
    dtype: torch.dtype  # of the main files, as the hub's
    variant: str | None  # written beside them in float16
    clip_tokenizers: dict[str, str]  # subfolder -> pad token


FAMILIES: dict[str, _Family] = {
    "sd15": _Family(_sd15, torch.float32, "fp16", {"tokenizer": "<|endoftext|>"}),
    "sd35m": _Family(
        _sd35m, torch.float16, None, {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}
    ),
    "flux": _Family(_flux, torch.bfloat16, None, {"tokenizer": "<|endoftext|>"}),
}


def write_pipeline(family: str, folder: Path, *, scale: str = "full", seed: int = 0) -> Written:
    """Write ``family`` (a key of :data:`FAMILIES`) into ``folder`` (created; must not hold a
    ``model_index.json`` yet) at ``scale`` (``full`` or ``tiny``)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    folder = Path(folder)
    if (folder / "model_index.json").exists():
        raise FileExistsError(f"{folder} already holds a pipeline (model_index.json)")
    spec = FAMILIES[family]
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(spec.dtype)  # built in the files' dtype: SD 3.5 is 13 GB in float32
    try:
        pipe = spec.build(scale)
    finally:
        torch.set_default_dtype(previous)
    # buffers made from numpy stay float32 (SD3's 226M-entry positional table: 0.45 GB more)
    pipe.to(dtype=spec.dtype)
    parameters = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    pipe.save_pretrained(folder)
    if spec.variant is not None:
        pipe.to(torch.float16)  # in place: the float32 tensors are freed as each converts
        pipe.save_pretrained(folder, variant=spec.variant)
    for name, sizes in _SHARDS.get(family, {}).items():
        # the same library call with a shard size, in place of the single file
        shutil.rmtree(folder / name)
        getattr(pipe, name).save_pretrained(folder / name, max_shard_size=sizes[scale])
    del pipe
    for subfolder, pad_token in spec.clip_tokenizers.items():
        shutil.rmtree(folder / subfolder)
        write_clip_tokenizer(folder / subfolder, pad_token=pad_token)
    dtype = str(spec.dtype).removeprefix("torch.")
    return Written(family, folder, REPO_IDS[family], dtype, spec.variant, parameters)


def cache_snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in a Hugging Face cache at ``cache``
    (``models--org--name/snapshots/<rev>``, with ``refs/main`` naming ``<rev>``), created: a
    pipeline written there loads by its hub id with ``HF_HUB_CACHE=cache``, offline."""
    revision = hashlib.sha1(f"rehearsal {repo_id}".encode()).hexdigest()
    root = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot
