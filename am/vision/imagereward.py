"""ImageReward v1.0 (Xu et al., 2023; THUDM/ImageReward) as an :class:`ImageScorer`.

The model is BLIP's ViT-L/16 image encoder, a BERT-base text encoder whose every layer also
cross-attends to the image tokens, and a five-layer linear head (no activations) on the text
encoder's first ([CLS]) token; the head's output is standardised with the mean and standard
deviation the authors measured on their data. The published package pins old transformers, so
the model is assembled here from transformers' own BLIP components (``BlipVisionModel``,
``BlipTextModel``) and the official ``ImageReward.pt`` is loaded through an explicit key mapping
(:func:`convert_official_state_dict`).

Reference behaviour kept: prompts are tokenised with bert-base-uncased plus the two tokens BLIP
adds (``[DEC]`` as bos, ``[ENC]`` as an additional special token; vocabulary 30522 + 2), padded
and truncated to 35 tokens; the first token stays ``[CLS]`` (ImageReward, unlike BLIP's
image-text-matching head, never swaps in ``[ENC]``); every image token is attended; the text
self-attention is bidirectional. Images go through :class:`Preprocess` (shorter side to 224
bicubic, centre crop, OpenAI CLIP mean/std), which is what the reference's ``_transform`` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import BertTokenizer
from transformers.models.blip.configuration_blip import BlipTextConfig, BlipVisionConfig
from transformers.models.blip.modeling_blip import BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel

from am.vision.base import ImageScorer, ScorerInfo
from am.vision.checkpoints import WeightsMismatchError, check_shapes, module_shapes, read_shapes
from am.vision.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Preprocess
from am.vision.resources import MissingWeightsError, locate

__all__ = ["ImageRewardScorer", "convert_official_state_dict", "imagereward_tokenizer"]
__all__ += ["check_imagereward_file"]

REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
MAX_LENGTH = 35  # the reference pads and truncates every prompt to 35 tokens
HEAD_SIZES = (1024, 128, 64, 16, 1)
HEAD_DROPOUT = (0.2, 0.2, 0.1)  # after the first three linears; inactive in eval mode

# Keys of the official checkpoint that belong to BLIP's pre-training heads, not to the scorer.
IGNORED_PREFIXES = ("blip.vision_proj.", "blip.text_proj.")
# BLIP's med.py registers position_ids as a persistent buffer; transformers makes it non-persistent.
IGNORED_KEYS = ("blip.text_encoder.embeddings.position_ids",)

# Per-block renames from timm-style ViT (BLIP's vit.py) to transformers' BlipEncoderLayer.
_VIT_BLOCK = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv"}
_VIT_BLOCK |= {"attn.proj": "self_attn.projection", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_VIT_TOP = {"cls_token": "embeddings.class_embedding", "pos_embed": "embeddings.position_embedding"}
for _w in ("weight", "bias"):
    _VIT_TOP[f"patch_embed.proj.{_w}"] = f"embeddings.patch_embedding.{_w}"
    _VIT_TOP[f"norm.{_w}"] = f"post_layernorm.{_w}"
# A checkpoint without these is not ImageReward's, whatever else it holds.
_REQUIRED = (
    *(f"blip.visual_encoder.{k}" for k in ("cls_token", "pos_embed", "patch_embed.proj.weight")),
    "blip.text_encoder.embeddings.word_embeddings.weight",
    "blip.text_encoder.encoder.layer.0.crossattention.self.key.weight",
    *("mlp.layers.0.weight", "mlp.layers.7.weight"),
)


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(sorted(keys)[:limit]) + more


def _vit_key(rest: str) -> str | None:
    if rest in _VIT_TOP:
        return _VIT_TOP[rest]
    parts = rest.split(".")
    if len(parts) >= 4 and parts[0] == "blocks" and parts[1].isdigit():
        inner, leaf = ".".join(parts[2:-1]), parts[-1]
        if inner in _VIT_BLOCK:
            return f"encoder.layers.{parts[1]}.{_VIT_BLOCK[inner]}.{leaf}"
    return None


def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official ``ImageReward.pt`` keys -> :class:`ImageRewardScorer` keys.

    ``blip.visual_encoder.*`` -> ``vision.*`` (timm ViT names to transformers' BLIP vision
    names), ``blip.text_encoder.*`` -> ``text.*`` (same names), ``mlp.layers.N.*`` ->
    ``head.N.*``; :data:`IGNORED_PREFIXES` and :data:`IGNORED_KEYS` are dropped. Raises
    ValueError naming the unrecognised keys and the missing core keys of a wrong checkpoint.
    """
    out: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, value in state_dict.items():
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
            continue
        new = None
        if key.startswith("blip.visual_encoder."):
            rest = _vit_key(key[len("blip.visual_encoder.") :])
            new = None if rest is None else "vision." + rest
        elif key.startswith("blip.text_encoder."):
            new = "text." + key[len("blip.text_encoder.") :]
        elif key.startswith("mlp.layers."):
            new = "head." + key[len("mlp.layers.") :]
        if new is None:
            unexpected.append(key)
        else:
            out[new] = value
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing or unexpected:
        raise ValueError(
            "not an ImageReward checkpoint: "
            + (f"missing {_listing(missing)}" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"unexpected {_listing(unexpected)}" if unexpected else "")
        )
    return out


