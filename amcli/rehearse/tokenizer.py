"""The CLIP tokenizer files of the hub, rebuilt offline from open_clip's BPE vocabulary.

open_clip ships ``bpe_simple_vocab_16e6.txt.gz``: the 48 894 merges OpenAI's CLIP uses. The hub's
``openai/clip-vit-large-patch14`` tokenizer (and every SD/SD3/Flux ``tokenizer/`` folder copied
from it) is the same vocabulary in the GPT-2 file format: ``vocab.json`` (256 byte symbols, the
same 256 with ``</w>``, one token per merge, then ``<|startoftext|>`` 49406 and ``<|endoftext|>``
49407) and ``merges.txt`` (a ``#version: 0.2`` header, one merge per line). open_clip names the
two special tokens ``<start_of_text>``/``<end_of_text>`` but gives them the same ids, so
``transformers.CLIPTokenizer`` on the written files gives open_clip's ids (tests/rehearse).

What differs is the libraries' text cleaning, not the files: open_clip runs ftfy and unescapes
HTML ("&amp;" -> "&", the ligature "\ufb01" -> "fi"); transformers' tokenizer does not. It does
the same with the hub's own files.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

# the hub's CLIP vocabulary: 2 x 256 byte symbols + 48 894 merges + 2 specials = 49 408
N_MERGES = 49152 - 256 - 2
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
CONTEXT_LENGTH = 77


def _byte_symbols() -> list[str]:
    """GPT-2's reversible byte -> printable-unicode table, in byte-rank order (256 symbols)."""
    from open_clip.tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def clip_merges() -> list[tuple[str, str]]:
    """The 48 894 BPE merges of OpenAI's CLIP, in rank order, from open_clip's shipped file."""
    from open_clip.tokenizer import default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    # line 0 is the file's header; the tokenizer uses exactly the next N_MERGES lines
    return [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]


def clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id, 49 408 entries, in id order (the order ``vocab.json`` lists them in)."""
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}


@functools.cache
def _bpe_files() -> tuple[str, str]:
    """The text of ``vocab.json`` and ``merges.txt`` (built once: half a second each time)."""
    merges = clip_merges()
    vocab = json.dumps(clip_vocab(merges), ensure_ascii=False)
    return vocab, "\n".join(["#version: 0.2"] + [f"{a} {b}" for a, b in merges]) + "\n"


def _added_token(content: str, *, normalized: bool) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": normalized,
        "rstrip": False,
        "single_word": False,
    }


def write_clip_tokenizer(folder: Path, *, pad_token: str = EOS) -> None:
    """Write ``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``.

    The four files of the hub's ``tokenizer/`` folder for SD 1.5 (``openai/clip-vit-large-patch14``).
    ``pad_token``: ``<|endoftext|>`` for CLIP ViT-L/14 (SD 1.5, SD3's and Flux's ``tokenizer``);
    ``"!"`` for OpenCLIP bigG (SD3's ``tokenizer_2``, as SDXL's): padding then equals open_clip's
    (id 0), and, as with the hub's files, transformers splits a "!" in the text off as a special
    token, so "!!" gives [0, 0] where open_clip gives one token.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _bpe_files()
    (folder / "vocab.json").write_text(vocab, encoding="utf-8")
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    special = {
        "bos_token": _added_token(BOS, normalized=True),
        "eos_token": _added_token(EOS, normalized=True),
        "pad_token": pad_token,
        "unk_token": _added_token(EOS, normalized=True),
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {
        "add_prefix_space": False,
        **{
            k: {**v, "__type": "AddedToken"} if isinstance(v, dict) else v
            for k, v in special.items()
        },
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": CONTEXT_LENGTH,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, sort_keys=True) + "\n"
    )


# T5's sentencepiece vocabulary: 32 000 pieces, then <extra_id_99> ... <extra_id_0> (ids 32000 to
# 32099); the encoder's embedding has 32 128 rows
T5_PIECES = 32000
T5_EXTRA_IDS = 100


def t5_tokenizer(*, model_max_length: int = 512):
    """A ``T5TokenizerFast`` with T5's special tokens, sizes and ids (``<pad>`` 0, ``</s>`` 1,
    ``<unk>`` 2, ``<extra_id_0>`` 32 099; 32 100 tokens) and a made-up unigram vocabulary of
    characters and lower-case letter pairs and triples: T5's ``spiece.model`` is not shipped by
    any installed package, so the ids of words differ from the real tokenizer's.
    ``model_max_length``: 512 as FLUX.1-dev's ``tokenizer_2``."""
    import itertools
    import string

    from transformers import T5TokenizerFast

    symbols = string.ascii_letters + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(f"\u2581{c}", -3.0) for c in symbols] + [(c, -4.0) for c in symbols]
    # letter pairs and triples fill the vocabulary to its real size
    for n in (2, 3):
        for letters in itertools.product(string.ascii_lowercase, repeat=n):
            pieces.append(("\u2581" + "".join(letters), -3.0 - n))
            pieces.append(("".join(letters), -4.0 - n))
    pieces = pieces[:T5_PIECES]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_EXTRA_IDS))]
    return T5TokenizerFast(
        vocab=pieces, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        extra_ids=T5_EXTRA_IDS, model_max_length=model_max_length,
    )  # fmt: skip
