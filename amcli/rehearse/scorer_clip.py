"""Transformers CLIP folders as OpenAI's, LAION's and PickScore's hub repositories hold them.

``config.json`` is written in the form those repositories have (2022-2023 transformers): full
``text_config``/``vision_config`` with every generation default of the time, token ids bos 0,
eos 2, pad 1 (transformers then pools the text at the highest id, the end token), and for
OpenAI's two CLIPs also the ``text_config_dict``/``vision_config_dict`` overrides. Their
``model.safetensors`` still holds the ``position_ids`` buffers transformers saved until 4.31
(int64). The weights are float32 (PickScore_v1's file is 3.9 GB: 986M parameters x 4 bytes).
Tokenizer files: :func:`amcli.rehearse.tokenizer.write_clip_tokenizer`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from amcli.rehearse.scorer_files import Spec, write_safetensors

__all__ = ["CLIP_SIZES", "clip_hub_config", "clip_spec", "write_clip", "write_processor"]

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]

# (text, vision, projection): widths, depths, heads; vision image and patch size; activation
CLIP_SIZES = {
    ("clip-vit-large-patch14", "full"): (
        dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
             num_attention_heads=16, image_size=224, patch_size=14),
        768, "quick_gelu"),
    ("clip-vit-base-patch32", "full"): (
        dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
             num_attention_heads=12, image_size=224, patch_size=32),
        512, "quick_gelu"),
    ("pickscore", "full"): (
        dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
        dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
             num_attention_heads=16, image_size=224, patch_size=14),
        1024, "gelu"),
}  # fmt: skip
_TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
_TINY_VISION = dict(_TINY_TEXT, image_size=32, patch_size=8)
for _name, _size in list(CLIP_SIZES):
    CLIP_SIZES[_name, "tiny"] = (_TINY_TEXT, _TINY_VISION, 16, CLIP_SIZES[_name, _size][3])
OPENAI = ("clip-vit-large-patch14", "clip-vit-base-patch32")  # their repositories' extra files

# the keys every 2022-era transformers config carried (generation defaults and the like);
# transformers 5 must still read a config that has them
_LEGACY = dict(
    add_cross_attention=False, architectures=None, bad_words_ids=None,
    chunk_size_feed_forward=0, cross_attention_hidden_size=None, decoder_start_token_id=None,
    diversity_penalty=0.0, do_sample=False, early_stopping=False,
    encoder_no_repeat_ngram_size=0, finetuning_task=None, forced_bos_token_id=None,
    forced_eos_token_id=None, id2label={"0": "LABEL_0", "1": "LABEL_1"}, is_decoder=False,
    is_encoder_decoder=False, label2id={"LABEL_0": 0, "LABEL_1": 1}, length_penalty=1.0,
    max_length=20, min_length=0, no_repeat_ngram_size=0, num_beam_groups=1, num_beams=1,
    num_return_sequences=1, output_attentions=False, output_hidden_states=False,
    output_scores=False, prefix=None, problem_type=None, pruned_heads={},
    remove_invalid_values=False, repetition_penalty=1.0, return_dict=True,
    return_dict_in_generate=False, sep_token_id=None, task_specific_params=None,
    temperature=1.0, tie_encoder_decoder=False, tie_word_embeddings=True, tokenizer_class=None,
    top_k=50, top_p=1.0, torch_dtype=None, torchscript=False, transformers_version="4.21.3",
    typical_p=1.0, use_bfloat16=False,
)  # fmt: skip


def clip_hub_config(name: str, scale: str) -> dict:
    """The hub's ``config.json`` for ``name`` (a CLIP resource) at ``scale``: full sub-configs
    with the 2022 token ids (bos 0, eos 2, pad 1: transformers then pools the text at the
    highest id, the end token) and, for OpenAI's, the ``*_config_dict`` overrides it also has."""
    text, vision, projection, act = CLIP_SIZES[name, scale]
    common = dict(_LEGACY, attention_dropout=0.0, dropout=0.0, hidden_act=act,
                  initializer_factor=1.0, initializer_range=0.02, layer_norm_eps=1e-05,
                  projection_dim=projection)  # fmt: skip
    text_config = dict(common, **text, max_position_embeddings=77, vocab_size=49408,
                       bos_token_id=0, eos_token_id=2, pad_token_id=1,
                       model_type="clip_text_model")  # fmt: skip
    vision_config = dict(common, **vision, num_channels=3, model_type="clip_vision_model")
    config = {
        "architectures": ["CLIPModel"],
        "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592,
        "model_type": "clip",
        "projection_dim": projection,
        "text_config": text_config,
        "torch_dtype": "float32",
        "transformers_version": None,
        "vision_config": vision_config,
    }
    if name in OPENAI:
        config["text_config_dict"] = dict(text, projection_dim=projection)
        config["vision_config_dict"] = dict(vision, projection_dim=projection)
    return config


def clip_spec(config_dir: Path) -> Spec:
    """Keys and shapes of the ``CLIPModel`` the ``config.json`` in ``config_dir`` describes
    (built on ``meta``), plus the two ``position_ids`` buffers (int64) older saves hold."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig.from_pretrained(config_dir, local_files_only=True)
    with torch.device("meta"):
        state = CLIPModel(config).state_dict()
    spec = {k: (tuple(v.shape), torch.float32) for k, v in state.items()}
    patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    spec["text_model.embeddings.position_ids"] = ((1, 77), torch.int64)
    spec["vision_model.embeddings.position_ids"] = ((1, patches + 1), torch.int64)
    return spec


def _preprocessor(folder: Path, size: int) -> None:
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": OPENAI_MEAN,
        "image_std": OPENAI_STD, "resample": 3, "size": size}, indent=2) + "\n")  # fmt: skip


def _tokenizer(folder: Path, *, pad_token: str) -> None:
    from amcli.rehearse.tokenizer import write_clip_tokenizer

    write_clip_tokenizer(folder, pad_token=pad_token)


def write_clip(name: str, folder: Path, scale: str, *, seed: int) -> None:
    """A transformers CLIP folder: ``config.json``, ``model.safetensors`` (and, for OpenAI's,
    the tokenizer and processor files their repositories have)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = clip_hub_config(name, scale)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_safetensors(folder / "model.safetensors", clip_spec(folder), seed=seed)
    if name in OPENAI:
        _tokenizer(folder, pad_token="<|endoftext|>")
        _preprocessor(folder, config["vision_config"]["image_size"])


def write_processor(folder: Path, scale: str) -> None:
    """laion/CLIP-ViT-H-14-laion2B-s32B-b79K's tokenizer (pad ``!``, as open_clip pads with 0)
    and image processor files; its own weights are not PickScore's and are left out."""
    _tokenizer(folder, pad_token="!")
    _preprocessor(folder, CLIP_SIZES["pickscore", scale][1]["image_size"])
