"""Where each scorer's weights live, and a loud error when they are not there.

Nothing downloads at run time. Every model is a :class:`Resource`: a set of files that must sit
together in one directory. :func:`locate` looks, in order, in

1. the directory the caller passed (``path=``),
2. ``$AM_WEIGHTS/<name>/`` (default ``~/.cache/am/weights/<name>/``),
3. the Hugging Face cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), for
   resources published on the Hub, via ``huggingface_hub.try_to_load_from_cache`` (offline),

and returns the first directory that holds every required file. Otherwise it raises
:class:`MissingWeightsError` naming the model, each missing file, every place looked and where
to get the files. ``python -m amcli.resources`` lists and checks them all, and downloads them
only when asked (``--download NAME``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Resource",
    "RESOURCES",
    "MissingWeightsError",
    "locate",
    "weights_root",
    "check",
    "shown_files",
]


@dataclass(frozen=True)
class Resource:
    """A model's files. ``repo_id`` is the Hugging Face repository (``None``: a plain URL per
    file in ``urls``); ``size`` is the download size, for the listing."""

    name: str
    description: str
    files: tuple[str, ...]
    size: str
    repo_id: str | None = None
    urls: tuple[str, ...] = ()
    note: str = ""


class MissingWeightsError(FileNotFoundError):
    """A model's weight files are not on this machine; the message says where to put them."""


RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in (
        Resource(
            "clip-vit-large-patch14",
            "OpenAI CLIP ViT-L/14 (ClipScore default; features for the aesthetic predictor)",
            ("config.json", "model.safetensors", "vocab.json", "merges.txt"),
            "1.7 GB",
            repo_id="openai/clip-vit-large-patch14",
        ),
        Resource(
            "clip-vit-base-patch32",
            "OpenAI CLIP ViT-B/32 (ClipScore with Hessel et al.'s 2.5 * max(cos, 0))",
            ("config.json", "model.safetensors", "vocab.json", "merges.txt"),
            "0.6 GB",
            repo_id="openai/clip-vit-base-patch32",
        ),
        Resource(
            "pickscore",
            "PickScore_v1 (a CLIP ViT-H/14 fine-tuned on Pick-a-Pic preferences)",
            ("config.json", "model.safetensors"),
            "3.9 GB",
            repo_id="yuvalkirstain/PickScore_v1",
        ),
        Resource(
            "clip-vit-h-14-processor",
            "the tokenizer PickScore is used with (LAION CLIP ViT-H-14's); only these two files",
            ("vocab.json", "merges.txt"),
            "2 MB",
            repo_id="laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        ),
        Resource(
            "hpsv2.0",
            "HPS v2.0 (open_clip ViT-H-14 fine-tuned on HPD v2)",
            ("HPS_v2_compressed.pt",),
            "1.9 GB",
            repo_id="xswu/HPSv2",
        ),
        Resource(
            "hpsv2.1",
            "HPS v2.1 (open_clip ViT-H-14, the second release)",
            ("HPS_v2.1_compressed.pt",),
            "1.9 GB",
            repo_id="xswu/HPSv2",
        ),
        Resource(
            "imagereward",
            "ImageReward v1.0 (BLIP ViT-L + BERT with cross-attention + MLP head)",
            ("ImageReward.pt", "med_config.json"),
            "1.8 GB",
            repo_id="THUDM/ImageReward",
        ),
        Resource(
            "bert-base-uncased",
            "the tokenizer ImageReward is used with; only the vocabulary",
            ("vocab.txt",),
            "0.2 MB",
            repo_id="google-bert/bert-base-uncased",
        ),
        Resource(
            "aesthetic",
            "LAION improved aesthetic predictor (MLP on CLIP ViT-L/14 image embeddings)",
            ("sac+logos+ava1-l14-linearMSE.pth",),
            "4 MB",
            urls=(
                "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
                "sac+logos+ava1-l14-linearMSE.pth",
            ),
            note="also needs clip-vit-large-patch14",
        ),
        Resource(
            "dreamsim",
            "DreamSim ensemble (DINO, CLIP and OpenCLIP ViT-B/16 with its LoRA)",
            (
                "dino_vitb16_pretrain.pth",
                "clip_vitb16_pretrain.pth.tar",
                "open_clip_vitb16_pretrain.pth.tar",
                "ensemble_lora/adapter_config.json",
                "ensemble_lora/adapter_model.safetensors|ensemble_lora/adapter_model.bin",
                "checkpoints/dino_vitbase16_pretrain.pth",
            ),
            "1.9 GB",
            urls=(
                "https://github.com/ssundaram21/dreamsim/releases/download/v0.2.0-checkpoints/"
                "dreamsim_ensemble_checkpoint.zip",
                "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/"
                "dino_vitbase16_pretrain.pth",
            ),
            note=(
                "unzip the ensemble checkpoint into the directory (it holds the first four "
                "entries), and put the DINO backbone under checkpoints/, where torch.hub keeps it"
            ),
        ),
    )
}


