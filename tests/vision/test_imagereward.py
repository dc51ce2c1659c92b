"""ImageReward on a tiny random model: scores against a functional re-statement of BLIP's
``vit.py`` / ``med.py`` forward computed from the official checkpoint's key names, gradients,
checkpoint loading and rejection, and the BLIP tokenizer conventions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from am.vision import imagereward as ir  # noqa: E402
from am.vision.preprocess import Preprocess  # noqa: E402
from am.vision.resources import MissingWeightsError  # noqa: E402

PROMPTS = ["a photo of a cat", "the red car on a road", "Cats riding a horse zebra"]
WORDS = "a photo of cat dog the red car on road riding horse ##s".split()
SPECIAL = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HEADS = 4  # both tiny encoders
MED = dict(  # a tiny med_config.json
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=HEADS,
    max_position_embeddings=40,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    pad_token_id=0,
    vocab_size=len(SPECIAL) + len(WORDS) + 2,
    add_cross_attention=True,
)


def write_vocab(directory) -> object:
    path = directory / "vocab.txt"
    path.write_text("\n".join(SPECIAL + WORDS) + "\n")
    return path


def tiny_imagereward(directory, seed: int = 0) -> ir.ImageRewardScorer:
    """Vision width 48 (patch 8, 32 px, 2 blocks), text width 32 (2 layers), random weights
    (LayerNorms too, so that swapped names would show)."""
    from transformers.models.blip.configuration_blip import BlipVisionConfig

    vision = BlipVisionConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        image_size=32,
        patch_size=8,
        layer_norm_eps=1e-6,
    )
    scorer = ir.ImageRewardScorer(
        vision, ir.text_config_from_med(MED, 48), ir.imagereward_tokenizer(write_vocab(directory))
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in scorer.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(noise / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.1 * noise + (1.0 if "norm" in name.lower() and "weight" in name else 0.0))
    return scorer


def to_official(scorer: ir.ImageRewardScorer) -> dict[str, torch.Tensor]:
    """The scorer's weights under the official ImageReward.pt names, plus the keys it ignores."""
    vit_top = {
        "embeddings.class_embedding": "cls_token",
        "embeddings.position_embedding": "pos_embed",
        "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
        "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
        "post_layernorm.weight": "norm.weight",
        "post_layernorm.bias": "norm.bias",
    }
    block = [
        ("layer_norm1", "norm1"),
        ("layer_norm2", "norm2"),
        ("self_attn.projection", "attn.proj"),
    ]
    out = {}
    for key, value in scorer.state_dict().items():
        if key.startswith("vision."):
            rest = key[len("vision.") :]
            if rest in vit_top:
                rest = vit_top[rest]
            else:
                rest = rest.replace("encoder.layers.", "blocks.").replace(
                    "self_attn.qkv", "attn.qkv"
                )
                for new, old in block:
                    rest = rest.replace(new, old)
            out["blip.visual_encoder." + rest] = value.clone()
        elif key.startswith("text."):
            out["blip.text_encoder." + key[len("text.") :]] = value.clone()
        else:
            out["mlp.layers." + key[len("head.") :]] = value.clone()
    out["blip.text_encoder.embeddings.position_ids"] = torch.arange(40)[None]
    out["blip.vision_proj.weight"], out["blip.vision_proj.bias"] = torch.ones(8, 48), torch.ones(8)
    out["blip.text_proj.weight"], out["blip.text_proj.bias"] = torch.ones(8, 32), torch.ones(8)
    return out


# --- BLIP's forward written out from the official names (vit.py, med.py in encoder mode) -------
def _lin(o, x, name):
    return F.linear(x, o[name + ".weight"], o[name + ".bias"])


def _ln(o, x, name, eps):
    return F.layer_norm(x, x.shape[-1:], o[name + ".weight"], o[name + ".bias"], eps)


def _attend(q, k, v, bias=None):
    split = lambda t: t.unflatten(-1, (HEADS, -1)).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    return (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)