def vision_config_vit_large(image_size: int = 224) -> BlipVisionConfig:
    """BLIP's ``create_vit("large", 224)``: ViT-L/16, 24 blocks, 16 heads, MLP ratio 4, qkv bias,
    exact GELU, LayerNorm eps 1e-6 (transformers' BLIP default is 1e-5)."""
    return BlipVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=image_size, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-6
    )  # fmt: skip


def text_config_from_med(med: Mapping, encoder_width: int) -> BlipTextConfig:
    """``BlipTextConfig`` for BLIP's ``med_config.json`` with cross-attention to ``encoder_width``
    image features. ``is_decoder=True`` is what makes transformers build the cross-attention
    layers; the scorer calls the model with ``is_decoder=False``, so self-attention stays
    bidirectional as in BLIP's encoder mode. (BLIP sets ``encoder_width`` from the ViT, so the
    file's own ``encoder_width`` is ignored; it has no token-type embeddings either.)"""
    if not med.get("add_cross_attention", False):
        raise ValueError("med_config.json must have add_cross_attention: true")
    copied = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")
    copied += ("num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps")
    return BlipTextConfig(
        **{k: med[k] for k in copied}, encoder_hidden_size=encoder_width,
        pad_token_id=med.get("pad_token_id", 0), bos_token_id=None, eos_token_id=None,
        sep_token_id=None, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        is_decoder=True, use_cache=False,
    )  # fmt: skip


def imagereward_tokenizer(vocab_file: str | Path) -> BertTokenizer:
    """bert-base-uncased's WordPiece tokenizer from ``vocab_file`` plus ``[DEC]`` (bos, id
    ``V``) and ``[ENC]`` (additional special token, id ``V + 1``), as BLIP's ``init_tokenizer``.

    The vocabulary is read here and handed over as a dict: transformers 5's ``BertTokenizer``
    ignores ``vocab_file=`` and silently falls back to a 5-token vocabulary.
    """
    path = Path(vocab_file)
    if not path.is_file():
        raise MissingWeightsError(
            f"the ImageReward tokenizer needs a BERT vocab.txt; not found: {path}"
        )
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file ends with a newline, not with an empty token
    vocab = {token: i for i, token in enumerate(lines)}
    if len(vocab) != len(lines) or "[CLS]" not in vocab or "[PAD]" not in vocab:
        raise ValueError(f"{path} is not a BERT vocabulary (duplicates, or no [CLS]/[PAD])")
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    ids = tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"])
    if len(tokenizer) != len(vocab) + 2 or ids != [len(vocab), len(vocab) + 1]:
        raise RuntimeError(f"tokenizer built from {path} has {len(tokenizer)} tokens, ids {ids}")
    return tokenizer


