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
    merges = clip_merges()
    vocab = clip_vocab(merges)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
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
