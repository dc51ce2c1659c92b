"""The digits benchmark's convergence figure: for each method of ``digits.convergence`` and each
reward scale, every statistic's distance to the importance-sampling reference, in combined
standard errors ``(value - reference) / sqrt(se^2 + se_ref^2)``, against the training budget.

Each point is a whole run of that budget (its cosine schedule spans the run), the grid's own
run the last one; rows over seeds as in the table (``am.problems.digits_eval.seeds_stderr``).
Outputs: ``convergence.csv`` (every point, ``<metric>_z``), ``convergence.md`` (the distances at
each budget) and the figure (one panel per statistic; the band is the table's 2-SE mark).
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from am.problems.digits_eval import REFERENCED, seeds_stderr  # noqa: E402
from amcli.run import atomic_savefig, atomic_write_text  # noqa: E402

MARK_SE = 2.0
LABELS = {
    "reward": "reward",
    "heldout": "held-out log p",
    "heldout_acc": "held-out acc",
    "diversity": "diversity",
    "pixel_mean": "mean pixel",
    "out_of_range": "out of range",
    "ink": "ink",
}


def curve(runs: list[dict], reference: list[dict]) -> pd.DataFrame:
    """One row per (method, reward scale, budget): the seed mean of every statistic, its
    standard error and its distance to the reference (``<metric>_z``)."""
    ref = {r["reward_scale"]: r for r in reference}
    df = pd.DataFrame([r for r in runs if r["status"] == "finished"])
    rows = []
    for (method, lam, n), g in df.groupby(["method", "reward_scale", "iterations"], sort=True):
        row = {"method": method, "reward_scale": lam, "iterations": n, "seeds": len(g)}
        for m in REFERENCED:
            row[m], row[m + "_se"] = g[m].mean(), seeds_stderr(g[m], g[m + "_se"])
            q = ref[lam]
            row[m + "_z"] = (row[m] - q[m]) / np.hypot(row[m + "_se"], q[m + "_se"])
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    head = [LABELS[m] for m in REFERENCED]
    lines = [
        "| method | lambda | iterations | seeds | " + " | ".join(head) + " |",
        "|---" * (len(head) + 4) + "|",
    ]
    for _, r in df.iterrows():
        cells = [f"{r[m + '_z']:+.1f}" + (" †" if abs(r[m + "_z"]) > MARK_SE else "")
                 for m in REFERENCED]  # fmt: skip
        lines.append(
            f"| {r['method']} | {r['reward_scale']:g} | {int(r['iterations'])} | "
            f"{int(r['seeds'])} | " + " | ".join(cells) + " |"
        )
    lines += ["", f"Distance to the reference in combined standard errors; † beyond {MARK_SE:g}."]
    return "\n".join(lines) + "\n"


def figure(df: pd.DataFrame, png: str, pdf: str) -> None:
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.2), sharex=True)
    styles = ["-", "--", ":", "-."]
    lams = sorted(df["reward_scale"].unique())
    methods = list(dict.fromkeys(df["method"]))
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, m in zip(axes.flat, REFERENCED, strict=False):
        ax.axhspan(-MARK_SE, MARK_SE, color="0.9")
        ax.axhline(0, color="k", lw=0.6)
        for (method, lam), g in df.groupby(["method", "reward_scale"], sort=False):
            ax.plot(
                g["iterations"], g[m + "_z"], marker="o", ms=3, color=colours[method],
                ls=styles[lams.index(lam) % len(styles)], label=f"{method}, lambda {lam:g}",
            )  # fmt: skip
        ax.set_xscale("log")
        budgets = sorted(df["iterations"].unique())
        ax.set_xticks(budgets, [str(int(n)) for n in budgets])
        ax.minorticks_off()
        ax.set_title(LABELS[m], fontsize=9)
        ax.set_ylabel("(value - reference) / SE", fontsize=7)
    axes.flat[-1].axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].legend(handles, labels, fontsize=7, loc="center")
    for ax in axes[-1]:
        ax.set_xlabel("training iterations (each point a run of that budget)", fontsize=7)
    fig.suptitle("Digits: distance to the importance-sampling reference against the budget")
    fig.tight_layout()
    atomic_savefig(fig, png, dpi=110)
    atomic_savefig(fig, pdf)
    plt.close(fig)


def main(sm) -> None:
    runs = [json.loads(Path(p).read_text()) for p in sm.input.runs]
    df = curve(runs, json.loads(Path(sm.input.reference).read_text()))
    atomic_write_text(Path(sm.output.csv), df.to_csv(index=False))
    atomic_write_text(Path(sm.output.md), markdown(df))
    figure(df, sm.output.png, sm.output.pdf)


if "snakemake" in globals():  # a Snakemake rule: its output goes to the rule's log
    import contextlib

    sm = snakemake  # noqa: F821
    with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log):
        with contextlib.redirect_stderr(log):
            main(sm)
