"""Assemble a text-to-image fine-tuning problem from a diffusers pipeline.

:func:`text_to_image` turns a pipeline, a prompt list and an image scorer into what
:func:`am.finetune` (and every method of the registry) takes: the frozen base velocity in latent
space, the reward on latents (decoded, scored against the prompt), the schedule of the
pipeline's scheduler, the latent shape, the prompt sampler and the empty prompt for guidance,
and, with LoRA, the model to train (the denoiser with its adapter).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from am.t2i.denoisers import FluxVelocity, SD3Velocity, UNetVelocity
from am.t2i.lora import DENOISER_OF, AdaptersDisabled, LoraSettings, add_lora, save_lora
from am.t2i.prompts import PromptSampler, null_condition
from am.t2i.reward import DecodedReward, LatentDecoder
from am.t2i.schedules import prediction_type, schedule_from_scheduler

__all__ = ["TextToImage", "text_to_image", "VELOCITY_OF", "denoiser_velocity"]


def _unet(pipe, schedule, guidance):
    return UNetVelocity(pipe.unet, schedule, prediction_type(pipe.scheduler))


def _sd3(pipe, schedule, guidance):
    return SD3Velocity(pipe.transformer, schedule, pipe.scheduler.config.num_train_timesteps)


def _flux(pipe, schedule, guidance):
    return FluxVelocity(pipe.transformer, schedule, guidance)


# pipeline class name -> its denoiser as a velocity on the scheduler's schedule
VELOCITY_OF: dict[str, Callable] = {
    "StableDiffusionPipeline": _unet,
    "StableDiffusion3Pipeline": _sd3,
    "FluxPipeline": _flux,
}


def dynamic_shift(pipe, height: int, width: int) -> float:
    """``mu`` of a dynamically shifted scheduler (Flux) at this image size: diffusers'
    ``calculate_shift`` of the packed latent's sequence length, as the Flux pipeline computes it."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    c = pipe.scheduler.config
    seq_len = (height // pipe.vae_scale_factor // 2) * (width // pipe.vae_scale_factor // 2)
    return calculate_shift(seq_len, c.get("base_image_seq_len", 256),
                           c.get("max_image_seq_len", 4096), c.get("base_shift", 0.5),
                           c.get("max_shift", 1.15))  # fmt: skip


def denoiser_velocity(
    pipe, *, mu: float | None = None, height: int | None = None, width: int | None = None,
    guidance: float = 3.5, schedule_options: dict | None = None,
) -> nn.Module:  # fmt: skip
    """The pipeline's denoiser as a velocity ``(z, t, cond)`` on its scheduler's schedule.
    Dynamically shifted schedulers (Flux) take ``mu``, or compute it from ``height, width``;
    ``guidance``: Flux-dev's distilled guidance scale; ``schedule_options``: ``betas``,
    ``final_alpha_bar``, ``num_steps`` of :func:`am.t2i.schedules.schedule_from_scheduler` (a
    fine-tuning schedule swapped in, as the Adjoint Matching authors do for SD 1.5)."""
    name = type(pipe).__name__
    if name not in VELOCITY_OF:
        raise ValueError(f"unsupported pipeline {name}; supported: {', '.join(VELOCITY_OF)}")
    if mu is None and pipe.scheduler.config.get("use_dynamic_shifting") and height and width:
        mu = dynamic_shift(pipe, height, width)
    schedule = schedule_from_scheduler(pipe.scheduler, mu=mu, **(schedule_options or {}))
    return VELOCITY_OF[name](pipe, schedule, guidance)


@dataclass
class TextToImage:
    """Everything :func:`am.finetune` takes for one pipeline (see :meth:`finetune_kwargs`)."""

    pipe: Any
    base: nn.Module
    model: nn.Module | None
    reward: DecodedReward
    sample_shape: tuple[int, int, int]
    conditions: PromptSampler
    null_condition: dict
    lora: LoraSettings | None

    @property
    def schedule(self):
        return self.base.schedule if self.lora is None else self.model.schedule

    def finetune_kwargs(self) -> dict[str, Any]:
        """``base, reward, schedule, sample_shape, conditions, null_condition, model``."""
        return dict(
            base=self.base, reward=self.reward, schedule=self.schedule,
            sample_shape=self.sample_shape, conditions=self.conditions,
            null_condition=self.null_condition, model=self.model,
        )  # fmt: skip

    def save(self, trained: nn.Module, directory: str | os.PathLike) -> Path:
        """Save the fine-tuned denoiser: LoRA in diffusers' format (``pipe.load_lora_weights``),
        a full fine-tune with ``save_pretrained`` into ``directory/<unet|transformer>``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.lora is not None:
            save_lora(self.pipe, directory)
            return directory
        attribute, _ = DENOISER_OF[type(self.pipe).__name__]
        getattr(trained, attribute).save_pretrained(directory / attribute)
        return directory / attribute


def text_to_image(
    pipe,
    prompts: Sequence[str],
    scorer: Callable,
    *,
    height: int,
    width: int,
    lora: LoraSettings | None = None,
    mu: float | None = None,
    guidance: float = 3.5,
    schedule_options: dict | None = None,
    prompt_order: str = "uniform",
    seed: int = 0,
) -> TextToImage:
    """Set up fine-tuning ``pipe``'s denoiser towards ``p_base(z | prompt) exp(lambda r)`` with
    ``r = scorer(decode(z), prompt)`` (``scorer``: ``(images [B, 3, H, W] in [0, 1], prompts)
    -> [B]``, e.g. :func:`am.vision.load_scorer`). ``lora``: train a LoRA adapter (the base is
    the same denoiser with the adapter disabled); ``None``: train a full copy (the default
    model of :func:`am.finetune`). ``height``, ``width``: the image size in pixels; ``mu``:
    a dynamically shifted scheduler's shift (default: from the image size, as Flux computes
    it); ``guidance``: Flux-dev's distilled guidance scale (other models ignore it);
    ``schedule_options``: see :func:`denoiser_velocity`; ``prompt_order``, ``seed``: how the
    prompts are drawn (:class:`am.t2i.prompts.PromptSampler`)."""
    name = type(pipe).__name__
    if name not in DENOISER_OF:
        raise ValueError(f"unsupported pipeline {name}; supported: {', '.join(DENOISER_OF)}")
    velocity = denoiser_velocity(
        pipe, mu=mu, height=height, width=width, guidance=guidance,
        schedule_options=schedule_options,
    )  # fmt: skip
    factor = pipe.vae_scale_factor
    multiple = factor * velocity.latent_multiple
    if height % multiple or width % multiple:
        raise ValueError(f"height and width must be multiples of {multiple}, got {height}x{width}")
    for component in pipe.components.values():
        if isinstance(component, nn.Module):
            component.eval().requires_grad_(False)
    model = None
    base: nn.Module = velocity
    if lora is not None:
        attribute, _ = DENOISER_OF[name]
        add_lora(getattr(pipe, attribute), lora)
        model, base = velocity, AdaptersDisabled(velocity, getattr(pipe, attribute))
    channels = pipe.vae.config.latent_channels
    return TextToImage(
        pipe=pipe,
        base=base,
        model=model,
        reward=DecodedReward(LatentDecoder(pipe.vae), scorer, prompts),
        sample_shape=(channels, height // factor, width // factor),
        conditions=PromptSampler(pipe, prompts, order=prompt_order, seed=seed),
        null_condition=null_condition(pipe),
        lora=lora,
    )
