"""``python -m amcli.resources``: every model the image metrics use, its files, source and size,
where to put them, and whether they are on this machine.

Nothing is downloaded unless asked: ``--download NAME`` (repeatable) fetches one resource into
``$AM_WEIGHTS/NAME`` from the Hugging Face Hub or its URL, on a machine with network access.
``--check`` also checks every present resource's weight files against the model that would load
them (keys and shapes from the files' headers, no tensor data read; ``am.vision.validate``) and
exits 1 when any listed resource is missing or does not fit (``--only NAME`` to restrict).
"""

from __future__ import annotations

import argparse
import logging
import urllib.request
import zipfile

from am.vision.resources import RESOURCES, check, shown_files, weights_root
from amcli.logs import log_to_stderr

log = logging.getLogger(__name__)


def download(name: str) -> None:
    """Fetch one resource into ``$AM_WEIGHTS/<name>`` (the only code here that uses the net)."""
    resource = RESOURCES[name]
    target = weights_root() / name
    target.mkdir(parents=True, exist_ok=True)
    if resource.repo_id is not None:
        from huggingface_hub import hf_hub_download

        for file in resource.files:
            hf_hub_download(resource.repo_id, file, local_dir=target)
        return
    for url in resource.urls:
        filename = url.rsplit("/", 1)[-1]
        dest = target / ("checkpoints" if filename.startswith("dino_vitbase") else "") / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s -> %s", url, dest)
        urllib.request.urlretrieve(url, dest)
        if dest.suffix == ".zip":
            with zipfile.ZipFile(dest) as archive:
                archive.extractall(target)
            dest.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m amcli.resources",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--download", action="append", default=[], metavar="NAME", choices=sorted(RESOURCES)
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="check keys and shapes too; exit 1 if anything listed is missing or does not fit",
    )
    ap.add_argument(
        "--only", action="append", default=[], metavar="NAME", choices=sorted(RESOURCES)
    )
    ap.add_argument(
        "--make-tiny",
        metavar="DIR",
        default=None,
        help="write tiny random clipscore/aesthetic weights to DIR (tests, smoke runs)",
    )
    args = ap.parse_args(argv)
    log_to_stderr()
    if args.make_tiny:
        from am.vision.testing import write_tiny_weights

        log.info("tiny random weights in %s", write_tiny_weights(args.make_tiny))
        return 0
    for name in args.download:
        download(name)
    rows = [s for s in check() if not args.only or s.resource.name in args.only]
    print(
        f"Weights directory: {weights_root()} (set AM_WEIGHTS to change it); the Hugging Face "
        "cache is searched too. Nothing downloads at run time.\n"
    )
    invalid: dict[str, str] = {}
    if args.check:
        from am.vision.validate import validate

        for status in rows:
            if status.found is not None:
                problem = validate(status.resource.name, status.found)
                if problem:
                    invalid[status.resource.name] = problem
    for status in rows:
        r = status.resource
        source = f"huggingface.co/{r.repo_id}" if r.repo_id else "\n      ".join(r.urls)
        state = f"found in {status.found}" if status.found else "MISSING"
        if r.name in invalid:
            state = f"DOES NOT FIT: {invalid[r.name]}"
        print(
            f"{r.name}  [{state}]\n  {r.description}\n  files: {shown_files(r)} "
            f"({r.size})\n  source: {source}\n  place in: {weights_root() / r.name}"
            + (f"\n  note: {r.note}" if r.note else "")
            + "\n"
        )
    missing = [s.resource.name for s in rows if s.found is None]
    print(
        f"{len(rows) - len(missing)} of {len(rows)} present"
        + (f"; missing: {', '.join(missing)}" if missing else "")
        + (f"; not fitting their models: {', '.join(invalid)}" if invalid else "")
    )
    return 1 if args.check and (missing or invalid) else 0


if __name__ == "__main__":
    raise SystemExit(main())