def weights_root() -> Path:
    """``$AM_WEIGHTS`` or ``~/.cache/am/weights``: where resources live by default."""
    return Path(os.environ.get("AM_WEIGHTS", Path.home() / ".cache" / "am" / "weights"))


def _hub_dir(resource: Resource) -> Path | None:
    """The HF-cache snapshot directory holding the resource's files, or None."""
    if resource.repo_id is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # huggingface_hub comes with the image extras
        return None
    found = try_to_load_from_cache(resource.repo_id, resource.files[0])
    return Path(found).parent if isinstance(found, str) else None


def _hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return os.environ.get("HF_HUB_CACHE", "~/.cache/huggingface/hub")


def shown_files(resource: Resource) -> str:
    """The resource's files for a message ("a|b" alternatives as "a or b")."""
    return ", ".join(f.replace("|", " or ") for f in resource.files)


def _missing(directory: Path, resource: Resource) -> list[str]:
    # "a|b": either file will do (e.g. an adapter saved as safetensors or as a .bin)
    return [
        f.replace("|", " or ")
        for f in resource.files
        if not any((directory / alt).is_file() for alt in f.split("|"))
    ]


def _get(name: str) -> Resource:
    if name not in RESOURCES:
        raise KeyError(f"unknown resource {name!r}; known: {', '.join(sorted(RESOURCES))}")
    return RESOURCES[name]


def locate(name: str, path: str | os.PathLike | None = None) -> Path:
    """The directory holding every file of resource ``name`` (see the module docstring for the
    search order). Raises :class:`MissingWeightsError` listing every place looked."""
    resource = _get(name)
    looked: list[str] = []
    candidates: list[tuple[str, Path | None]] = []
    if path is not None:
        candidates.append(("path=", Path(path).expanduser()))
    candidates.append(("AM_WEIGHTS", weights_root() / name))
    hub = _hub_dir(resource)
    for label, directory in candidates:
        missing = _missing(directory, resource)
        if not missing:
            return directory
        looked.append(f"  {directory} ({label}): missing {', '.join(missing)}")
    if resource.repo_id is not None:
        if hub is not None and not _missing(hub, resource):
            return hub
        where = hub if hub is not None else f"{_hub_cache()} (no snapshot of {resource.repo_id})"
        missing = _missing(hub, resource) if hub is not None else list(resource.files)
        looked.append(f"  {where} (Hugging Face cache): missing {', '.join(missing)}")
    source = (
        f"the Hugging Face repository {resource.repo_id}"
        if resource.repo_id
        else " and ".join(resource.urls)
    )
    raise MissingWeightsError(
        f"{resource.description} [{name}]: weight files not found. Looked in:\n"
        + "\n".join(looked)
        + f"\nGet them from {source} and put {shown_files(resource)} in "
        f"{weights_root() / name} ({resource.note or 'all in that directory'}), or run "
        f"`python -m amcli.resources --download {name}` on a machine with network access."
    )


@dataclass(frozen=True)
class Status:
    """One row of the resource listing: where the files were found, or None."""

    resource: Resource
    found: Path | None
    problem: str


def check(path_overrides: dict[str, str] | None = None) -> list[Status]:
    """Locate every resource; never raises."""
    rows = []
    for name, resource in RESOURCES.items():
        try:
            found, problem = locate(name, (path_overrides or {}).get(name)), ""
        except MissingWeightsError as err:
            found, problem = None, str(err)
        rows.append(Status(resource, found, problem))
    return rows
