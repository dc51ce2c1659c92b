"""DreamSim 0.2.1's ensemble, random, as its release unpacks (``dreamsim_ensemble_checkpoint.zip``)
plus the DINO backbone ``torch.hub`` keeps, in the folder :func:`dreamsim.dreamsim` reads
(``cache_dir``):

* ``dino_vitb16_pretrain.pth``: ``{"student": ...}`` of DINO's training wrapper, of which dreamsim
  reads only ``module.head.*`` (``DINOHead(768, 65536)``: MLP 768 -> 2048 -> 2048 -> 256 and a
  plain ``last_layer.weight`` 65536 x 256), with the backbone as ``module.backbone.*``;
* ``clip_vitb16_pretrain.pth.tar``, ``open_clip_vitb16_pretrain.pth.tar``: ``{"state_dict":
  ...}`` of dreamsim's own ViT-B/16 (``pos_drop`` is CLIP's ``ln_pre``, a LayerNorm) plus
  ``proj`` (768 x 512), which its loaders pop; dreamsim loads them without ``map_location``,
  so their storages are the CPU's;
* ``ensemble_lora/``: the peft adapter (``adapter_config.json``: r 16, alpha 0.5, dropout 0.3 on
  every ``qkv``, dreamsim's ``train_ensemble_model_lora.yaml``; ``adapter_model.safetensors``
  with one ``lora_A``/``lora_B`` per block of each of the three ViTs, named as peft names them in
  ``PerceptualModel.extractor_list``);
* ``checkpoints/dino_vitbase16_pretrain.pth``: DINO's hub ViT-B/16 state dict (what
  ``torch.hub.load('facebookresearch/dino:main', 'dino_vitb16')`` downloads).

The ensemble is DINO + CLIP + OpenCLIP, all ViT-B/16 (``dreamsim.config``, ``"ensemble"``); the
``open_clip_vitb32`` files belong to dreamsim's single-model variant, which the suite does not use.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from torch import nn

from amcli.rehearse.scorer_files import (
    Spec,
    random_state,
    save_torch,
    vit_spec,
    write_safetensors,
)

__all__ = [
    "tiny_vit",
    "write_dreamsim",
    "backbone_spec",
    "clip_backbone_spec",
    "lora_spec",
    "SIZES",
    "LORA",
]

# width, depth, MLP width, CLIP projection, DINO head (hidden, bottleneck, outputs); image 224,
# patch 16 at both sizes (dreamsim resizes every image to 224). The tiny ViT keeps 12 blocks:
# the ensemble reads DINO's CLS token after block 11.
SIZES = {"full": (768, 12, 3072, 512, (2048, 256, 65536)), "tiny": (32, 12, 64, 24, (48, 16, 64))}
LORA = {"r": 16, "lora_alpha": 0.5, "lora_dropout": 0.3}  # train_ensemble_model_lora.yaml
BACKBONES = ("dino_vitb16", "clip_vitb16", "open_clip_vitb16")  # extractor_list order


def tiny_vit(patch_size: int = 16, **kwargs) -> nn.Module:
    """dreamsim's ``vit_base`` recipe (qkv bias, LayerNorm eps 1e-6, 224 input) at width 32,
    two heads, MLP ratio 2: the tiny stand-in for all three backbones."""
    from dreamsim.feature_extraction.vision_transformer import VisionTransformer

    width, depth, mlp, _, _ = SIZES["tiny"]
    return VisionTransformer(
        patch_size=patch_size, embed_dim=width, depth=depth, num_heads=2, mlp_ratio=mlp / width,
        qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), **kwargs,
    )  # fmt: skip


def backbone_spec(scale: str, prefix: str = "") -> Spec:
    width, depth, mlp, _, _ = SIZES[scale]
    return vit_spec(prefix, width=width, depth=depth, image=224, patch=16, mlp=mlp)


def _dino_full(scale: str) -> Spec:
    width, _, _, _, (hidden, bottleneck, outputs) = SIZES[scale]
    spec = backbone_spec(scale, "module.backbone.")
    for name, out, inp in (("mlp.0", hidden, width), ("mlp.2", hidden, hidden),
                           ("mlp.4", bottleneck, hidden)):  # fmt: skip
        spec[f"module.head.{name}.weight"] = ((out, inp), torch.float32)
        spec[f"module.head.{name}.bias"] = ((out,), torch.float32)
    spec["module.head.last_layer.weight"] = ((outputs, bottleneck), torch.float32)
    return spec


def clip_backbone_spec(scale: str) -> Spec:
    width, _, _, projection, _ = SIZES[scale]
    spec = backbone_spec(scale)
    spec["pos_drop.weight"] = spec["pos_drop.bias"] = ((width,), torch.float32)
    spec["proj"] = ((width, projection), torch.float32)
    return spec


def lora_spec(scale: str) -> Spec:
    """The adapter's keys and shapes: ``lora_A [r, D]``, ``lora_B [3 D, r]`` per ``qkv``."""
    width, depth, _, _, _ = SIZES[scale]
    spec: Spec = {}
    for i in range(len(BACKBONES)):
        for b in range(depth):
            stem = f"base_model.model.extractor_list.{i}.model.blocks.{b}.attn.qkv"
            spec[f"{stem}.lora_A.weight"] = ((LORA["r"], width), torch.float32)
            spec[f"{stem}.lora_B.weight"] = ((3 * width, LORA["r"]), torch.float32)
    return spec


def write_dreamsim(folder: Path, scale: str) -> None:
    """Every file of the ensemble (see the module docstring) into ``folder``."""
    save_torch(
        random_state(backbone_spec(scale), seed=51),
        folder / "checkpoints/dino_vitbase16_pretrain.pth",
    )
    save_torch(
        {"student": random_state(_dino_full(scale), seed=52)},
        folder / f"{BACKBONES[0]}_pretrain.pth",
    )
    for seed, name in enumerate(BACKBONES[1:], start=53):
        state = {"state_dict": random_state(clip_backbone_spec(scale), seed=seed)}
        save_torch(state, folder / f"{name}_pretrain.pth.tar")
    adapter = folder / "ensemble_lora"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps(adapter_config(), indent=2) + "\n")
    write_safetensors(adapter / "adapter_model.safetensors", lora_spec(scale), seed=55)


def adapter_config() -> dict:
    """``adapter_config.json`` with the fields peft wrote when the ensemble was released (peft
    0.7, late 2023): today's peft must read a file without its newer fields."""
    return {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": None,
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
        "init_lora_weights": True, "layers_pattern": None, "layers_to_transform": None,
        "loftq_config": {}, "lora_alpha": LORA["lora_alpha"], "lora_dropout": LORA["lora_dropout"],
        "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
        "peft_type": "LORA", "r": LORA["r"], "rank_pattern": {}, "revision": None,
        "target_modules": ["qkv"], "task_type": None,
    }  # fmt: skip
