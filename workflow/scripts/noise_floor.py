"""One noise floor (rule ``noise_floor``): the floor of every run whose evaluation has this key
(problem, reward scale, sample size, metric, pairs, seed), from a run config holding only it."""

import json
import os
from pathlib import Path

import torch

from amcli.config import parse_run_config
from amcli.run import atomic_write_text, noise_floor_record


def main(key: dict, out: str) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = parse_run_config(
        {
            "problem": {
                "name": key["problem"],
                "schedule": key["schedule"],
                "reward_scale": key["reward_scale"],
            },
            "eval": {k: key[k] for k in ("num_samples", "metric", "floor_repeats", "seed")},
        }
    )
    record = noise_floor_record(cfg)
    if {k: record[k] for k in key} != key:
        raise ValueError(f"floor key {key} did not round-trip: {record}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out), json.dumps(record, indent=1))


if "snakemake" in globals():  # a Snakemake rule: its output goes to the rule's log
    import contextlib

    with (
        open(snakemake.log[0], "w") as _log,  # noqa: F821
        contextlib.redirect_stdout(_log),
        contextlib.redirect_stderr(_log),
    ):
        main(dict(snakemake.params.key), snakemake.output[0])  # noqa: F821
