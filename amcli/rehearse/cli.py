"""``python -m amcli.t2i rehearse write``: random-weight models in the hub's exact layout.

    python -m amcli.t2i rehearse write --out /data/rehearsal                  # all, full size
    python -m amcli.t2i rehearse write --out DIR --families sd15 --scale tiny
    python -m amcli.t2i rehearse write --out DIR --layout hub-cache           # HF_HUB_CACHE=DIR
    python -m amcli.t2i rehearse write --out DIR --scorers                    # + DIR/scorers

``--layout folders`` writes ``DIR/<family>`` (a config's ``model.path: DIR/sd15``);
``hub-cache`` writes each pipeline where the Hugging Face cache keeps its hub id
(``DIR/models--org--name/snapshots/<rev>``), so the suite's configs load them unchanged with
``HF_HUB_CACHE=DIR`` (``model.path: stabilityai/stable-diffusion-3.5-medium``). ``--scorers``
writes every scorer's weights into ``DIR/scorers`` (``AM_WEIGHTS=DIR/scorers``). What was written
is listed in ``DIR/rehearsal.json``: each pipeline's folder, hub id, dtype, variant, parameter
counts, bytes on disk and seconds to write.

``rehearse protocol`` runs the paper's protocol on them through the workflow's rules
(:mod:`amcli.rehearse.protocol`).

Full size, one family at a time (memory): SD 1.5 about 5.5 GB of float32 weights plus its fp16
files, SD 3.5 medium 6.7 GB in float16, Flux (2 + 2 blocks) 3.5 GB in bfloat16.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Add ``rehearse write`` to the subcommands ``sub`` of ``python -m amcli.t2i``."""
    from amcli.rehearse.configs import SCALES
    from amcli.rehearse.pipelines import FAMILIES

    rehearse = sub.add_parser(
        "rehearse", help="write random-weight models in the hub's exact layout (amcli.rehearse)"
    )
    actions = rehearse.add_subparsers(dest="rehearse_command", required=True)
    write = actions.add_parser("write", description=__doc__, help="write the models")
    write.add_argument("--out", required=True, help="folder to write into")
    write.add_argument(
        "--families",
        nargs="*",
        choices=list(FAMILIES),
        default=list(FAMILIES),
        help="none (--families --scorers): the scorers alone",
    )
    write.add_argument("--scale", choices=SCALES, default="full")
    write.add_argument("--layout", choices=("folders", "hub-cache"), default="folders")
    write.add_argument("--scorers", action="store_true", help="also every scorer, in OUT/scorers")
    write.add_argument("--seed", type=int, default=0)
    from amcli.rehearse.protocol import __doc__ as protocol_doc
    from amcli.rehearse.protocol import add_arguments

    add_arguments(
        actions.add_parser(
            "protocol", description=protocol_doc, help="the paper's protocol on written models",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )  # fmt: skip


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def run(args) -> int:
    """Write what ``args`` (parsed by :func:`add_parser`) asks for; the exit status."""
    if args.rehearse_command == "protocol":
        from amcli.rehearse.protocol import protocol

        return protocol(args)
    from amcli.rehearse.pipelines import REPO_IDS, cache_snapshot, write_pipeline

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "rehearsal.json"
    record = json.loads(manifest.read_text()) if manifest.is_file() else {"pipelines": {}}
    for family in args.families:
        if args.layout == "hub-cache":
            folder = cache_snapshot(out, REPO_IDS[family])
        else:
            folder = out / family
        start = time.perf_counter()
        written = write_pipeline(family, folder, scale=args.scale, seed=args.seed)
        seconds = time.perf_counter() - start
        entry = {
            **{k: str(v) if isinstance(v, Path) else v
               for k, v in dataclasses.asdict(written).items()},
            "scale": args.scale, "bytes": _bytes(folder), "seconds": round(seconds, 1),
        }  # fmt: skip
        record["pipelines"][family] = entry
        total = sum(written.parameters.values())
        print(f"{family}: {folder} ({total / 1e6:.0f}M parameters, "
              f"{entry['bytes'] / 2**30:.2f} GiB, {seconds:.0f} s)", flush=True)  # fmt: skip
        manifest.write_text(json.dumps(record, indent=1) + "\n")
    if args.scorers:
        write_scorers = _scorer_writer()
        start = time.perf_counter()
        settings = write_scorers(out / "scorers", scale=args.scale)
        seconds = round(time.perf_counter() - start, 1)
        record["scorers"] = {"folder": str(out / "scorers"), "settings": settings,
                             "scale": args.scale, "seconds": seconds}  # fmt: skip
        print(f"scorers: {out / 'scorers'}", flush=True)
        manifest.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return 0


def _scorer_writer():
    """``amcli.rehearse.scorers.write_scorers(folder, scale=...)``: every scorer of
    :mod:`am.vision` in its official files (written alongside, by its own module)."""
    try:
        from amcli.rehearse.scorers import write_scorers
    except ImportError as e:
        raise SystemExit(f"--scorers: amcli.rehearse.scorers is not available ({e})") from None
    return write_scorers
