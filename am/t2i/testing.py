"""Tiny random text-to-image pipelines in the real diffusers architectures (no downloads).

``tiny_sd15()``, ``tiny_sd3()`` and ``tiny_flux()`` build ``StableDiffusionPipeline``,
``StableDiffusion3Pipeline`` and ``FluxPipeline`` from small configs (a ~0.8M-parameter UNet,
small SD3 and Flux transformers, a tiny VAE, tiny CLIP text encoders with a character-level
tokenizer written to a temporary directory, a tiny T5 with a letter-level unigram tokenizer);
each builds in about a second and generates 16 x 16 images (Flux: 32 x 32). Every component is in eval mode
(train-mode dropout would make two calls differ).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

__all__ = ["tiny_sd15", "tiny_sd3", "tiny_flux", "tiny_clip_text", "tiny_t5"]


def tiny_clip_text(directory: Path | None = None, *, projection: bool = False, seed: int = 0):
    """``(tokenizer, text_encoder)``: a character-level CLIP tokenizer and a 2-layer, width-32
    ``CLIPTextModel`` (``CLIPTextModelWithProjection`` with ``projection=True``)."""
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from am.vision.testing import write_clip_tokenizer

    directory = write_clip_tokenizer(directory or Path(tempfile.mkdtemp()))
    tokenizer = CLIPTokenizer.from_pretrained(directory, model_max_length=77)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return tokenizer, cls(config).eval()


def _vae(**kwargs):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=8, sample_size=16, **kwargs,
    ).eval()  # fmt: skip


def tiny_sd15(*, seed: int = 0, prediction_type: str = "epsilon"):
    """A tiny ``StableDiffusionPipeline`` (DDIM scheduler with SD 1.5's betas); 16 x 16 images,
    4 x 8 x 8 latents."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer, text_encoder = tiny_clip_text(seed=seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        norm_num_groups=8, attention_head_dim=8,
    ).eval()  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )  # fmt: skip
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip


def tiny_sd3(*, seed: int = 0, shift: float = 3.0):
    """A tiny ``StableDiffusion3Pipeline`` (two tiny CLIP encoders and a tiny T5 of width 64,
    the two CLIP widths side by side; shift 3 as SD3); 16 x 16 images, 4 x 8 x 8 latents."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    tokenizer, text_encoder = tiny_clip_text(projection=True, seed=seed)
    _, text_encoder_2 = tiny_clip_text(projection=True, seed=seed + 1)
    tokenizer_3, text_encoder_3 = tiny_t5(seed=seed, d_model=64)
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=64,
        caption_projection_dim=16, pooled_projection_dim=64,
    ).eval()  # fmt: skip
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
        vae=_vae(shift_factor=0.0609, scaling_factor=1.5035), text_encoder=text_encoder,
        tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer,
        text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3,
    )  # fmt: skip


def tiny_t5(seed: int = 0, d_model: int = 32):
    """``(tokenizer, encoder)``: a letter-level unigram ``T5TokenizerFast`` (built in memory)
    and a 2-layer, width-32 ``T5EncoderModel``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(f"\u2581{c}", -1.0) for c in letters] + [(c, -2.0) for c in letters + "0123456789"]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.normalizer = normalizers.Lowercase()
    tokenizer = T5TokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        extra_ids=0, model_max_length=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_ff=64, d_kv=8, num_layers=2, num_heads=4
    )
    return tokenizer, T5EncoderModel(config).eval()


def tiny_flux(*, seed: int = 0, guidance_embeds: bool = True):
    """A tiny ``FluxPipeline`` (dynamic shifting as Flux-dev; guidance embedding optional);
    32 x 32 images, 4 x 16 x 16 latents (packed 2 x 2 by the transformer's adapter)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer, text_encoder = tiny_clip_text(seed=seed)
    tokenizer_2, text_encoder_2 = tiny_t5(seed=seed)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8), guidance_embeds=guidance_embeds,
    ).eval()  # fmt: skip
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
        use_dynamic_shifting=True, shift=3.0,
    )  # fmt: skip
    return FluxPipeline(
        scheduler=scheduler, vae=_vae(shift_factor=0.1159, scaling_factor=0.3611),
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2, transformer=transformer,
    )  # fmt: skip
