"""``python -m amcli {finetune,evaluate,check} CONFIG.yaml --run-dir DIR``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from amcli.config import ConfigError, parse_run_config


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
    ]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("config", help="run config YAML")
        if name != "check":
            p.add_argument("--run-dir", required=True)
        if name == "finetune":
            p.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"invalid config {args.config}: {e}", file=sys.stderr)
        return 2
    if args.command == "check":
        from amcli.config import run_config_to_dict

        print(yaml.safe_dump(run_config_to_dict(cfg), sort_keys=False))
        return 0
    from amcli.run import evaluate, finetune

    if args.command == "finetune":
        print(finetune(cfg, args.run_dir, progress=not args.no_progress))
    else:
        print(json.dumps(evaluate(cfg, args.run_dir), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
