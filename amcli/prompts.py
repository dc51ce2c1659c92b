"""``python -m amcli.prompts NAME``: fetch a published prompt set into ``data/prompts/NAME.txt``.

The only command here that uses the network; everything else reads the written file (one prompt
per line, :func:`am.t2i.prompts.read_prompts`). ``--list`` shows every set, its source and
licence.
"""

from __future__ import annotations

import argparse
import json
import logging
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from amcli.logs import log_to_stderr
from amcli.run import atomic_write_text

__all__ = ["PromptSet", "PROMPT_SETS", "parse", "main"]

log = logging.getLogger(__name__)

_IR = "https://raw.githubusercontent.com/THUDM/ImageReward/main"


@dataclass(frozen=True)
class PromptSet:
    """A published prompt list: a JSON array of records whose ``key`` field is the prompt."""

    url: str
    key: str
    licence: str
    description: str


PROMPT_SETS: dict[str, PromptSet] = {
    "imagereward_benchmark": PromptSet(
        f"{_IR}/benchmark/benchmark-prompts.json", "prompt", "Apache-2.0 (THUDM/ImageReward)",
        "ImageReward's 100-prompt benchmark: the Adjoint Matching authors' SD 1.5 evaluation set",
    ),
    "refl_train": PromptSet(
        f"{_IR}/data/refl_data.json", "text", "Apache-2.0 (THUDM/ImageReward)",
        "ImageReward's ReFL training prompts: the Adjoint Matching authors' SD 1.5 training set",
    ),
}  # fmt: skip


def parse(raw: bytes, prompt_set: PromptSet) -> list[str]:
    """The prompts of a downloaded file, stripped, empty ones and duplicates dropped (in order)."""
    records = json.loads(raw)
    prompts = [str(r[prompt_set.key]).strip() for r in records]
    return list(dict.fromkeys(p for p in prompts if p))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m amcli.prompts", description=__doc__)
    ap.add_argument("name", nargs="?", choices=sorted(PROMPT_SETS))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default="data/prompts", help="folder for NAME.txt")
    args = ap.parse_args(argv)
    log_to_stderr()
    if args.list or args.name is None:
        for name, s in PROMPT_SETS.items():
            print(f"{name}\n  {s.description}\n  source: {s.url}\n  licence: {s.licence}\n")
        return 0
    prompt_set = PROMPT_SETS[args.name]
    with urllib.request.urlopen(prompt_set.url, timeout=60) as response:
        prompts = parse(response.read(), prompt_set)
    out = Path(args.out) / f"{args.name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {prompt_set.description}\n# source: {prompt_set.url} ({prompt_set.licence})\n"
    atomic_write_text(out, header + "\n".join(p.replace("\n", " ") for p in prompts) + "\n")
    log.info("wrote %d prompts to %s", len(prompts), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
