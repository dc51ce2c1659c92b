"""Random tensors for given keys and shapes, written in the formats the scorers ship in.

The rehearsal's scorers are written from key -> shape tables, never by building the model and
saving it: a full-size model in memory next to its serialised copy would double the peak (4 GB
of PickScore weights, 8 GB peak), and a table taken from the official code's module names is
also an independent check of the suite's loaders (they must accept what the official code
saved, not what the suite itself would save).

* :func:`write_safetensors` streams one tensor at a time into a ``.safetensors`` file (the
  format's header, then the raw bytes, in safetensors' own order), so writing PickScore peaks at
  its largest tensor, not at its 3.9 GB.
* :func:`save_torch` is ``torch.save`` with an optional storage location tag: a file that a
  training script saved from a GPU says ``cuda:0`` inside, and loads on a CPU-only machine only
  with ``map_location`` (the official loaders pass it; a loader that forgets would fail here).
* :func:`random_tensor` fills one entry: matrices ``N(0, 0.02^2)``, LayerNorm scales around 1,
  biases small, ``logit_scale`` at CLIP's ``ln 100``, integer ``position_ids`` buffers
  ``0 .. n-1``. Finite, deterministic (a seeded generator), meaningless.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "Spec",
    "random_tensor",
    "random_state",
    "write_safetensors",
    "save_torch",
    "file_sizes",
    "vit_spec",
]

# key -> (shape, dtype)
Spec = dict[str, tuple[tuple[int, ...], torch.dtype]]
SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
}
LOGIT_SCALE = math.log(100.0)  # CLIP's trained temperature (exp = 100), as every release has it


def random_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype, gen) -> Tensor:
    """One random entry ``name`` of ``shape`` and ``dtype`` (see the module docstring)."""
    if not dtype.is_floating_point:  # position_ids: the buffer older code saved with the weights
        return torch.arange(shape[-1], dtype=dtype).expand(shape).contiguous()
    if name.endswith("logit_scale"):
        return torch.full(shape, LOGIT_SCALE).to(dtype)
    noise = torch.randn(shape, generator=gen)
    if len(shape) == 1 and name.endswith("weight"):  # every 1-D weight here is a norm's scale
        return (1 + 0.1 * noise).to(dtype)
    if len(shape) == 1 and name.endswith("bias"):
        return (0.02 * noise).to(dtype)
    return (0.02 * noise).to(dtype)


def _generator(seed: int, key: str) -> torch.Generator:
    # one generator per key: a tensor's values do not depend on the order files list them in
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))


def random_state(spec: Spec, *, seed: int) -> dict[str, Tensor]:
    """Every entry of ``spec``, filled by :func:`random_tensor` (each key its own generator)."""
    return {k: random_tensor(k, *spec[k], _generator(seed, k)) for k in sorted(spec)}


def write_safetensors(
    file: Path,
    spec: Spec,
    *,
    seed: int,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``spec``'s entries, made one at a time by :func:`random_tensor` (as
    :func:`random_state` makes them), into the safetensors file ``file``: an 8-byte little-endian header length, the JSON header
    (``__metadata__`` first; ``{"format": "pt"}`` as torch's writers put it), padded with
    spaces to a multiple of 8, then each tensor's bytes, largest dtype first, then by name (the
    order the safetensors library writes)."""
    order = sorted(spec, key=lambda k: (-spec[k][1].itemsize, k))
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for key in order:
        shape, dtype = spec[key]
        size = math.prod(shape) * dtype.itemsize
        header[key] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for key in order:
            tensor = random_tensor(key, *spec[key], _generator(seed, key))
            f.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return file


@contextlib.contextmanager
def _location(tag: str | None) -> Iterator[None]:
    """While active, ``torch.save`` records every CPU storage as living on ``tag``."""
    if tag is None:
        yield
        return
    from torch import serialization

    entry = (0, lambda s: tag if s.device.type == "cpu" else None, lambda s, loc: None)
    # torch's public register_package cannot unregister: the entry goes into its (sorted)
    # registry directly and comes out again, so nothing outlives this save
    serialization._package_registry.insert(0, entry)
    try:
        yield
    finally:
        serialization._package_registry.remove(entry)


def save_torch(obj: object, file: Path, *, location: str | None = None) -> Path:
    """``torch.save(obj, file)`` (zip format), with every storage tagged ``location`` (e.g.
    ``"cuda:0"``: what a file saved from a GPU records) when given."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with _location(location):
        torch.save(obj, file)
    return file


def file_sizes(folder: Path) -> dict[str, int]:
    """``{relative path: bytes}`` of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def vit_spec(
    prefix: str, *, width: int, depth: int, image: int, patch: int, mlp: int | None = None
) -> Spec:
    """Keys and shapes of a timm-style ViT as DINO's and BLIP's ``vision_transformer.py`` name
    them (qkv bias, no classifier head): ``cls_token``, ``pos_embed``, ``patch_embed.proj``,
    ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``; float32.
    ``mlp``: the hidden width (default 4 x ``width``); ``prefix`` ends with a dot or is empty."""
    mlp = mlp or 4 * width
    f32 = torch.float32
    spec: Spec = {
        f"{prefix}cls_token": ((1, 1, width), f32),
        f"{prefix}pos_embed": ((1, (image // patch) ** 2 + 1, width), f32),
        f"{prefix}patch_embed.proj.weight": ((width, 3, patch, patch), f32),
        f"{prefix}patch_embed.proj.bias": ((width,), f32),
        f"{prefix}norm.weight": ((width,), f32),
        f"{prefix}norm.bias": ((width,), f32),
    }
    for i in range(depth):
        block = f"{prefix}blocks.{i}."
        for name, out, inp in (("attn.qkv", 3 * width, width), ("attn.proj", width, width),
                               ("mlp.fc1", mlp, width), ("mlp.fc2", width, mlp)):  # fmt: skip
            spec[f"{block}{name}.weight"] = ((out, inp), f32)
            spec[f"{block}{name}.bias"] = ((out,), f32)
        for norm in ("norm1", "norm2"):
            spec[f"{block}{norm}.weight"] = ((width,), f32)
            spec[f"{block}{norm}.bias"] = ((width,), f32)
    return spec
