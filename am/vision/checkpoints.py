"""Strict checkpoint checks: every key a model needs, none it does not, each with its shape.

A weight file that only partly fits its model must not load: transformers fills missing keys
with random weights and prints a report, peft warns about mis-keyed adapter entries, torch's
``load_state_dict`` raises without naming the file. Here the file's keys and shapes are read
from its header (safetensors) or without reading tensor data (torch's zip format, mapped to
the ``meta`` device), compared with the model's own (built on ``meta``, so nothing is
allocated), and any difference is one :class:`WeightsMismatchError` naming the file, the model
and the first offending keys -- before any weights are read, and the same check runs in
``python -m amcli.resources --check``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "WeightsMismatchError",
    "Shapes",
    "read_shapes",
    "shapes_of",
    "module_shapes",
    "check_shapes",
]

# key -> shape
Shapes = dict[str, tuple[int, ...]]
FIRST = 5  # how many offending keys a message lists


class WeightsMismatchError(ValueError):
    """A weight file's keys or shapes differ from its model's; the message names the file, the
    model and the first offending keys."""


def shapes_of(state: Mapping[str, Tensor]) -> Shapes:
    """``{key: shape}`` of a state dict (real or ``meta`` tensors); non-tensors are skipped."""
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, Tensor)}


def module_shapes(module: nn.Module) -> Shapes:
    """The state-dict shapes of ``module`` (persistent parameters and buffers)."""
    return shapes_of(module.state_dict())


def read_shapes(file: str | os.PathLike, subkey: str | None = None) -> Shapes:
    """Keys and shapes of the tensors in ``file`` without reading their data: the header of a
    ``.safetensors`` file, otherwise ``torch.load`` to the ``meta`` device (``weights_only``).
    ``subkey``: a torch file holding ``{subkey: state_dict}`` (``"state_dict"``) is unwrapped
    when that key is present. ValueError naming the file when it is neither format."""
    file = Path(file)
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{file}: not a readable safetensors file ({err})") from err
    try:
        obj = torch.load(file, map_location="meta", weights_only=True)
    except Exception as err:  # pickle, zip and weights_only errors alike
        raise ValueError(f"{file}: not a readable torch checkpoint ({err})") from err
    if subkey is not None and isinstance(obj, dict) and isinstance(obj.get(subkey), dict):
        obj = obj[subkey]
    if not isinstance(obj, dict):
        raise ValueError(f"{file}: holds a {type(obj).__name__}, not a state dict")
    return shapes_of(obj)


def _first(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys)} in all)" if len(keys) > FIRST else ""
    return ", ".join(keys[:FIRST]) + more


def check_shapes(
    found: Shapes,
    expected: Shapes,
    *,
    file: str | os.PathLike,
    model: str,
    ignore: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`WeightsMismatchError` unless ``found`` (the file's keys and shapes) equals
    ``expected`` (the model's). ``ignore``: ``{key prefix: reason}`` of file keys the model has
    no use for (the reason is for the reader of the call site; the keys are dropped)."""
    prefixes = tuple(ignore or ())
    found = {k: v for k, v in found.items() if not (prefixes and k.startswith(prefixes))}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {_first(unexpected)}")
    if wrong:
        shown = ", ".join(
            f"{k} {list(found[k])} (model {list(expected[k])})" for k in wrong[:FIRST]
        )
        parts.append(f"wrong shape for {len(wrong)} key(s): {shown}")
    raise WeightsMismatchError(f"{file} does not fit {model}: " + "; ".join(parts))