class ImageRewardScorer(ImageScorer):
    """ImageReward: ``(images [B, 3, H, W] in [0, 1], B prompts) -> [B]`` standardised rewards.

    ``vision`` is a ``BlipVisionModel``, ``text`` a ``BlipTextModel`` with cross-attention to
    ``vision_config.hidden_size`` features, ``head`` the linear stack
    ``hidden -> 1024 -> 128 -> 64 -> 16 -> 1``. Build the released model with
    :meth:`from_pretrained`; the constructor takes configs so that tests can build a tiny one.
    """

    info = ScorerInfo(
        "imagereward",
        "ImageReward v1.0 (THUDM/ImageReward, BLIP ViT-L/16 + BERT-base)",
        "(r - 0.1672) / 1.0333: standardised, about -2 .. 2",
    )

    def __init__(
        self,
        vision_config: BlipVisionConfig,
        text_config: BlipTextConfig,
        tokenizer: BertTokenizer | None,
    ):
        super().__init__()
        if text_config.encoder_hidden_size != vision_config.hidden_size:
            raise ValueError("text_config.encoder_hidden_size must equal the vision width")
        if not text_config.is_decoder:
            raise ValueError("text_config.is_decoder must be True (it builds the cross-attention)")
        if tokenizer is not None and len(tokenizer) > text_config.vocab_size:
            raise ValueError(f"tokenizer: {len(tokenizer)} tokens, model {text_config.vocab_size}")
        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        layers: list[nn.Module] = []
        width = text_config.hidden_size
        for i, size in enumerate(HEAD_SIZES):
            layers.append(nn.Linear(width, size))
            if i < len(HEAD_DROPOUT):
                layers.append(nn.Dropout(HEAD_DROPOUT[i]))
            width = size
        # Same indices as the reference's mlp.layers (linears at 0, 2, 4, 6, 7).
        self.head = nn.Sequential(*layers)
        self.tokenizer = tokenizer
        self.preprocess = Preprocess(
            size=vision_config.image_size, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD
        )
        self.freeze()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        vision_config: BlipVisionConfig | None = None,
    ) -> ImageRewardScorer:
        """The released model: ``ImageReward.pt`` and ``med_config.json`` from
        ``locate("imagereward", path)``, ``vocab.txt`` from ``locate("bert-base-uncased",
        tokenizer_path)``; raises :class:`MissingWeightsError` when they are not there.
        ``vision_config``: BLIP's ViT-L unless given (the release hard-codes it; tests: tiny)."""
        directory = locate("imagereward", path)
        vocab_dir = locate("bert-base-uncased", tokenizer_path)
        med = json.loads((directory / "med_config.json").read_text())
        vision_config = vision_config or vision_config_vit_large()
        text_config = text_config_from_med(med, vision_config.hidden_size)
        file = directory / "ImageReward.pt"
        check_imagereward_file(file, vision_config, text_config)  # before building anything
        model = cls(vision_config, text_config, imagereward_tokenizer(vocab_dir / "vocab.txt"))
        return model.load_official(torch.load(file, map_location="cpu", weights_only=True))

    def load_official(self, state_dict: Mapping[str, Tensor]) -> ImageRewardScorer:
        """Load an official-format state dict (see :func:`convert_official_state_dict`); every
        parameter must be covered. Returns ``self``."""
        converted = convert_official_state_dict(state_dict)
        own = set(self.state_dict())
        missing, unexpected = sorted(own - set(converted)), sorted(set(converted) - own)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not fit this model: missing {_listing(missing) or 'none'}; "
                f"unexpected {_listing(unexpected) or 'none'}"
            )
        self.load_state_dict(converted, strict=True)
        return self

    def tokenize(self, prompts: Sequence[str], device: torch.device) -> tuple[Tensor, Tensor]:
        """``(input_ids [B, 35], attention_mask [B, 35])``, starting with [CLS]."""
        enc = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        )
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    def embed_images(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` in [0, 1] -> image tokens ``[B, 1 + patches, D_vision]``."""
        pixels = self.preprocess(images)
        return self.vision(pixel_values=pixels).last_hidden_state

    def raw_reward(self, image_embeds: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Head output before standardisation, ``[B]``, from image tokens and prompt ids."""
        hidden = self.text(
            input_ids=input_ids,
            attention_mask=attention_mask,
            # No mask for the image tokens: the reference's is all ones.
            encoder_hidden_states=image_embeds,
            is_decoder=False,
        ).last_hidden_state  # [B, L, D_text]
        return self.head(hidden[:, 0, :]).squeeze(-1)

    def score(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """``[B]`` standardised rewards ``(r - 0.16717) / 1.03334``."""
        image_embeds = self.embed_images(images)
        input_ids, attention_mask = self.tokenize(prompts, images.device)
        raw = self.raw_reward(image_embeds, input_ids, attention_mask)
        return (raw - REWARD_MEAN) / REWARD_STD


def check_imagereward_file(
    file: str | Path, vision_config: BlipVisionConfig, text_config: BlipTextConfig
) -> None:
    """Raise :class:`WeightsMismatchError` naming ``file`` and the first offending keys unless
    its keys (mapped by :func:`convert_official_state_dict`) and shapes are exactly those of
    the model the configs describe (built on ``meta``); reads no tensor data."""
    with torch.device("meta"):
        expected = module_shapes(ImageRewardScorer(vision_config, text_config, None))
    try:
        converted = convert_official_state_dict(read_shapes(file))
    except ValueError as err:
        raise WeightsMismatchError(f"{file} does not fit ImageReward: {err}") from err
    check_shapes(converted, expected, file=Path(file), model="ImageReward (keys as mapped)")
