"""Collect every run's eval.json into results tables (CSV and Markdown) with pandas."""

import json
from pathlib import Path

import pandas as pd

from amcli.run import atomic_write_text


def collect(paths: list[str]) -> pd.DataFrame:
    rows = []
    for p in paths:
        ev = json.loads(Path(p).read_text())
        for sampler, res in ev["samplers"].items():
            rows.append(
                {
                    "problem": ev["problem"],
                    "method": ev.get("tag", ev["method"]),
                    "train_diffusion": ev["diffusion"],
                    "sampler": sampler,
                    "seed": ev["seed"],
                    "reward_scale": ev["reward_scale"],
                    "metric": ev["metric"],
                    "distance": res["distance"],
                    # over the evaluation's repeats (older eval.json lack it)
                    "eval_sd": res.get("distance_sd", float("nan")),
                    "noise_floor": ev["noise_floor"],
                    "ratio_to_floor": res["ratio_to_floor"],
                    # standard error of the ratio, and the pairs it is over (older: nan)
                    "ratio_se": res.get("ratio_se", float("nan")),
                    "pairs": ev.get("repeats", 1),
                    "base_distance": ev["base_distance"],
                    "reward": res["reward"],
                    "target_reward": ev["target_reward"],
                    "base_reward": ev["base_reward"],
                    # mass on the wrong modes (TV of mode weights); older eval.json lack it
                    "mode_error": res.get("mode_error", float("nan")),
                    "target_mode_error": ev.get("target_mode_error", float("nan")),
                    "base_mode_error": ev.get("base_mode_error", float("nan")),
                }
            )
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["problem", "method", "train_diffusion", "sampler", "reward_scale", "metric"]
    agg = df.groupby(keys, sort=False).agg(
        seeds=("seed", "nunique"),
        distance=("distance", "mean"),
        distance_std=("distance", "std"),
        eval_sd=("eval_sd", "mean"),
        noise_floor=("noise_floor", "mean"),
        ratio_to_floor=("ratio_to_floor", "mean"),
        ratio_se=("ratio_se", "mean"),
        pairs=("pairs", "min"),
        base_distance=("base_distance", "mean"),
        reward=("reward", "mean"),
        target_reward=("target_reward", "mean"),
        base_reward=("base_reward", "mean"),
        mode_error=("mode_error", "mean"),
        target_mode_error=("target_mode_error", "mean"),
        base_mode_error=("base_mode_error", "mean"),
    )
    return agg.reset_index()


def main(inputs: list[str], csv: str, md: str) -> None:
    table = summarise(collect(inputs))
    Path(csv).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(csv), table.to_csv(index=False, float_format="%.4g"))
    header = (
        "Distance of fine-tuned samples to the exact tilted target (`distance`), next to the\n"
        "sampling-noise floor (two independent target samples of the same size) and the base\n"
        "model's distance. `distance` and the floor are each a mean over the evaluation's\n"
        "independent pairs of sample sets (`eval.repeats`); `eval_sd`: the spread of\n"
        "`distance` over those pairs (one pair's distance is that noisy); `ratio_se`: the\n"
        "standard error of `ratio_to_floor` (the distance's and the floor's, over `pairs` pairs).\n"
        "`train_diffusion`: sigma used while fine-tuning; `sampler`: how the\n"
        "fine-tuned velocity is sampled afterwards; `reward`: mean reward of those samples;\n"
        "`mode_error`: mass on the wrong mixture components (total variation between the\n"
        "samples' occupancy of the target's components and its exact weights; `target_`: that of\n"
        "exact target samples, i.e. sampling noise).\n"
        "Full columns in the CSV. Regenerate: `bash scripts/reproduce.sh`.\n\n"
    )
    cols = [
        "problem",
        "method",
        "train_diffusion",
        "sampler",
        "metric",
        "distance",
        "eval_sd",
        "noise_floor",
        "ratio_to_floor",
        "ratio_se",
        "pairs",
        "base_distance",
        "reward",
        "target_reward",
        "base_reward",
        "mode_error",
        "target_mode_error",
        "base_mode_error",
    ]
    atomic_write_text(
        Path(md), header + table[cols].to_markdown(index=False, floatfmt=".3g") + "\n"
    )


if "snakemake" in globals():  # a Snakemake rule: its output goes to the rule's log
    import contextlib

    with (
        open(snakemake.log[0], "w") as _log,  # noqa: F821
        contextlib.redirect_stdout(_log),
        contextlib.redirect_stderr(_log),
    ):
        main(list(snakemake.input), snakemake.output.csv, snakemake.output.md)  # noqa: F821
