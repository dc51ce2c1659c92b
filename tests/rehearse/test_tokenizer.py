"""The CLIP tokenizer files built from open_clip's BPE vocabulary give open_clip's token ids."""

import json

import open_clip
import pytest
from transformers import CLIPTokenizer

from amcli.rehearse.tokenizer import write_clip_tokenizer

PROMPTS = [
    "a photo of a cat",
    "A photo of a cat, sitting on 3.5 mats; (really?) -- yes: 100% sure.",
    'Hello World... (1999) \u2014 caf\u00e9 na\u00efve \u6771\u4eac "quoted" it\'s',
    "I'LL DON'T we've 1,000,000 $12.99 #tag @user 4k 8K 16:9",
    "emoji \U0001f431\U0001f680 here,\tand a\n newline",
    # 120 words: over 77 tokens, so both truncate to 76 tokens + <|endoftext|>
    " ".join(f"word{i}, and" for i in range(60)),
    "",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    write_clip_tokenizer(out)
    return out


@pytest.fixture(scope="module")
def reference():
    return open_clip.get_tokenizer("ViT-L-14")


def test_the_hub_files_are_written(folder):
    assert sorted(p.name for p in folder.iterdir()) == [
        "merges.txt",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    vocab = json.loads((folder / "vocab.json").read_text())
    assert len(vocab) == 49408
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert (folder / "merges.txt").read_text().splitlines()[0] == "#version: 0.2"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "CLIPTokenizer" and config["model_max_length"] == 77


def test_ids_equal_open_clip(folder, reference):
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    # the well-known ids of the real tokenizer
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.unk_token_id == 49407 and len(tokenizer) == 49408
    expected = reference(PROMPTS).tolist()
    got = tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True).input_ids
    for prompt, ours, theirs in zip(PROMPTS, got, expected, strict=True):
        # transformers pads with <|endoftext|> (the pipelines' CLIP-L tokenizer), open_clip with 0
        n = theirs.index(49407) + 1
        assert ours[:n] == theirs[:n], prompt
        assert set(ours[n:]) <= {49407}, prompt
    assert len(tokenizer(PROMPTS[-2]).input_ids) > 77  # the long prompt is really over the limit
    assert got[-2][-1] == 49407


def test_bang_padding_equals_open_clip_to_the_last_id(tmp_path, reference):
    # SD3's tokenizer_2 (OpenCLIP bigG, as SDXL's) pads with "!", id 0: open_clip's padding
    write_clip_tokenizer(tmp_path, pad_token="!")
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    got = tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True).input_ids
    assert got == reference(PROMPTS).tolist()
