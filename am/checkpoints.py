"""What a checkpoint keeps of a model: its trained state, not its frozen weights.

A LoRA run on a text-to-image model trains a few million parameters of a denoiser with billions
(SD 3.5 medium: 2.5 B, 5 GB in bf16); writing the whole state dict at every checkpoint would cost
gigabytes per file and seconds per save. A checkpoint therefore holds the *trained state*: the
parameters that require gradients and the buffers (small, and possibly updated in training).
The frozen parameters come from the model the loader builds, as they did for training; a
*fingerprint* of them (per tensor: the sum and the sum of absolute values, in float64) is stored
beside, so that loading into a model built on other base weights is refused instead of silently
combining a fine-tune with the wrong base. Checkpoints that hold a full state dict (written
before this module existed) load as they always did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from am.run_dir import compare, defaults, flatten
from am.train_config import RESUMABLE_CHANGES

__all__ = [
    "trained_state",
    "frozen_fingerprint",
    "load_trained_state",
    "load_weights",
    "check_resumable",
    "atomic_save",
    "truncate_log",
]

# Relative tolerance of the fingerprint: the same weights give the same sums up to the order of
# float64 additions (another device or thread count); other weights differ in the leading digits.
_RTOL = 1e-6


def _frozen(model: nn.Module) -> dict[str, Tensor]:
    """``{state-dict key: tensor}`` of the parameters that do not require gradients."""
    return {
        k: v
        for k, v in model.state_dict(keep_vars=True).items()
        if isinstance(v, nn.Parameter) and not v.requires_grad
    }


def trained_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict without its frozen parameters (detached tensors)."""
    frozen = _frozen(model)
    return {k: v.detach() for k, v in model.state_dict().items() if k not in frozen}


def _sums(tensors) -> Tensor:
    """``[n, 2]`` float64: per tensor, the sum and the sum of absolute values of its entries."""
    sums = [torch.stack([t.double().sum(), t.double().abs().sum()]).cpu() for t in tensors]
    return torch.stack(sums) if sums else torch.zeros(0, 2, dtype=torch.float64)


@torch.no_grad()
def frozen_fingerprint(model: nn.Module) -> dict:
    """``{"names": [...], "sums": [n, 2] float64}``: per frozen parameter (in state-dict order),
    the sum and the sum of absolute values of its entries."""
    frozen = _frozen(model)
    return {"names": list(frozen), "sums": _sums(v.detach() for v in frozen.values())}


@torch.no_grad()
def _check_fingerprint(model: nn.Module, stored: dict, source: str) -> None:
    """The model's tensors under ``stored["names"]`` must be those the checkpoint was written
    with (whether the loading model marks them trainable or not)."""
    names, mine = list(stored["names"]), model.state_dict()
    absent = [k for k in names if k not in mine]
    if absent:
        raise ValueError(
            f"{source} was written for a model with other frozen parameters (the model here has "
            f"no {absent[:3]}{' ...' if len(absent) > 3 else ''}): build the model as for training"
        )
    a, b = _sums(mine[k] for k in names), stored["sums"].to(torch.float64)
    scale = torch.maximum(a[:, 1], b[:, 1]) + 1e-30
    bad = ((a - b).abs() > _RTOL * scale[:, None]).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"{source} was trained on other base weights: {len(bad)} of the {len(names)} frozen "
            f"parameters it was written with differ here (e.g. {[names[i] for i in bad[:3]]}); "
            "load the base model the run was trained from"
        )


