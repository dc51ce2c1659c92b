"""Evaluation with the pipelines' own samplers: diffusers' ``pipe(...)`` with its scheduler.

This suite's sampler (:func:`am.sample`) integrates our continuous-time equations on our grid:
its ``ddim:<eta>`` is Euler-Maruyama with eta times the memoryless noise, not DDIM's update,
and its flow-matching grid is not diffusers'. To evaluate as the pipelines (and the papers that
use them) do, :func:`pipeline_images` calls the pipeline itself, with a scheduler chosen by a
:class:`PipelineSampler`:

* ``pipeline``: the scheduler the pipeline was saved with, as it is;
* ``ddim`` / ``ddim:<eta>``: ``DDIMScheduler`` from the pipeline's scheduler config, with DDIM's
  ``eta`` (0 by default; 1 is the memoryless, DDPM-like sampler);
* ``ddpm``: ``DDPMScheduler`` from that config (ancestral sampling);
* ``flow_match_euler``: ``FlowMatchEulerDiscreteScheduler`` from that config (SD3, Flux: ``K - 1``
  Euler steps on the shifted sigma grid from 1 to ``sigma_min``, then one to 0).

The first three VP choices need a Stable Diffusion pipeline, the last a flow-matching one; a
mismatch raises ``ValueError`` naming both. The images are what ``pipe(...)`` returns for the
same prompts and generator, because they are ``pipe(...)``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from am.fields import FieldError

__all__ = ["PipelineSampler", "SCHEDULER_CLASSES", "parse_sampler", "use_scheduler",
           "pipeline_images"]  # fmt: skip

# sampler name -> diffusers scheduler class (None: keep the pipeline's own)
SCHEDULER_CLASSES = {
    "pipeline": None,
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "flow_match_euler": "FlowMatchEulerDiscreteScheduler",
}
_VP_PIPELINES = ("StableDiffusionPipeline",)
_FLOW_PIPELINES = ("StableDiffusion3Pipeline", "FluxPipeline")


@dataclass(frozen=True)
class PipelineSampler:
    """``scheduler``: a key of :data:`SCHEDULER_CLASSES`; ``eta``: DDIM's eta (``ddim`` only)."""

    scheduler: str
    eta: float = 0.0

    def __post_init__(self):
        if self.scheduler not in SCHEDULER_CLASSES:
            raise FieldError(
                "scheduler",
                f"unknown sampler {self.scheduler!r}; one of {list(SCHEDULER_CLASSES)} "
                "(ddim:<eta> for DDIM with eta)",
            )
        if isinstance(self.eta, bool) or not isinstance(self.eta, (int, float)):
            raise FieldError("eta", f"eta must be a number, got {self.eta!r}")
        if not 0 <= self.eta <= 1 or (self.eta and self.scheduler != "ddim"):
            raise FieldError("eta", f"eta must be in [0, 1] and needs 'ddim', got {self.eta!r}")


def parse_sampler(spec: str) -> PipelineSampler:
    """``pipeline``, ``ddim``, ``ddim:<eta>``, ``ddpm`` or ``flow_match_euler``."""
    if not isinstance(spec, str):
        raise ValueError(f"a sampler name (string), got {spec!r}")
    name, _, eta = spec.partition(":")
    if not eta:
        return PipelineSampler(name)
    try:
        value = float(eta)
    except ValueError:
        raise ValueError(f"ddim:<eta> needs a number, got {spec!r}") from None
    if name != "ddim":
        raise ValueError(f"only ddim takes an eta (ddim:<eta>), got {spec!r}")
    return PipelineSampler(name, value)


def noisy_end_ddim():
    """diffusers' ``DDIMScheduler`` whose last step ends at alpha-bar ``(1 + alpha-bar of its
    last timestep) / 2`` instead of the checkpoint's final alpha-bar: the Adjoint Matching
    authors' fine-tuning scheduler (their ``src/trainers/soc_trainer.py`` sets
    ``final_alpha_cumprod`` so after ``set_timesteps``), which the pipeline then samples with."""
    from diffusers import DDIMScheduler

    class NoisyEndDDIMScheduler(DDIMScheduler):
        def set_timesteps(self, *args, **kwargs):
            super().set_timesteps(*args, **kwargs)
            self.final_alpha_cumprod = (1 + self.alphas_cumprod[self.timesteps[-1]]) / 2

    return NoisyEndDDIMScheduler


