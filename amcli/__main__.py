"""``python -m amcli {finetune,evaluate,check} CONFIG.yaml --run-dir DIR``;
``python -m amcli floor CONFIG.yaml --out FILE`` (a run's noise floor, shared by runs with the
same target and evaluation settings; ``evaluate --floor FILE`` reads it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from amcli.config import ConfigError, parse_run_config
from amcli.logs import log_to_stderr


def load_config(path: str):
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"config file not found: {p.resolve()}")
    with open(p) as f:
        return parse_run_config(yaml.safe_load(f) or {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m amcli", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in [
        ("finetune", "fine-tune (resumes from RUN_DIR/checkpoint.pt)"),
        ("evaluate", "evaluate a fine-tuned run against its exact target"),
        ("check", "validate a config and print it resolved"),
        ("floor", "the noise floor of a run's evaluation (no model needed)"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("config", help="run config YAML")
        if name in ("finetune", "evaluate"):
            p.add_argument("--run-dir", required=True)
        if name == "finetune":
            p.add_argument("--no-progress", action="store_true")
        if name == "evaluate":
            p.add_argument("--floor", help="a noise floor written by `python -m amcli floor`")
        if name == "floor":
            p.add_argument("--out", required=True, help="where to write the floor (JSON)")
    args = ap.parse_args(argv)
    log_to_stderr()
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"invalid config {args.config}: {e}", file=sys.stderr)
        return 2
    if args.command == "check":
        from amcli.config import run_config_to_dict

        print(yaml.safe_dump(run_config_to_dict(cfg), sort_keys=False))
        return 0
    from amcli.run import atomic_write_text, evaluate, finetune, noise_floor_record

    if args.command == "finetune":
        print(finetune(cfg, args.run_dir, progress=not args.no_progress))
    elif args.command == "floor":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), json.dumps(noise_floor_record(cfg), indent=1))
    else:
        floor = json.loads(Path(args.floor).read_text()) if args.floor else None
        print(json.dumps(evaluate(cfg, args.run_dir, floor), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
