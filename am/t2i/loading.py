"""Load a diffusers pipeline from a local directory or the Hugging Face cache, offline.

``load_pipeline("stabilityai/stable-diffusion-3.5-medium")`` reads the cache
(``$HF_HUB_CACHE``) without touching the network; ``load_pipeline("/data/sd15")`` a directory
saved with ``save_pretrained``. A missing model raises :class:`ModelNotFoundError` naming the
model, the file looked for (``model_index.json``) and every place looked.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["ModelNotFoundError", "resolve_model", "load_pipeline", "DTYPES"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFoundError(FileNotFoundError):
    """A pipeline's files are not on this machine."""


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
        + "\nDownload it on a machine with network access (`huggingface-cli download "
        f"{path_or_id}`) and copy the cache, or pass a directory saved with save_pretrained."
    )


def load_pipeline(path_or_id: str, dtype: str = "float32", device: str | torch.device = "cpu"):
    """The pipeline of ``path_or_id`` (see :func:`resolve_model`), every component in eval
    mode, frozen, in ``dtype`` (``float32``, ``bfloat16`` or ``float16``) on ``device``."""
    from diffusers import DiffusionPipeline

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    directory = resolve_model(path_or_id)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = DiffusionPipeline.from_pretrained(directory, dtype=DTYPES[dtype], local_files_only=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval().requires_grad_(False)
    return pipe.to(device)
