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

import torch
from torch import Tensor, nn

__all__ = ["trained_state", "frozen_fingerprint", "load_trained_state"]

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
