"""ImageReward v1.0's release, random: ``ImageReward.pt`` + ``med_config.json``, and the BERT
vocabulary it tokenises with.

``ImageReward.pt`` is ``torch.save(model.state_dict())`` of THUDM's ``ImageReward`` module
(``train/src/config/utils.py: save_model``): ``blip.`` (``BLIP_Pretrain``: ``visual_encoder``,
``text_encoder``, ``vision_proj``, ``text_proj``) and ``mlp.layers.`` (the five linears). The
key table below is written from the official module code, not from the suite's model, so that
the suite's key mapping (:func:`am.vision.imagereward.convert_official_state_dict`) is checked
against what the official code saved:

* ``ImageReward/models/BLIP/vit.py`` (timm-style ViT: ``cls_token``, ``pos_embed``,
  ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``,
  ``norm``), built by ``blip.py: create_vit('large', 224)``: width 1024, depth 24, patch 16;
* ``ImageReward/models/BLIP/med.py`` (BERT with cross-attention in every layer, no token-type
  embeddings, and ``embeddings.position_ids`` registered as a persistent buffer, so saved);
  cross-attention keys and values read ``encoder_width`` = the ViT's width (BLIP sets it);
* ``blip_pretrain.py``: ``vision_proj`` / ``text_proj`` to ``embed_dim`` 256 (unused by the
  score, present in the file).

Float32; the storages say ``cuda:0``, as a file saved during GPU training does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from amcli.rehearse.scorer_files import Spec, random_state, save_torch, vit_spec

__all__ = ["MED_CONFIG", "official_spec", "vision_config", "write_imagereward"]
__all__ += ["write_bert_vocab", "bert_tokens", "BERT_VOCAB_SIZE"]

# THUDM/ImageReward's med_config.json (train/src/config/med_config.json): BERT-base, the
# vocabulary plus BLIP's [DEC] and [ENC]; its encoder_width is overridden by the ViT's at load
MED_CONFIG = {
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
    "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0,
    "type_vocab_size": 2, "vocab_size": 30524, "encoder_width": 768, "add_cross_attention": True,
}  # fmt: skip
BERT_VOCAB_SIZE = 30522
TINY_MED = dict(MED_CONFIG, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=40)  # fmt: skip
# ViT: (width, depth, heads, image size, patch size); BLIP's 'large' and a tiny stand-in
VITS = {"full": (1024, 24, 16, 224, 16), "tiny": (48, 2, 4, 32, 8)}
HEAD = (1024, 128, 64, 16, 1)  # ImageReward.py: MLP(768), linears at layers 0, 2, 4, 6, 7
EMBED_DIM = 256  # blip_pretrain.py: BLIP_Pretrain(embed_dim=256)


def _linear(spec: Spec, name: str, out: int, inp: int) -> None:
    spec[f"{name}.weight"] = ((out, inp), torch.float32)
    spec[f"{name}.bias"] = ((out,), torch.float32)


def _norm(spec: Spec, name: str, width: int) -> None:
    spec[f"{name}.weight"] = ((width,), torch.float32)
    spec[f"{name}.bias"] = ((width,), torch.float32)


def official_spec(scale: str) -> Spec:
    """Keys and shapes of ``ImageReward.pt`` at ``scale`` (see the module docstring)."""
    width, depth, _, image, patch = VITS[scale]
    med = MED_CONFIG if scale == "full" else TINY_MED
    spec = vit_spec("blip.visual_encoder.", width=width, depth=depth, image=image, patch=patch)
    t, hidden = "blip.text_encoder", med["hidden_size"]
    positions = med["max_position_embeddings"]
    spec[f"{t}.embeddings.word_embeddings.weight"] = ((med["vocab_size"], hidden), torch.float32)
    spec[f"{t}.embeddings.position_embeddings.weight"] = ((positions, hidden), torch.float32)
    spec[f"{t}.embeddings.position_ids"] = ((1, positions), torch.int64)
    _norm(spec, f"{t}.embeddings.LayerNorm", hidden)
    for i in range(med["num_hidden_layers"]):
        layer = f"{t}.encoder.layer.{i}"
        for attention, source in (("attention", hidden), ("crossattention", width)):
            _linear(spec, f"{layer}.{attention}.self.query", hidden, hidden)
            _linear(spec, f"{layer}.{attention}.self.key", hidden, source)
            _linear(spec, f"{layer}.{attention}.self.value", hidden, source)
            _linear(spec, f"{layer}.{attention}.output.dense", hidden, hidden)
            _norm(spec, f"{layer}.{attention}.output.LayerNorm", hidden)
        _linear(spec, f"{layer}.intermediate.dense", med["intermediate_size"], hidden)
        _linear(spec, f"{layer}.output.dense", hidden, med["intermediate_size"])
        _norm(spec, f"{layer}.output.LayerNorm", hidden)
    _linear(spec, "blip.vision_proj", EMBED_DIM, width)
    _linear(spec, "blip.text_proj", EMBED_DIM, hidden)
    sizes = (hidden, *HEAD)
    for i, index in enumerate((0, 2, 4, 6, 7)):
        _linear(spec, f"mlp.layers.{index}", sizes[i + 1], sizes[i])
    return spec


def vision_config(scale: str):
    """The ``BlipVisionConfig`` the suite's ImageReward loader builds at ``scale`` (the full
    one is its default, :func:`am.vision.imagereward.vision_config_vit_large`)."""
    from am.vision.imagereward import vision_config_vit_large

    config = vision_config_vit_large()
    width, depth, heads, image, patch = VITS[scale]
    for key, value in dict(hidden_size=width, intermediate_size=4 * width, num_attention_heads=heads,
                           num_hidden_layers=depth, image_size=image, patch_size=patch).items():  # fmt: skip
        setattr(config, key, value)
    return config


def write_imagereward(folder: Path, scale: str) -> None:
    """``med_config.json`` and ``ImageReward.pt`` (random, float32) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    med = MED_CONFIG if scale == "full" else TINY_MED
    (folder / "med_config.json").write_text(json.dumps(med, indent=2) + "\n")
    state = random_state(official_spec(scale), seed=41)
    save_torch(state, folder / "ImageReward.pt", location="cuda:0")


def bert_tokens() -> list[str]:
    """30 522 WordPiece entries with bert-base-uncased's special-token ids ([PAD] 0, [UNK] 100,
    [CLS] 101, [SEP] 102, [MASK] 103, ``[unusedN]`` around them), then ASCII characters, their
    ``##`` continuations, and lowercase words and word pieces from CLIP's BPE vocabulary (the
    real list cannot be downloaded here; these make prompts tokenise into words, not letters)."""
    from open_clip.tokenizer import SimpleTokenizer

    tokens = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"[unused{i}]" for i in range(99, 994)]
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    tokens += chars + ["##" + c for c in chars]
    seen = set(tokens)
    for token in SimpleTokenizer().encoder:  # in merge order: the frequent pieces first
        piece = token.removesuffix("</w>")
        word = piece if token.endswith("</w>") else "##" + piece
        if len(piece) > 1 and piece.isascii() and piece.isalnum() and piece == piece.lower():
            if word not in seen:
                seen.add(word)
                tokens.append(word)
        if len(tokens) == BERT_VOCAB_SIZE:
            return tokens
    raise RuntimeError(f"only {len(tokens)} WordPiece entries from CLIP's vocabulary")


def write_bert_vocab(folder: Path) -> None:
    """bert-base-uncased's ``vocab.txt`` (one token a line) and ``tokenizer_config.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(bert_tokens()) + "\n", encoding="utf-8")
    config = {"do_lower_case": True, "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(config) + "\n")