def reference_vit(o, pixels):
    p = "blip.visual_encoder."
    w = o[p + "patch_embed.proj.weight"]
    x = F.conv2d(pixels, w, o[p + "patch_embed.proj.bias"], stride=w.shape[-1])
    x = torch.cat([o[p + "cls_token"].expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1)
    x = x + o[p + "pos_embed"]
    for i in range(2):
        b = f"{p}blocks.{i}."
        q, k, v = _lin(o, _ln(o, x, b + "norm1", 1e-6), b + "attn.qkv").chunk(3, -1)
        x = x + _lin(o, _attend(q, k, v), b + "attn.proj")
        x = x + _lin(o, F.gelu(_lin(o, _ln(o, x, b + "norm2", 1e-6), b + "mlp.fc1")), b + "mlp.fc2")
    return _ln(o, x, p + "norm", 1e-6)


def reference_text_cls(o, ids, mask, image_embeds):
    p, eps = "blip.text_encoder.", 1e-12
    emb = o[p + "embeddings.word_embeddings.weight"][ids]
    emb = emb + o[p + "embeddings.position_embeddings.weight"][: ids.shape[1]]
    x = _ln(o, emb, p + "embeddings.LayerNorm", eps)
    pad = (1.0 - mask[:, None, None, :].float()) * -10000.0  # med.py's extended mask

    def block(x, kv, bias, a):
        ctx = _attend(
            _lin(o, x, a + "self.query"),
            _lin(o, kv, a + "self.key"),
            _lin(o, kv, a + "self.value"),
            bias,
        )
        return _ln(o, _lin(o, ctx, a + "output.dense") + x, a + "output.LayerNorm", eps)

    for i in range(2):
        b = f"{p}encoder.layer.{i}."
        x = block(x, x, pad, b + "attention.")
        x = block(x, image_embeds, None, b + "crossattention.")  # image_atts are all ones
        h = _lin(o, F.gelu(_lin(o, x, b + "intermediate.dense")), b + "output.dense")
        x = _ln(o, h + x, b + "output.LayerNorm", eps)
    return x[:, 0]


def reference_score(o, pixels, ids, mask):
    x = reference_text_cls(o, ids, mask, reference_vit(o, pixels))
    for i in (0, 2, 4, 6, 7):  # Dropouts at 1, 3, 5; no activations
        x = _lin(o, x, f"mlp.layers.{i}")
    return (x.squeeze(-1) - 0.16717362830052426) / 1.0333394966054072


@pytest.fixture
def images():
    return torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(1))


# --- tests ---------------------------------------------------------------------------------
def test_scores_finite_shape_and_gradient(tmp_path, images):
    scorer = tiny_imagereward(tmp_path)
    x = images.clone().requires_grad_(True)
    scores = scorer(x, PROMPTS)
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    scores.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in scorer.parameters()) and not scorer.training
    assert scorer.info.name == "imagereward"


def test_score_equals_pieces_and_blip_reference(tmp_path, images):
    scorer = tiny_imagereward(tmp_path)
    with torch.no_grad():
        scores = scorer(images, PROMPTS)
        # pieces: preprocess -> ViT tokens -> text encoder cross-attending -> [CLS] -> head
        pixels = Preprocess(size=32)(images)
        embeds = scorer.vision(pixel_values=pixels).last_hidden_state
        enc = scorer.tokenizer(
            PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt"
        )
        hidden = scorer.text(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            encoder_hidden_states=embeds,
            encoder_attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
        ).last_hidden_state
        pieces = (scorer.head(hidden[:, 0]).squeeze(-1) - ir.REWARD_MEAN) / ir.REWARD_STD
        reference = reference_score(
            to_official(scorer), pixels, enc["input_ids"], enc["attention_mask"]
        )
    torch.testing.assert_close(scores, pieces, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores, reference, rtol=1e-4, atol=1e-4)


