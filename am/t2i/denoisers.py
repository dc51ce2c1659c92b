"""diffusers denoisers as velocity models ``(z [B, C, h, w], t [B], cond) -> [B, C, h, w]``.

``t`` is this library's time (noise at 0, data at 1) on the adapter's ``schedule``; ``cond`` is
a dict of prompt tensors (:mod:`am.t2i.prompts`). The velocity is the one of the reference path
``z_t = beta_t noise + alpha_t data`` (``d z_t / dt``), computed from what the network predicts:

* :class:`UNetVelocity` (SD 1.5-style ``UNet2DConditionModel``, discrete VP schedule): the
  network sees diffusers' timestep ``time_to_timestep(t)`` and predicts ``eps`` (or diffusers'
  ``v = alpha eps - beta data``); with ``data_hat = (z - beta eps) / alpha`` the velocity is
  ``alpha' data_hat + beta' eps``.
* :class:`SD3Velocity` (``SD3Transformer2DModel``, shifted flow matching): the network sees
  ``1000 sigma`` and predicts ``d z / d sigma = noise - data``; with ``sigma = beta(t)`` the
  velocity is ``beta'(t) * prediction``.
* :class:`FluxVelocity` (``FluxTransformer2DModel``): the same on 2 x 2-packed latents (packed
  and unpacked here with the pipeline's own functions, so the state keeps its ``[C, h, w]``
  shape), with ``sigma`` as the timestep and, for guidance-distilled models (Flux-dev), the
  distilled guidance scale as an input.

Mixed precision (the convention of diffusers' training scripts and accelerate): the network
runs in its ``compute_dtype`` (default: its weights' dtype when the adapter is built; bfloat16
or float16 switch on ``torch.autocast``), its inputs cast to its weights' dtype and its output
cast back to the state's dtype, float32 (:func:`am.methods.base.model_dtype_device`); the
timestep goes in as float32, as the pipelines pass it (the networks' sinusoidal embeddings
compute in float32; in bfloat16 SD 1.5's timestep 999 would become 1000). A float32 trainable
copy of bfloat16 weights (:func:`am.models.finetunable_copy`) keeps the base's compute dtype,
so the fine-tuned model and the base run the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from am.schedules import DiscreteVPSchedule
from am.t2i.schedules import PREDICTION_TYPES, ShiftedFlowMatchingSchedule

__all__ = ["UNetVelocity", "SD3Velocity", "FluxVelocity", "set_tf32"]


def set_tf32(enabled: bool) -> None:
    """TF32 for float32 matrix products and cuDNN convolutions on NVIDIA GPUs (Ampere and
    later; no effect on the CPU, nor on bfloat16/float16 compute), process-wide.

    ``True`` as the Adjoint Matching authors' SD 1.5 run (microsoft/soc-fine-tuning-sd,
    ``src/train.py`` lines 27-30, ``use_tf32: true`` in its configs) and diffusers' training
    scripts' ``--allow_tf32``: 10 mantissa bits in the products, faster on tensor cores.
    ``False``: full float32 in both (PyTorch's own default allows TF32 in cuDNN convolutions;
    this switches that off too, so a float32 run is float32 throughout)."""
    if not isinstance(enabled, bool):
        raise ValueError(f"tf32 must be true or false, got {enabled!r}")
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _autocast(device: torch.device, dtype: torch.dtype):
    """``torch.autocast`` to a half-precision compute dtype; nothing for float32/float64."""
    if dtype in (torch.bfloat16, torch.float16):
        return torch.autocast(device.type, dtype=dtype)
    return nullcontext()


def _require(cond: Mapping[str, Tensor] | None, keys: tuple[str, ...], who: str) -> None:
    if not isinstance(cond, Mapping) or any(k not in cond for k in keys):
        got = sorted(cond) if isinstance(cond, Mapping) else type(cond).__name__
        raise ValueError(f"{who} needs a condition dict with {list(keys)}, got {got}")


class UNetVelocity(nn.Module):
    """An SD 1.5-style ``UNet2DConditionModel`` (epsilon or v-prediction) as a velocity on a
    :class:`am.schedules.DiscreteVPSchedule`. ``cond["prompt_embeds"]``: ``[B, L, D]``."""

    latent_multiple = 1  # latent height and width must be multiples of this

    def __init__(
        self,
        unet: nn.Module,
        schedule: DiscreteVPSchedule,
        prediction_type: str,
        compute_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        if not isinstance(schedule, DiscreteVPSchedule):
            raise ValueError(f"UNetVelocity needs a DiscreteVPSchedule, got {schedule!r}")
        self.unet, self.schedule, self.prediction_type = unet, schedule, prediction_type
        self.compute_dtype = compute_dtype or unet.dtype

    def forward(self, z: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        _require(cond, ("prompt_embeds",), "UNetVelocity")
        t = t.expand(z.shape[0])
        sv = self.schedule(t.double()).broadcast_to(z)
        dtype = self.unet.dtype  # inputs in the weights' dtype, timestep in float32
        timestep = self.schedule.time_to_timestep(t.double()).float()
        embeds = cond["prompt_embeds"].to(dtype)
        with _autocast(z.device, self.compute_dtype):
            out = self.unet(z.to(dtype), timestep, encoder_hidden_states=embeds).sample
        out = out.to(z.dtype)
        alpha, beta = sv.alpha.to(z.dtype), sv.beta.to(z.dtype)
        if self.prediction_type == "epsilon":
            eps = out
        else:  # v = alpha eps - beta data and z = alpha data + beta eps, alpha^2 + beta^2 = 1
            eps = alpha * out + beta * z
        data = (z - beta * eps) / alpha
        return sv.d_alpha.to(z.dtype) * data + sv.d_beta.to(z.dtype) * eps


class SD3Velocity(nn.Module):
    """An ``SD3Transformer2DModel`` (SD3, SD3.5) as a velocity on a
    :class:`ShiftedFlowMatchingSchedule`. ``cond``: ``prompt_embeds [B, L, D]`` and
    ``pooled_prompt_embeds [B, P]``."""

    latent_multiple = 2  # 2 x 2 patches

    def __init__(
        self,
        transformer: nn.Module,
        schedule: ShiftedFlowMatchingSchedule,
        num_train_timesteps: int = 1000,
        compute_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if not isinstance(schedule, ShiftedFlowMatchingSchedule):
            raise ValueError(f"SD3Velocity needs a ShiftedFlowMatchingSchedule, got {schedule!r}")
        self.transformer, self.schedule = transformer, schedule
        self.num_train_timesteps = num_train_timesteps
        self.compute_dtype = compute_dtype or transformer.dtype

    def forward(self, z: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        _require(cond, ("prompt_embeds", "pooled_prompt_embeds"), "SD3Velocity")
        t = t.expand(z.shape[0])
        sv = self.schedule(t.double())
        dtype = self.transformer.dtype  # inputs in the weights' dtype, timestep in float32
        with _autocast(z.device, self.compute_dtype):
            out = self.transformer(
                hidden_states=z.to(dtype),
                timestep=(self.num_train_timesteps * sv.beta).float(),
                encoder_hidden_states=cond["prompt_embeds"].to(dtype),
                pooled_projections=cond["pooled_prompt_embeds"].to(dtype),
                return_dict=False,
            )[0]
        out = out.to(z.dtype)
        return sv.broadcast_to(z).d_beta.to(z.dtype) * out


class FluxVelocity(nn.Module):
    """A ``FluxTransformer2DModel`` as a velocity on a :class:`ShiftedFlowMatchingSchedule`.
    ``cond``: ``prompt_embeds [B, L, D]`` (T5) and ``pooled_prompt_embeds [B, P]`` (CLIP);
    ``guidance``: the distilled guidance scale fed to guidance-embedding models (ignored by
    the others, e.g. Flux-schnell)."""

    latent_multiple = 2  # 2 x 2 packing

    def __init__(
        self,
        transformer: nn.Module,
        schedule: ShiftedFlowMatchingSchedule,
        guidance: float = 3.5,
        compute_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if not isinstance(schedule, ShiftedFlowMatchingSchedule):
            raise ValueError(f"FluxVelocity needs a ShiftedFlowMatchingSchedule, got {schedule!r}")
        self.transformer, self.schedule, self.guidance = transformer, schedule, float(guidance)
        self.compute_dtype = compute_dtype or transformer.dtype

    def forward(self, z: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        from diffusers import FluxPipeline

        _require(cond, ("prompt_embeds", "pooled_prompt_embeds"), "FluxVelocity")
        b, c, h, w = z.shape
        t = t.expand(b)
        sv = self.schedule(t.double())
        dtype = self.transformer.dtype
        embeds = cond["prompt_embeds"].to(dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((b,), self.guidance, device=z.device, dtype=torch.float32)
        with _autocast(z.device, self.compute_dtype):
            out = self.transformer(
                hidden_states=FluxPipeline._pack_latents(z.to(dtype), b, c, h, w),
                # sigma in float32: Flux scales it by 1000 itself, after its own cast
                timestep=sv.beta.float(),
                guidance=guidance,
                pooled_projections=cond["pooled_prompt_embeds"].to(dtype),
                encoder_hidden_states=embeds,
                txt_ids=torch.zeros(embeds.shape[1], 3, device=z.device, dtype=dtype),
                img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, z.device, dtype),
                return_dict=False,
            )[0]
        # _unpack_latents takes pixel sizes and the VAE's factor: with factor 1 they are ours
        out = FluxPipeline._unpack_latents(out, h, w, 1).to(z.dtype)
        return sv.broadcast_to(z).d_beta.to(z.dtype) * out
