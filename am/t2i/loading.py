"""Load a diffusers pipeline from a local directory or the Hugging Face cache, offline.

``load_pipeline("stabilityai/stable-diffusion-3.5-medium")`` reads the cache
(``$HF_HUB_CACHE``) without touching the network; ``load_pipeline("/data/sd15")`` a directory
saved with ``save_pretrained``. A missing model raises :class:`ModelNotFoundError` naming the
model, the file looked for (``model_index.json``) and every place looked; a pipeline family this
suite cannot fine-tune raises :class:`UnsupportedModelError` (:func:`model_family`, which reads
``model_index.json`` alone, so a CLI can refuse it before loading gigabytes).

What the hub's real layouts need beyond ``DiffusionPipeline.from_pretrained(directory)``, found
by loading random-weight pipelines written in them (:mod:`amcli.rehearse`):

* a component saved as ``None`` (``[null, null]`` in ``model_index.json``: SD 3.5 without T5)
  must be passed as ``None`` again, else diffusers refuses the folder ("expected [...
  'text_encoder_3' ...] but only {...} were passed"): :func:`absent_components`;
* ``variant="fp16"`` files (SD 1.5 ships them beside the float32 ones) are read only when asked
  for, and where none exist diffusers says so without naming the folder: :func:`check_variant`;
* SD 1.5's safety checker (a 304M-parameter CLIP vision tower, 1.2 GB in float32, moved to the
  GPU with the rest) is not loaded: fine-tuning never calls it, and in ``pipe(...)`` it turns
  the images it flags black, so an evaluation through the pipeline's own sampler would score
  black images where the suite's sampler scores the model's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

__all__ = [
    "ModelNotFoundError",
    "UnsupportedModelError",
    "resolve_model",
    "model_family",
    "load_pipeline",
    "check_variant",
    "absent_components",
    "DTYPES",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFoundError(FileNotFoundError):
    """A pipeline's files are not on this machine."""


class UnsupportedModelError(ValueError):
    """A pipeline whose family (``model_index.json``'s ``_class_name``) this suite cannot
    fine-tune."""


def resolve_model(path_or_id: str) -> Path:
    """The directory holding ``model_index.json`` for a local path or a Hub id (cache only)."""
    looked = []
    local = Path(path_or_id).expanduser()
    if (local / "model_index.json").is_file():
        return local
    looked.append(
        f"  {local.resolve()}: {'no model_index.json' if local.is_dir() else 'no such directory'}"
    )
    if path_or_id.count("/") == 1 and not local.exists():
        from huggingface_hub import constants, try_to_load_from_cache

        found = try_to_load_from_cache(path_or_id, "model_index.json")
        if isinstance(found, str):
            return Path(found).parent
        looked.append(
            f"  {constants.HF_HUB_CACHE}: no snapshot of {path_or_id} with model_index.json"
        )
    raise ModelNotFoundError(
        f"model {path_or_id!r}: model_index.json not found. Looked in:\n"
        + "\n".join(looked)
        + f"\nDownload it on a machine with network access (`hf download {path_or_id}`) and "
        "copy the cache, or pass a directory saved with save_pretrained."
    )


def model_family(path_or_id: str) -> str:
    """The pipeline class ``model_index.json`` names (``_class_name``), checked against the
    families this suite fine-tunes (:data:`am.t2i.lora.DENOISER_OF`), without loading any
    weights. Raises :class:`ModelNotFoundError` (no ``model_index.json``) or
    :class:`UnsupportedModelError`."""
    from am.t2i.lora import DENOISER_OF

    index = resolve_model(path_or_id) / "model_index.json"
    try:
        name = json.loads(index.read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError) as e:
        raise UnsupportedModelError(f"{index}: not a diffusers model index ({e})") from None
    if name not in DENOISER_OF:
        raise UnsupportedModelError(
            f"{index} names the pipeline {name!r}, which this suite cannot fine-tune; "
            f"supported: {', '.join(DENOISER_OF)}"
        )
    return name


def _index(directory: Path) -> dict:
    return json.loads((directory / "model_index.json").read_text())


def absent_components(directory: Path) -> list[str]:
    """The components ``model_index.json`` lists as ``[null, null]``: saved as ``None``."""
    return sorted(
        name
        for name, entry in _index(directory).items()
        if not name.startswith("_") and isinstance(entry, list) and entry == [None, None]
    )


def check_variant(path_or_id: str, variant: str) -> None:
    """Raise :class:`ModelNotFoundError` unless some component of the pipeline at ``path_or_id``
    has weight files of ``variant`` (``*.fp16.safetensors``, ``*.fp16-00001-of-00002...``),
    naming every component folder looked in. Components without them load their main files
    (diffusers' behaviour)."""
    directory = resolve_model(path_or_id)
    looked = []
    for name, entry in _index(directory).items():
        folder = directory / name
        if name.startswith("_") or not isinstance(entry, list) or None in entry:
            continue
        weights = [f.name for f in folder.glob("*") if f.suffix in (".safetensors", ".bin")]
        if any(f".{variant}." in w or f".{variant}-" in w for w in weights):
            return
        if weights:
            looked.append(f"  {folder}: {', '.join(sorted(weights)[:3])}")
    raise ModelNotFoundError(
        f"model {path_or_id!r}: no weight files of variant {variant!r} (*.{variant}.safetensors) "
        "in any component. Looked in:\n" + "\n".join(looked)
        + "\nDrop the variant to load the main files, or download the variant's files."
    )  # fmt: skip


def load_pipeline(
    path_or_id: str,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    *,
    variant: str | None = None,
):
    """The pipeline of ``path_or_id`` (see :func:`resolve_model`; a family this suite cannot
    fine-tune is refused first, :func:`model_family`), every component in eval mode, frozen, in
    ``dtype`` (``float32``, ``bfloat16`` or ``float16``) on ``device``. ``variant``: read the
    components' ``*.<variant>.safetensors`` files (``fp16``: half the download of SD 1.5; the
    weights are cast to ``dtype`` all the same). Components saved as ``None`` load as ``None``
    (:func:`absent_components`); a safety checker is not loaded (module docstring)."""
    from diffusers import DiffusionPipeline

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    directory = resolve_model(path_or_id)
    model_family(str(directory))  # before any weights load
    if variant is not None:
        check_variant(str(directory), variant)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    absent: dict = dict.fromkeys(absent_components(directory))
    if "safety_checker" in _index(directory):  # its image processor serves it alone
        absent.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = DiffusionPipeline.from_pretrained(
        directory, dtype=DTYPES[dtype], local_files_only=True, variant=variant, **absent
    )
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval().requires_grad_(False)
    return pipe.to(device)