def test_text_attention_is_bidirectional_and_padding_masked(tmp_path, images):
    scorer = tiny_imagereward(tmp_path)
    with torch.no_grad():
        base = scorer(images, PROMPTS)
        # [CLS] sits first: a causal mask would make the score ignore every later word
        assert (scorer(images, ["a photo of a dog", *PROMPTS[1:]])[0] - base[0]).abs() > 1e-4
        ids, mask = scorer.tokenize(PROMPTS, images.device)
        embeds = scorer.embed_images(images)
        longer = scorer.raw_reward(embeds, F.pad(ids, (0, 5)), F.pad(mask, (0, 5)))
        torch.testing.assert_close((longer - ir.REWARD_MEAN) / ir.REWARD_STD, base)


def test_official_state_dict_loads_and_scores_identically(tmp_path, images):
    source = tiny_imagereward(tmp_path, seed=0)
    official = to_official(source)
    converted = ir.convert_official_state_dict(official)
    assert set(converted) == set(source.state_dict())
    assert "vision.encoder.layers.1.self_attn.projection.weight" in converted
    assert "head.7.bias" in converted and not any(
        "proj" in k for k in converted if k.startswith("text")
    )
    target = tiny_imagereward(tmp_path, seed=1)
    with torch.no_grad():
        assert not torch.allclose(target(images, PROMPTS), source(images, PROMPTS))
        target.load_official(official)
        torch.testing.assert_close(target(images, PROMPTS), source(images, PROMPTS), rtol=0, atol=0)


def test_wrong_checkpoint_is_rejected_naming_keys(tmp_path):
    open_clip_like = {
        "visual.class_embedding": torch.zeros(48),
        "visual.conv1.weight": torch.zeros(48, 3, 8, 8),
        "token_embedding.weight": torch.zeros(10, 32),
        "logit_scale": torch.zeros(()),
    }
    with pytest.raises(
        ValueError,
        match=r"missing .*blip\.visual_encoder\.cls_token.*unexpected .*visual\.conv1\.weight",
    ):
        ir.convert_official_state_dict(open_clip_like)
    scorer = tiny_imagereward(tmp_path)
    official = to_official(scorer)
    del official["blip.text_encoder.encoder.layer.1.crossattention.self.value.bias"]
    official["blip.text_encoder.encoder.layer.2.output.dense.bias"] = torch.zeros(32)
    with pytest.raises(
        ValueError,
        match=r"missing text\.encoder\.layer\.1\.crossattention\.self\.value\.bias.*unexpected text\.encoder\.layer\.2",
    ):
        scorer.load_official(official)


def test_from_pretrained_names_missing_file_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingWeightsError) as err:
        ir.ImageRewardScorer.from_pretrained(empty, tokenizer_path=empty)
    assert "ImageReward.pt" in str(err.value) and str(empty) in str(err.value)
    with pytest.raises(MissingWeightsError, match="vocab.txt"):
        ir.imagereward_tokenizer(empty / "vocab.txt")


def test_tokenizer_matches_blip_conventions(tmp_path):
    tok = ir.imagereward_tokenizer(write_vocab(tmp_path))
    n = len(SPECIAL) + len(WORDS)
    # init_tokenizer: bert vocab + [DEC] as bos + [ENC] as additional special token
    assert len(tok) == n + 2 == MED["vocab_size"]
    assert tok.bos_token == "[DEC]" and tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [n, n + 1]
    scorer = tiny_imagereward(tmp_path)
    ids, mask = scorer.tokenize(
        ["A Photo of CATS zebra", "a [ENC] cat", "a " * 60], torch.device("cpu")
    )
    assert ids.shape == mask.shape == (3, 35)
    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    # [CLS] stays first (ImageReward never swaps in [ENC]); lower case; WordPiece; [UNK]; [SEP]; pads
    expected = [vocab[t] for t in "[CLS] a photo of cat ##s [UNK] [SEP]".split()]
    assert ids[0, :8].tolist() == expected and (ids[0, 8:] == 0).all()
    assert mask[0].tolist() == [1] * 8 + [0] * 27
    assert ids[1, :5].tolist() == [vocab["[CLS]"], vocab["a"], n + 1, vocab["cat"], vocab["[SEP]"]]
    assert mask[2].all() and ids[2, -1] == vocab["[SEP]"]  # truncated to 35