def load_trained_state(
    model: nn.Module, state: dict[str, Tensor], *, source: str, fingerprint: dict | None = None
) -> None:
    """Load a :func:`trained_state` (or a full state dict) into ``model``, in place.

    Every entry of ``state`` must be one of the model's; every entry of the model that ``state``
    lacks must be a parameter that was frozen when it was written (named by ``fingerprint``, and
    equal to what it was then; without a fingerprint, one the model here freezes). Nothing is
    loaded unless all of that holds. ``source`` names the file in error messages."""
    keys = model.state_dict().keys()
    unexpected = [k for k in state if k not in keys]
    if fingerprint is not None:
        _check_fingerprint(model, fingerprint, source)
        may_lack = set(fingerprint["names"])
    else:
        may_lack = set(_frozen(model))
    lacking = [k for k in keys if k not in state and k not in may_lack]
    if lacking or unexpected:
        raise ValueError(
            f"{source} does not fit the model: missing trained entries {lacking[:5]}"
            f"{' ...' if len(lacking) > 5 else ''}, unexpected entries "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} "
            "(build the model as for training: same architecture, same adapters)"
        )
    model.load_state_dict(state, strict=False)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to ``path.tmp``, then ``os.replace``: a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def check_resumable(state: dict, *, path: Path, train, method) -> None:
    """Refuse to resume the checkpoint ``state`` (read from ``path``) under a ``train`` /
    ``method`` config other than the one it was written under, naming the keys: resuming under
    another config would silently mix two runs. A key the checkpoint lacks (written before the
    field existed) reads as the field's default, so adding an option does not orphan older runs;
    the budget may grow (never shrink below the checkpoint's iteration) and the keys of
    :data:`am.train_config.RESUMABLE_CHANGES` may change."""
    mine = {**flatten("train", train), **flatten("method", method)}
    saved = {"train": state.get("config"), "method": state.get("method_config")}
    theirs = {f"{part}.{k}": v for part, d in saved.items() for k, v in (d or {}).items()}
    known = {**defaults("train", type(train)), **defaults("method", type(method))}
    ignore = [f"train.{k}" for k in RESUMABLE_CHANGES] + ["train.iterations"]
    diff = compare(theirs, mine, defaults=known, ignore=ignore).keys
    if None in saved.values():  # written without its configs: nothing to resume under
        diff = [k for k in mine if k not in ignore]
    if diff:
        raise ValueError(
            f"checkpoint {path} was written under a different config ({', '.join(diff)}); "
            "resume with the same config or start in a new run directory"
        )
    if int(state["iteration"]) > train.iterations:
        raise ValueError(
            f"checkpoint {path} is at iteration {int(state['iteration'])}, past "
            f"train.iterations = {train.iterations}; a budget can be extended, not cut"
        )


def truncate_log(log: Path, iteration: int) -> None:
    """Drop the lines of the ``metrics.jsonl`` at ``log`` written after ``iteration``, so that a
    resumed run's log has no duplicates (atomically; nothing to do without a log)."""
    if not log.exists():
        return
    keep = [ln for ln in log.read_text().splitlines() if json.loads(ln)["iteration"] <= iteration]
    tmp = log.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, log)


def load_weights(model: nn.Module, path: str | Path, *, ema: bool = True) -> nn.Module:
    """Load fine-tuned weights into ``model`` (built as for training) and return it.

    ``path``: a trainer's ``checkpoint.pt`` (read with ``weights_only=True``; with ``ema`` and an
    EMA in the checkpoint, the EMA weights, as :func:`am.finetune` returns them) or a
    ``.safetensors`` file of the model's state dict (what ``python -m amcli finetune`` exports).
    A checkpoint holds only the trained state: the frozen parameters are ``model``'s own, and
    must be those the run was trained with (checked against the checkpoint's fingerprint).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        model.load_state_dict(load_file(path))
        return model
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a trainer checkpoint (no 'model' entry)")
    load_trained_state(model, state["model"], source=str(path), fingerprint=state.get("frozen"))
    if ema and state.get("ema") is not None:
        params = [p for p in model.parameters() if p.requires_grad]
        if len(params) != len(state["ema"]):
            raise ValueError(
                f"{path}: the EMA holds {len(state['ema'])} tensors, the model has "
                f"{len(params)} trainable parameters (build the model as for training)"
            )
        with torch.no_grad():
            for p, e in zip(params, state["ema"], strict=True):
                p.copy_(e)
    return model