def use_scheduler(
    pipe,
    sampler: PipelineSampler,
    *,
    betas: tuple[float, float] | None = None,
    final_alpha_bar: str = "clean",
) -> None:
    """Give ``pipe`` the sampler's scheduler, built from its own scheduler's config (betas,
    timestep spacing, shift carry over); ``betas = (start, end)`` replaces the config's
    ``beta_start, beta_end`` (a fine-tuning beta range, as the model was fine-tuned with; VP
    pipelines only); ``final_alpha_bar="half"`` (``ddim`` only) samples on the grid the model
    was fine-tuned on with that option: "trailing" timesteps and the noisy end of
    :func:`noisy_end_ddim`, the Adjoint Matching authors' evaluation scheduler. Raises
    ``ValueError`` for a scheduler of the other family or a pipeline this suite does not
    know."""
    import diffusers

    family = type(pipe).__name__
    if family not in _VP_PIPELINES + _FLOW_PIPELINES:
        raise ValueError(f"pipeline {family} is not one of {_VP_PIPELINES + _FLOW_PIPELINES}")
    name = SCHEDULER_CLASSES[sampler.scheduler]
    cls = type(pipe.scheduler) if name is None else getattr(diffusers, name)
    flow = family in _FLOW_PIPELINES
    if name is not None and (name == "FlowMatchEulerDiscreteScheduler") != flow:
        kind = "VP (DDIM/DDPM)" if flow else "flow-matching"
        raise ValueError(f"sampler {sampler.scheduler!r} is a {kind} scheduler; {family} is not")
    overrides = {}
    if betas is not None:
        if flow:
            raise ValueError(f"betas apply to VP (DDIM/DDPM) schedulers; {family} is not")
        overrides = {"beta_start": float(betas[0]), "beta_end": float(betas[1])}
    if final_alpha_bar == "half":
        if sampler.scheduler != "ddim":
            raise ValueError(f"final_alpha_bar 'half' samples with ddim, not {sampler.scheduler!r}")
        cls, overrides = noisy_end_ddim(), {**overrides, "timestep_spacing": "trailing"}
    if name is not None or overrides:
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)


def pipeline_images(
    pipe,
    prompts: list[str],
    *,
    sampler: PipelineSampler,
    num_steps: int,
    guidance: float,
    height: int,
    width: int,
    generator: torch.Generator,
    distilled_guidance: float = 3.5,
) -> Tensor:
    """Images ``[N, 3, height, width]`` in ``[0, 1]`` of ``pipe(prompts, ...)`` (one image per
    prompt, latents from ``generator``) with the scheduler :func:`use_scheduler` set.
    ``guidance``: classifier-free guidance against the empty prompt (1 = off; the pipelines
    apply it only above 1, so ``0 < w < 1`` is refused); Flux: its ``true_cfg_scale``, with
    ``distilled_guidance`` as the guidance embedding's input."""
    if guidance != 1 and not guidance > 1:
        raise ValueError(f"the pipelines' guidance is off or > 1, got {guidance}")
    kwargs = dict(prompt=list(prompts), num_inference_steps=num_steps, height=height,
                  width=width, generator=generator, output_type="pt")  # fmt: skip
    family = type(pipe).__name__
    if family == "FluxPipeline":
        kwargs.update(guidance_scale=distilled_guidance, true_cfg_scale=guidance)
        if guidance > 1:
            kwargs["negative_prompt"] = ""  # Flux guides only given a negative prompt
    else:
        kwargs["guidance_scale"] = guidance
    if sampler.scheduler == "ddim":
        kwargs["eta"] = sampler.eta
    with torch.no_grad():
        return pipe(**kwargs).images
