"""``python -m amcli.t2i {finetune,sample,check,make-tiny,rehearse}``: text-to-image fine-tuning.

    python -m amcli.t2i finetune config/sd15_authors.yaml --run-dir runs/sd15
    python -m amcli.t2i sample config/sd15_authors.yaml --run-dir runs/sd15 --out samples/sd15
    python -m amcli.t2i sample config/sd15_authors.yaml --out samples/base     # the base model
    python -m amcli.t2i make-tiny sd15 models/tiny-sd15     # a tiny random pipeline, for tests
    python -m amcli.t2i rehearse write --out /data/rehearsal  # full-size random weights, hub layout
    python -m amcli.t2i rehearse protocol --out /data/rehearsal  # the paper's protocol on them

The config (YAML) names the model (a directory or a Hub id in the local cache), the reward
(image scorers from ``am.vision`` times ``reward_scale``), the prompt files, the method and its
config, LoRA or a full fine-tune, training and sampling; it is validated, and the model's
family, prompt files (relative to the config file) and reward weights are found, before any
weights load. ``finetune`` writes checkpoints (exact resume; a run directory of other settings
is refused, :mod:`amcli.t2i_settings`), ``metrics.jsonl`` and the result (``lora/`` in
diffusers' format, or ``<denoiser>/`` with ``save_pretrained``); ``sample`` writes PNGs and a
``metadata.csv`` that ``python -m amcli.score_images`` scores.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import yaml

from amcli.config import ConfigError
from amcli.rehearse.cli import add_parser as add_rehearse_parser
from amcli.rehearse.cli import run as rehearse
from amcli.t2i_config import (  # the config's names, here too (python -m amcli.t2i's module)
    LoraSpec,
    ModelSpec,
    PromptSpec,
    RewardSpec,
    SampleSpec,
    T2IConfig,
    load_config,
    parse_t2i_config,
    schedule_options,
)

__all__ = [
    "ModelSpec", "LoraSpec", "RewardSpec", "PromptSpec", "SampleSpec", "T2IConfig",
    "parse_t2i_config", "load_config", "schedule_options", "main",
]  # fmt: skip


def _log_to_stderr() -> None:
    """This CLI's messages as plain lines on stderr (unless the caller configured logging)."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("amcli").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m amcli.t2i",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("finetune", "sample", "check"):
        p = sub.add_parser(name)
        p.add_argument("config")
        if name != "check":
            p.add_argument(
                "--run-dir", default=None, help="the fine-tuning run (sample: none = base)"
            )
        if name == "finetune":
            p.add_argument(
                "--restart-if-changed", action="store_true",
                help="a --run-dir trained under other settings is cleared, not refused",
            )  # fmt: skip
        if name == "sample":
            p.add_argument("--out", required=True, help="folder for the images and metadata.csv")
            p.add_argument("--prompts", default=None, help="prompt file (default: prompts.eval)")
    tiny = sub.add_parser("make-tiny", help="write a tiny random pipeline (tests, smoke runs)")
    tiny.add_argument("family", choices=["sd15", "sd3", "flux"])
    tiny.add_argument("directory")
    add_rehearse_parser(sub)
    args = ap.parse_args(argv)
    _log_to_stderr()
    if args.command == "rehearse":
        return rehearse(args)
    if args.command == "make-tiny":
        from amcli.t2i_run import make_tiny

        make_tiny(args.family, Path(args.directory))
        return 0
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"invalid config {args.config}: {e}", file=sys.stderr)
        return 2
    if args.command == "check":
        print(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        return 0
    from tqdm.contrib.logging import logging_redirect_tqdm

    from amcli.t2i_run import ResourceError, finetune, sample

    if args.command == "finetune" and args.run_dir is None:
        ap.error("finetune needs --run-dir")
    try:
        with logging_redirect_tqdm():  # log lines above the progress bar, not through it
            if args.command == "finetune":
                finetune(cfg, Path(args.run_dir), restart_if_changed=args.restart_if_changed)
            else:
                sample(
                    cfg,
                    run_dir=args.run_dir and Path(args.run_dir),
                    out=Path(args.out),
                    prompts_file=args.prompts,
                )
    except ResourceError as e:
        print(f"error in {args.config}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
