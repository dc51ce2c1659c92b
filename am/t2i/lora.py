"""LoRA on a diffusers denoiser through peft, and the frozen base it is measured against.

The fine-tuned model is the denoiser with a LoRA adapter (``module.add_adapter``, diffusers'
peft integration); the base is *the same module with its adapters disabled*
(:class:`AdaptersDisabled`), so the lean adjoint's VJPs and the regression targets use the
pretrained weights without a second copy in memory. Results are saved in diffusers' LoRA format
(with the adapter metadata, without which ``lora_alpha != r`` is silently lost on loading) and
load back with ``pipe.load_lora_weights(dir)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from am.fields import FieldError, check_int, check_number

__all__ = ["LoraSettings", "add_lora", "AdaptersDisabled", "save_lora", "DENOISER_OF"]

# pipeline class name -> (denoiser attribute, keyword prefix of its save_lora_weights)
DENOISER_OF: dict[str, tuple[str, str]] = {
    "StableDiffusionPipeline": ("unet", "unet"),
    "StableDiffusion3Pipeline": ("transformer", "transformer"),
    "FluxPipeline": ("transformer", "transformer"),
}


@dataclass(frozen=True)
class LoraSettings:
    """peft LoRA settings: ``rank``, ``alpha`` (scale ``alpha / rank``), ``target_modules``
    (attention projections by default, as diffusers' training scripts), ``dropout``."""

    rank: int = 4
    alpha: float = 4.0
    target_modules: tuple[str, ...] = field(default=("to_q", "to_k", "to_v", "to_out.0"))
    dropout: float = 0.0

    def __post_init__(self):
        check_int("rank", self.rank)
        check_number("alpha", self.alpha, minimum=0.0, strict=True)
        check_number("dropout", self.dropout, minimum=0.0)
        if not self.dropout < 1:
            raise FieldError("dropout", f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.target_modules:
            raise FieldError("target_modules", "LoRA target_modules must not be empty")


def add_lora(module: nn.Module, settings: LoraSettings) -> nn.Module:
    """Add a trainable LoRA adapter to a diffusers model; every other weight is frozen."""
    from peft import LoraConfig

    module.requires_grad_(False)
    module.add_adapter(
        LoraConfig(
            r=settings.rank,
            lora_alpha=settings.alpha,
            target_modules=list(settings.target_modules),
            lora_dropout=settings.dropout,
            init_lora_weights=True,  # B = 0: the fine-tuned model starts at the base
        )
    )
    # the adapter trains in float32 beside bfloat16/float16 frozen weights (peft casts the
    # activations at the adapter's boundary)
    for p in module.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return module


class AdaptersDisabled(nn.Module):
    """``velocity`` evaluated with the adapters of ``module`` switched off: the frozen base.

    Holds no parameters of its own (the shared module is kept outside the module tree), so
    freezing this base does not freeze the LoRA weights of the model it shares them with.

    Gradient checkpointing is switched off for the base's calls: a checkpointed forward is
    recomputed during the backward pass, by then with the adapters enabled again, and the
    lean adjoint's VJPs would silently use the fine-tuned weights (the test of this module
    catches it). A base call is one step of one batch, so its activations are small anyway."""

    def __init__(self, velocity: Callable, module: nn.Module):
        super().__init__()
        self._shared = (velocity, module)  # a tuple: not registered as submodules

    def forward(self, *args, **kwargs) -> Tensor:
        velocity, module = self._shared
        checkpointing = getattr(module, "is_gradient_checkpointing", False)
        if checkpointing:
            module.disable_gradient_checkpointing()
        module.disable_adapters()
        try:
            return velocity(*args, **kwargs)
        finally:
            module.enable_adapters()
            if checkpointing:
                module.enable_gradient_checkpointing()


def save_lora(pipe, directory: str | os.PathLike) -> None:
    """Save the denoiser's LoRA in diffusers' format: ``pipe.load_lora_weights(directory)``
    loads it into a fresh pipeline of the same base."""
    from peft.utils import get_peft_model_state_dict

    name = type(pipe).__name__
    if name not in DENOISER_OF:
        raise ValueError(f"no LoRA saving for {name}; supported: {', '.join(DENOISER_OF)}")
    attribute, prefix = DENOISER_OF[name]
    module = getattr(pipe, attribute)
    type(pipe).save_lora_weights(
        str(directory),
        **{
            f"{prefix}_lora_layers": get_peft_model_state_dict(module),
            f"{prefix}_lora_adapter_metadata": module.peft_config["default"].to_dict(),
        },
    )
