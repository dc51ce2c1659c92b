"""What ``python -m amcli.resources --check`` verifies beyond presence: that each resource's
weight files fit the model that would load them, key by key and shape by shape.

The same checks run when a scorer loads (:mod:`am.vision.checkpoints`), so a broken or partial
file is reported by ``--check`` rather than at run time. Keys and shapes come from the files'
headers (safetensors) or from ``torch.load`` to the ``meta`` device (no tensor data is read),
and the models are built on ``meta`` (nothing is allocated; DreamSim's ViTs, whose
initialisation ``meta`` refuses, on the CPU). Tokenizer-only resources have no tensors to check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from torch import nn

from am.vision.checkpoints import WeightsMismatchError, check_shapes, module_shapes, read_shapes

__all__ = ["validate", "VALIDATORS"]

AESTHETIC_DIM = 768  # CLIP ViT-L/14's projection, when the CLIP resource is not at hand


def _clip(name: str) -> Callable[[Path], None]:
    def check(directory: Path) -> None:
        from am.vision.clip import check_clip_dir

        check_clip_dir(directory, what=name)

    return check


def _hps(filename: str) -> Callable[[Path], None]:
    def check(directory: Path) -> None:
        from am.vision.hps import check_hps_file

        check_hps_file(directory / filename)

    return check


def _imagereward(directory: Path) -> None:
    from am.vision import imagereward as ir

    vision = ir.vision_config_vit_large()
    med = json.loads((directory / "med_config.json").read_text())
    text = ir.text_config_from_med(med, vision.hidden_size)
    ir.check_imagereward_file(directory / "ImageReward.pt", vision, text)


def _aesthetic(directory: Path) -> None:
    from am.vision.clip import AestheticMLP
    from am.vision.resources import MissingWeightsError, locate

    try:  # the head's input is the CLIP projection this resource is used with
        from transformers import CLIPConfig

        clip_dir = locate("clip-vit-large-patch14")
        dim = CLIPConfig.from_pretrained(clip_dir, local_files_only=True).projection_dim
    except MissingWeightsError:
        dim = AESTHETIC_DIM
    file = directory / "sac+logos+ava1-l14-linearMSE.pth"
    what = "the LAION aesthetic predictor's MLP"
    check_shapes(read_shapes(file), module_shapes(AestheticMLP(dim)), file=file, model=what)


def check_dreamsim_dir(directory: Path, vit: Callable[..., nn.Module] | None = None) -> None:
    """The DreamSim ensemble's files against dreamsim's ViT-B/16 (``vit`` replaces it in
    tests): the DINO backbone, the CLIP and OpenCLIP backbones (their ``state_dict`` less the
    ``proj`` the loaders pop; ``pos_drop`` is CLIP's ``ln_pre``), and the LoRA: one
    ``lora_A [r, D]`` and ``lora_B [3 D, r]`` per ``qkv`` of every block of the three ViTs,
    named as peft names them in dreamsim's ``PerceptualModel.extractor_list``."""
    from dreamsim.feature_extraction.vision_transformer import vit_base

    from am.vision.dreamsim import DINO_BACKBONE, LORA_DIR, lora_file

    vit = vit or vit_base
    # on the CPU: dreamsim's ViT initialisation calls .item(), which meta tensors refuse (two
    # ViT-B/16, about a second)
    dino, clip = vit(patch_size=16, num_classes=0), vit(patch_size=16)
    clip.pos_drop = nn.LayerNorm(clip.embed_dim)
    file = directory / DINO_BACKBONE
    check_shapes(read_shapes(file), module_shapes(dino), file=file, model="DreamSim's DINO")
    for name in ("clip_vitb16", "open_clip_vitb16"):
        file = directory / f"{name}_pretrain.pth.tar"
        found = read_shapes(file, subkey="state_dict")
        if found.pop("proj", None) is None:
            raise WeightsMismatchError(f"{file} does not fit DreamSim's {name}: missing proj")
        check_shapes(found, module_shapes(clip), file=file, model=f"DreamSim's {name}")
    adapter = directory / LORA_DIR
    settings = json.loads((adapter / "adapter_config.json").read_text())
    if list(settings.get("target_modules") or []) != ["qkv"]:
        raise WeightsMismatchError(
            f"{adapter / 'adapter_config.json'}: target_modules must be ['qkv'] (dreamsim's), "
            f"got {settings.get('target_modules')}"
        )
    r, width, blocks = settings["r"], dino.embed_dim, len(dino.blocks)
    expected = {}
    for i in range(3):  # DINO, CLIP, OpenCLIP
        for b in range(blocks):
            stem = f"base_model.model.extractor_list.{i}.model.blocks.{b}.attn.qkv"
            expected[f"{stem}.lora_A.weight"] = (r, width)
            expected[f"{stem}.lora_B.weight"] = (3 * width, r)
    file = lora_file(adapter)
    check_shapes(read_shapes(file), expected, file=file, model="DreamSim's ensemble LoRA")


def _tokenizer_only(directory: Path) -> None:
    """Tokenizer files hold no tensors; their presence is all there is to check."""


VALIDATORS: dict[str, Callable[[Path], None]] = {
    "clip-vit-large-patch14": _clip("clip-vit-large-patch14"),
    "clip-vit-base-patch32": _clip("clip-vit-base-patch32"),
    "pickscore": _clip("PickScore_v1"),
    "clip-vit-h-14-processor": _tokenizer_only,
    "hpsv2.0": _hps("HPS_v2_compressed.pt"),
    "hpsv2.1": _hps("HPS_v2.1_compressed.pt"),
    "imagereward": _imagereward,
    "bert-base-uncased": _tokenizer_only,
    "aesthetic": _aesthetic,
    "dreamsim": check_dreamsim_dir,
}


def validate(name: str, directory: str | Path) -> str:
    """``""`` when resource ``name``'s files in ``directory`` fit their model, else the one-line
    reason (naming the file, the model and the first offending keys). Never raises."""
    try:
        VALIDATORS[name](Path(directory))
    except (ValueError, OSError, KeyError) as err:  # WeightsMismatchError is a ValueError
        return str(err)
    except ImportError as err:
        return f"cannot check {name}: {err}"
    return ""
