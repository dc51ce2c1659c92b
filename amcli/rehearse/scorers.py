"""Every scorer the suite's metrics use, with random weights, in its official files and layout.

``write_scorers(folder)`` writes, one directory per resource of :mod:`am.vision.resources`
(``folder`` is then a ``$AM_WEIGHTS``: the layout ``python -m amcli.resources --download`` makes),

============================  ==================================================================
``clip-vit-large-patch14``    openai/clip-vit-large-patch14 (ClipScore, the aesthetic head's
                              features), ``clip-vit-base-patch32`` (Hessel's ClipScore): the
                              repositories' ``config.json``, ``model.safetensors``, tokenizer
                              and processor files (:mod:`.scorer_clip`)
``pickscore``                 yuvalkirstain/PickScore_v1: CLIP ViT-H/14, ``config.json`` (GELU),
                              ``model.safetensors`` (float32)
``clip-vit-h-14-processor``   laion/CLIP-ViT-H-14-laion2B-s32B-b79K's tokenizer and processor
``hpsv2.1``, ``hpsv2.0``      ``HPS_v2.1_compressed.pt`` / ``HPS_v2_compressed.pt``:
                              ``{"state_dict": open_clip ViT-H-14}`` in float16 (1.9 GB for
                              986M parameters: the published "compressed" files' size)
``imagereward``               ``ImageReward.pt`` + ``med_config.json`` (:mod:`.scorer_imagereward`)
``bert-base-uncased``         ``vocab.txt`` (30 522 WordPiece entries, BERT's special-token ids)
``aesthetic``                 ``sac+logos+ava1-l14-linearMSE.pth``: the MLP's bare state dict, as
                              train_predictor.py saved it from a GPU (storages on ``cuda:0``)
``dreamsim``                  dreamsim 0.2.1's ensemble zip, unpacked, and the DINO hub backbone
                              (:mod:`.scorer_dreamsim`)
============================  ==================================================================

and returns the settings that use them (:func:`scorer_settings`). ``scale="tiny"``: the same
files at tiny widths (tests); the loaders then need the tiny architectures where the official
code hard-codes them (:func:`loader_overrides`). CLIP's BPE files come from
:func:`amcli.rehearse.tokenizer.write_clip_tokenizer` (the real 49 408-token vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from amcli.rehearse.scorer_clip import CLIP_SIZES, write_clip, write_processor
from amcli.rehearse.scorer_files import save_torch

__all__ = ["write_scorers", "scorer_settings", "loader_overrides", "WRITERS", "SCALES"]

SCALES = ("full", "tiny")


def hps_model(scale: str):
    """The open_clip model HPS v2.0 and v2.1 load into: ViT-H-14 on ``meta`` (its keys are those of
    hpsv2's fork of open_clip, compared once), or its tiny stand-in (on the CPU)."""
    if scale == "tiny":
        from am.vision.testing import tiny_open_clip

        return tiny_open_clip()[0]
    import open_clip

    with torch.device("meta"):  # else open_clip builds on the CPU first: 17 s, 4.6 GB
        return open_clip.create_model("ViT-H-14", pretrained=None, device="meta")


def write_hps(folder: Path, scale: str, *, version: str) -> None:
    """``HPS_v2.1_compressed.pt`` (``HPS_v2_compressed.pt`` for ``version`` "v2.0"):
    ``{"state_dict": ...}`` of open_clip's ViT-H-14 keys (those of hpsv2's own fork of
    open_clip, which its loader reads strictly), float16."""
    from am.vision.hps import HPS_VERSIONS
    from amcli.rehearse.scorer_files import random_state

    spec = {k: (tuple(v.shape), torch.float16) for k, v in hps_model(scale).state_dict().items()}
    state = {"state_dict": random_state(spec, seed=21 if version == "v2.1" else 22)}
    save_torch(state, folder / HPS_VERSIONS[version][1])


def write_aesthetic(folder: Path, scale: str) -> None:
    from am.vision.clip import AestheticMLP
    from amcli.rehearse.scorer_files import random_state

    dim = CLIP_SIZES["clip-vit-large-patch14", scale][2]
    spec = {k: (tuple(v.shape), torch.float32) for k, v in AestheticMLP(dim).state_dict().items()}
    file = folder / "sac+logos+ava1-l14-linearMSE.pth"
    save_torch(random_state(spec, seed=31), file, location="cuda:0")


def _imagereward(folder: Path, scale: str) -> None:
    from amcli.rehearse.scorer_imagereward import write_imagereward

    write_imagereward(folder, scale)


def _bert_vocab(folder: Path, scale: str) -> None:
    from amcli.rehearse.scorer_imagereward import write_bert_vocab

    write_bert_vocab(folder)


def _dreamsim(folder: Path, scale: str) -> None:
    from amcli.rehearse.scorer_dreamsim import write_dreamsim

    write_dreamsim(folder, scale)


# resource -> writer(directory, scale); one directory per resource, as $AM_WEIGHTS holds them
WRITERS: dict[str, Callable[[Path, str], None]] = {
    "clip-vit-large-patch14": lambda d, s: write_clip("clip-vit-large-patch14", d, s, seed=11),
    "clip-vit-base-patch32": lambda d, s: write_clip("clip-vit-base-patch32", d, s, seed=13),
    "pickscore": lambda d, s: write_clip("pickscore", d, s, seed=12),
    "clip-vit-h-14-processor": write_processor,
    "hpsv2.1": lambda d, s: write_hps(d, s, version="v2.1"),
    "hpsv2.0": lambda d, s: write_hps(d, s, version="v2.0"),
    "imagereward": _imagereward,
    "bert-base-uncased": _bert_vocab,
    "aesthetic": write_aesthetic,
    "dreamsim": _dreamsim,
}
# scorer (am.vision.SCORERS, and dreamsim) -> the resource its path setting names
SCORER_RESOURCES = {
    "clipscore": "clip-vit-large-patch14",
    "clipscore-authors": "clip-vit-large-patch14",
    "clipscore-hessel": "clip-vit-base-patch32",
    "pickscore": "pickscore",
    "hpsv2.1": "hpsv2.1",
    "hpsv2.1-cos": "hpsv2.1",
    "hpsv2.0": "hpsv2.0",
    "hpsv2.0-cos": "hpsv2.0",
    "imagereward": "imagereward",
    "aesthetic": "aesthetic",
}


def scorer_settings(folder: Path) -> dict:
    """What uses the scorers written in ``folder``: ``AM_WEIGHTS`` (the environment variable;
    enough on its own, and needed for the resources a scorer reads besides its own directory:
    ImageReward's BERT vocabulary, PickScore's tokenizer, the aesthetic head's CLIP), the t2i
    config's ``reward.weights`` and ``python -m amcli.score_images``'s ``--weights`` values."""
    folder = Path(folder).resolve()
    weights = {name: str(folder / resource) for name, resource in SCORER_RESOURCES.items()}
    metrics = dict(weights, dreamsim=str(folder / "dreamsim"))
    return {
        "AM_WEIGHTS": str(folder),
        "reward": {"weights": weights},
        "score_images": [f"{name}={path}" for name, path in metrics.items()],
    }


def write_scorers(folder: Path, *, scale: str = "full", only: Sequence[str] | None = None) -> dict:
    """Write every scorer's random weights (or the resources ``only`` names) into ``folder``
    at ``scale`` (``"full"``: the real sizes, about 11 GB; ``"tiny"``: a few MB) and return
    :func:`scorer_settings`. An existing file is overwritten."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    unknown = sorted(set(only or ()) - set(WRITERS))
    if unknown:
        raise KeyError(f"unknown resource(s) {unknown}; known: {list(WRITERS)}")
    folder = Path(folder)
    for name, write in WRITERS.items():
        if only is None or name in only:
            (folder / name).mkdir(parents=True, exist_ok=True)
            write(folder / name, scale)
    return scorer_settings(folder)


def loader_overrides(scale: str) -> dict[str, dict]:
    """Keyword arguments the suite's loaders need beyond the path, per scorer, at ``scale``:
    none at full size; at tiny size the architectures the official code hard-codes (BLIP's
    ViT-L for ImageReward, ViT-H-14 for HPS, dreamsim's ViT-B/16) in their tiny widths."""
    if scale == "full":
        return {}
    from amcli.rehearse.scorer_dreamsim import tiny_vit
    from amcli.rehearse.scorer_imagereward import vision_config

    return {
        "imagereward": {"vision_config": vision_config("tiny")},
        **{name: {"model": hps_model("tiny")} for name in SCORER_RESOURCES if "hps" in name},
        "dreamsim": {"vit": tiny_vit},
    }
