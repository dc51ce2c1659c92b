"""``python -m amcli.score_images FOLDER --metrics clipscore,pickscore,hpsv2.1,dreamsim``.

Scores a folder of generated images (Hugging Face ``imagefolder`` layout: the images plus a
``metadata.csv`` or ``metadata.jsonl`` with ``file_name`` and ``prompt`` columns) with local
weights, and writes ``scores.csv`` (one row per image), ``metrics.csv`` and ``metrics.md``
(means and standard errors over prompts; each metric's version and scale in the header) into
``--out`` (default: the folder). Weights are found as ``python -m amcli.resources`` lists.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from amcli.logs import log_to_stderr
from amcli.run import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_METRICS = "clipscore,pickscore,hpsv2.1,imagereward,dreamsim"


def main(argv: list[str] | None = None) -> int:
    from am.vision import SCORERS, MissingWeightsError, load_dreamsim, load_scorer
    from am.vision.evaluate import read_image_folder, score_folder, summary_markdown

    ap = argparse.ArgumentParser(
        prog="python -m amcli.score_images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("folder", type=Path)
    ap.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        help=f"comma-separated, from {', '.join([*SCORERS, 'dreamsim'])}",
    )
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: FOLDER)")
    ap.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="directory of one metric's weights (repeatable)",
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    log_to_stderr()
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in names if m not in SCORERS and m != "dreamsim"]
    if unknown:
        hint = " (say hpsv2.0 or hpsv2.1)" if "hpsv2" in unknown else ""
        ap.error(f"unknown metric(s) {unknown}{hint}; known: {', '.join([*SCORERS, 'dreamsim'])}")
    paths = dict(w.split("=", 1) for w in args.weights)
    try:  # validate the folder and find every weight before any compute
        data = read_image_folder(args.folder)
        t0 = time.perf_counter()
        scorers = {
            n: load_scorer(n, paths.get(n)).to(args.device) for n in names if n != "dreamsim"
        }
        dreamsim = (
            load_dreamsim(paths.get("dreamsim"), device=args.device)
            if "dreamsim" in names
            else None
        )
    except (ValueError, MissingWeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info(
        "[score_images] %d images, %d prompts; models loaded in %.0f s",
        len(data.files), len(set(data.prompts)), time.perf_counter() - t0,
    )  # fmt: skip
    result = score_folder(data, scorers, dreamsim, args.batch_size, args.device)
    out = args.out or args.folder
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "scores.csv", result.per_image.to_csv(index=False))
    atomic_write_text(out / "metrics.csv", result.summary.to_csv(index=False))
    markdown = summary_markdown(result.summary, f"Image metrics: {args.folder}")
    atomic_write_text(out / "metrics.md", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
