"""The digits benchmark's outputs: the table in the form of the paper's Table 2 (consistency,
held-out score, diversity, realism, each with its standard error, the importance-sampling
reference beside every reward scale), the Pareto plots across reward scales, and the sample grid.

Rows over seeds: the mean of the seeds' values. Its standard error includes the spread over
training seeds: ``sqrt(max(mean_i se_i^2, s^2) / n)`` with ``s^2`` the variance of the ``n``
seeds' values (an unbiased estimate of one seed's total variance, sampling and training alike),
never below what the samples alone give; with one seed it is the sampling error only, and the
table says so. Every entry with a reference is marked (``†``) where its distance to the
reference exceeds ``2`` combined standard errors, ``sqrt(se^2 + se_ref^2)``; the CSV holds that
distance in standard errors (``<metric>_z``). A reference whose smallest per-class effective
sample size is below ``RELIABLE_ESS`` is marked unreliable (its estimate rests on a handful of
base samples).
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from am.problems.digits_eval import REFERENCED, seeds_stderr  # noqa: E402
from amcli.run import atomic_savefig, atomic_write_text  # noqa: E402

METRICS = [
    "reward", "heldout", "heldout_acc", "diversity", "realism", "pixel_mean", "out_of_range", "ink",
]  # fmt: skip
RELIABLE_ESS = 30
MARK_SE = 2.0


def load(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def summarise(runs: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(runs)
    df["diverged"] = df["status"] != "finished"
    rows = []
    for (method, lam), g in df.groupby(["method", "reward_scale"], sort=False):
        ok = g[~g["diverged"]]
        row = {
            "row": method,
            "reward_scale": lam,
            "seeds": len(g),
            "diverged": int(g["diverged"].sum()),
        }
        for m in METRICS:
            if len(ok) and m in ok:
                row[m], row[m + "_se"] = ok[m].mean(), seeds_stderr(ok[m], ok[m + "_se"])
        rows.append(row)
    return pd.DataFrame(rows)


def distances(df: pd.DataFrame) -> pd.DataFrame:
    """``<metric>_z``: each method row's distance to the reference at its reward scale, in
    combined standard errors (signed: positive above the reference)."""
    ref = df[df["row"] == "reference (IS)"].set_index("reward_scale")
    for m in REFERENCED:
        z = []
        for _, r in df.iterrows():
            if r["row"].startswith(("base", "reference")) or r["reward_scale"] not in ref.index:
                z.append(np.nan)
                continue
            q = ref.loc[r["reward_scale"]]
            z.append((r[m] - q[m]) / np.hypot(r[m + "_se"], q[m + "_se"]))
        df[m + "_z"] = z
    return df


def table(runs, base, reference) -> pd.DataFrame:
    ref = pd.DataFrame(reference).assign(row="reference (IS)", seeds=np.nan, diverged=0)
    ref["reliable"] = ref["ess_min"] >= RELIABLE_ESS
    bases = pd.DataFrame(base)
    bases["row"] = ["base" if w == 1 else f"base + CFG w={w:g}" for w in bases["guidance"]]
    bases = bases.assign(reward_scale=np.nan, seeds=1, diverged=0)
    cols = ["row", "reward_scale", "seeds", "diverged", "ess_min", "n_per_class", "reliable"]
    cols += [c for m in METRICS for c in (m, m + "_se")]
    cols += [m + "_z" for m in REFERENCED]
    out = pd.concat([bases, ref, summarise(runs)], ignore_index=True)
    return distances(out.reindex(columns=cols))


def markdown(df: pd.DataFrame) -> str:
    def pm(row, m, digits):
        if pd.isna(row.get(m)):
            return ""
        se = row.get(m + "_se")
        out = f"{row[m]:.{digits}f} ± {se:.{digits}f}" if pd.notna(se) else f"{row[m]:.{digits}f}"
        return out + (" †" if abs(row.get(m + "_z", np.nan)) > MARK_SE else "")

    lines = [
        "| row | lambda | consistency (reward) | held-out log p | held-out acc | diversity | "
        "realism (FD, lower is better) | mean pixel | out of range | ink |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in df.iterrows():
        name = r["row"]
        if name == "reference (IS)":
            name += f" ESS {r['ess_min']:.0f}" + ("" if r["reliable"] else ", unreliable")
        if r["diverged"]:
            name += f" ({int(r['diverged'])} diverged)"
        lam = "" if pd.isna(r["reward_scale"]) else f"{r['reward_scale']:g}"
        lines.append(
            f"| {name} | {lam} | {pm(r, 'reward', 3)} | {pm(r, 'heldout', 3)} | "
            f"{pm(r, 'heldout_acc', 3)} | {pm(r, 'diversity', 2)} | {pm(r, 'realism', 1)} | "
            f"{pm(r, 'pixel_mean', 4)} | {pm(r, 'out_of_range', 4)} | {pm(r, 'ink', 4)} |"
        )
    seeds = sorted({int(s) for s in df["seeds"].dropna() if not pd.isna(s)})
    lines.append("")
    lines.append(
        f"† more than {MARK_SE:g} combined standard errors from the reference at its lambda. "
        f"Seeds per row: {', '.join(map(str, seeds))}"
        + (" (with one seed the standard error is the sampling error only)." if seeds == [1]
           else "; the standard errors include the spread over seeds.")
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def pareto(df: pd.DataFrame, png: str, pdf: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = df[~df["row"].str.startswith(("base", "reference"))]
    for ax, y in zip(axes, ["diversity", "realism"], strict=True):
        for name, g in methods.groupby("row", sort=False):
            g = g.sort_values("reward_scale")
            ax.errorbar(
                g["reward"],
                g[y],
                xerr=g["reward_se"],
                yerr=g[y + "_se"],
                marker="o",
                ms=4,
                label=name,
                capsize=2,
            )
        ref = df[df["row"] == "reference (IS)"].sort_values("reward_scale")
        if y in ref and ref[y].notna().any():
            ax.plot(ref["reward"], ref[y], "k--", marker="s", ms=4, label="reference (IS)")
        for _, b in df[df["row"].str.startswith("base")].iterrows():
            ax.plot(b["reward"], b[y], "k*", ms=10)
            ax.annotate(
                b["row"], (b["reward"], b[y]), fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
        ax.set_xlabel("consistency: mean reward log p(c | x) at T = 10")
        ax.set_ylabel(
            {
                "diversity": "diversity (mean pairwise feature distance)",
                "realism": "realism: Frechet distance to real digits",
            }[y]
        )
        if y == "realism":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(
        "Digits: reward against diversity and realism across reward scales (points: lambda)"
    )
    fig.tight_layout()
    atomic_savefig(fig, png, dpi=130)
    atomic_savefig(fig, pdf)
    plt.close(fig)


def sample_grid(run_paths: list[str], runs: list[dict], out: str) -> None:
    """One panel per method (rows) and reward scale (columns), the first seed of each: the ten
    classes down, four generations of each across (the paper's Figure 1 analogue)."""
    keep = [
        (p, r)
        for p, r in zip(run_paths, runs, strict=True)
        if r["seed"] == min(x["seed"] for x in runs)
    ]
    methods = list(dict.fromkeys(r["method"] for _, r in keep))
    lams = sorted({r["reward_scale"] for _, r in keep})
    fig, axes = plt.subplots(
        len(methods), len(lams), figsize=(1.2 * len(lams), 2.3 * len(methods)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for p, r in keep:
        i, j = methods.index(r["method"]), lams.index(r["reward_scale"])
        f = Path(p).parent / "samples.pt"
        if r["status"] != "finished" or not f.exists():
            axes[i, j].set_title("diverged", fontsize=7)
            continue
        images = torch.load(f, weights_only=True)["images"][:, :4]  # [10, 4, 1, 8, 8]
        tile = images[:, :, 0].permute(0, 2, 1, 3).reshape(10 * 8, -1)
        axes[i, j].imshow(
            tile.clamp(-1, 1).numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest"
        )
        axes[i, j].set_title(f"{r['method']}\nlambda {r['reward_scale']:g}", fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, out, dpi=80)
    plt.close(fig)


def main(sm) -> None:
    runs = load(sm.input.runs)
    df = table(runs, load(sm.input.base), json.loads(Path(sm.input.reference).read_text()))
    atomic_write_text(Path(sm.output.csv), df.to_csv(index=False))
    atomic_write_text(Path(sm.output.md), markdown(df))
    pareto(df, sm.output.png, sm.output.pdf)
    sample_grid(list(sm.input.runs), runs, sm.output.samples)


if "snakemake" in globals():  # a Snakemake rule: its output goes to the rule's log
    import contextlib

    with (
        open(snakemake.log[0], "w") as _log,  # noqa: F821
        contextlib.redirect_stdout(_log),
        contextlib.redirect_stderr(_log),
    ):
        main(snakemake)  # noqa: F821
