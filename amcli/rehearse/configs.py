"""Architecture and scheduler configs of the published checkpoints, and their tiny stand-ins.

Sources (the hub's ``config.json`` files, values copied here; every field the constructors take
beyond these is the library default, which is what the published files hold too):

* SD 1.5: ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (the copy of
  ``runwayml/stable-diffusion-v1-5``): ``unet/``, ``vae/``, ``text_encoder/`` (CLIP ViT-L/14 text
  tower, with the legacy ids ``bos 0, eos 2, pad 1`` that switch CLIP's pooling to argmax),
  ``safety_checker/`` (``CompVis/stable-diffusion-safety-checker``: the ViT-L/14 vision tower),
  ``feature_extractor/preprocessor_config.json``, ``scheduler/scheduler_config.json`` (PNDM).
* SD 3.5 medium: ``stabilityai/stable-diffusion-3.5-medium``: ``transformer/`` (MMDiT-X, 24
  blocks, the first 13 with a second image-only attention), ``vae/`` (16 latent channels, no
  quant convs), ``text_encoder/`` (CLIP-L with projection), ``text_encoder_2/`` (OpenCLIP bigG
  text tower, as SDXL's), ``scheduler/`` (flow matching, shift 3).
* Flux: ``black-forest-labs/FLUX.1-dev``: ``transformer/`` (19 double + 38 single blocks of width
  3072 = 24 heads x 128; here 2 + 2), ``text_encoder_2/`` (``google/t5-v1_1-xxl``'s encoder: 24
  layers of width 4096; here 2), ``vae/``, ``scheduler/`` (dynamic shifting 0.5-1.15).

``tiny(name)`` gives the same config at test widths: the same classes, block types and layout,
a few thousand to a few million parameters; the text encoders keep the real vocabularies (the
written tokenizers are the real ones).
"""

from __future__ import annotations

DOWN = "DownEncoderBlock2D"
UP = "UpDecoderBlock2D"

# both CLIP text towers (SD3's text_encoder and text_encoder_2) as published
_CLIP_TEXT = dict(
    vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, attention_dropout=0.0,
    dropout=0.0, initializer_range=0.02, initializer_factor=1.0, bos_token_id=0, eos_token_id=2,
    pad_token_id=1,
)  # fmt: skip
FULL: dict[str, dict] = {
    "sd15_unet": dict(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768, attention_head_dim=8,
        down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        norm_num_groups=32, norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,
        downsample_padding=1, mid_block_scale_factor=1, use_linear_projection=False,
    ),
    "sd15_vae": dict(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512],
        layers_per_block=2, down_block_types=[DOWN] * 4, up_block_types=[UP] * 4,
        norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215,
    ),
    # diffusers' PNDMScheduler as SD 1.5 publishes it (skip_prk_steps: PLMS only)
    "sd15_scheduler": dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
        beta_schedule="scaled_linear", trained_betas=None, skip_prk_steps=True,
        set_alpha_to_one=False, prediction_type="epsilon", steps_offset=1,
    ),
    "clip_l": dict(
        _CLIP_TEXT, hidden_size=768, intermediate_size=3072, projection_dim=768,
        num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu",
    ),
    "clip_g": dict(
        _CLIP_TEXT, hidden_size=1280, intermediate_size=5120, projection_dim=1280,
        num_hidden_layers=32, num_attention_heads=20, hidden_act="gelu",
    ),
    "safety_checker": dict(
        projection_dim=768, logit_scale_init_value=2.6592, initializer_factor=1.0,
        text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                         dropout=0.0),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                           num_hidden_layers=24, patch_size=14, dropout=0.0),
    ),
    "sd35m_transformer": dict(
        sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
        attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
        caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384,
        qk_norm="rms_norm", dual_attention_layers=list(range(13)),
    ),
    "sd3_vae": dict(
        in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[128, 256, 512, 512],
        layers_per_block=2, down_block_types=[DOWN] * 4, up_block_types=[UP] * 4,
        norm_num_groups=32, act_fn="silu", sample_size=1024, scaling_factor=1.5305,
        shift_factor=0.0609, force_upcast=True, use_quant_conv=False, use_post_quant_conv=False,
        mid_block_add_attention=True, latents_mean=None, latents_std=None,
    ),
    "sd35m_scheduler": dict(num_train_timesteps=1000, shift=3.0),
    # FLUX.1-dev's widths; depth 2 + 2 of 19 + 38 (the full 12B is 24 GB in bfloat16)
    "flux_transformer": dict(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
        guidance_embeds=True, axes_dims_rope=[16, 56, 56],
    ),
    "flux_scheduler": dict(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096,
    ),
    # google/t5-v1_1-xxl's encoder at its width; 2 of its 24 layers (4.8B parameters in full)
    "t5_xxl": dict(
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=2, num_decoder_layers=24,
        num_heads=64, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        dropout_rate=0.1, layer_norm_epsilon=1e-6, initializer_factor=1.0,
        feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
        tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ),
}  # fmt: skip
FULL["flux_vae"] = {**FULL["sd3_vae"], "scaling_factor": 0.3611, "shift_factor": 0.1159}

_TINY_CLIP = dict(hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
                  num_attention_heads=4)  # fmt: skip
_TINY_VAE = dict(block_out_channels=[16, 32], layers_per_block=1, down_block_types=[DOWN] * 2,
                 up_block_types=[UP] * 2, norm_num_groups=8, sample_size=32)  # fmt: skip
# the widths that change; the rest of each config is the full one
_TINY: dict[str, dict] = {
    "sd15_unet": dict(
        sample_size=8, block_out_channels=[32, 64], layers_per_block=1, cross_attention_dim=32,
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], norm_num_groups=8,
    ),
    "sd15_vae": _TINY_VAE,
    "sd3_vae": _TINY_VAE,
    "flux_vae": _TINY_VAE,
    "clip_l": _TINY_CLIP,
    "clip_g": _TINY_CLIP,
    "safety_checker": dict(
        projection_dim=32,
        text_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                         num_hidden_layers=2),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                           num_hidden_layers=2, patch_size=14),
    ),
    # joint attention takes both CLIPs' hidden states side by side (32 + 32), padded as T5's
    "sd35m_transformer": dict(
        sample_size=8, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=64, caption_projection_dim=16, pooled_projection_dim=64,
        pos_embed_max_size=16, dual_attention_layers=[0],
    ),
    "flux_transformer": dict(
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
        pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
    ),
    "t5_xxl": dict(d_model=32, d_kv=8, d_ff=64, num_heads=4),
}  # fmt: skip

SCALES = ("full", "tiny")


def config(name: str, scale: str) -> dict:
    """The constructor arguments of component ``name`` (a key of :data:`FULL`) at ``scale``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if scale == "full":
        return dict(FULL[name])
    return {**FULL[name], **_TINY.get(name, {})}
