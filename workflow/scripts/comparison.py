"""Every method on every problem and reward scale: one table (CSV + Markdown) and the Pareto plot
of mean reward against distance to the base, with the exact tilts marked."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from amcli.plotting import legend_handles, method_styles  # noqa: E402
from amcli.run import atomic_savefig, atomic_write_text  # noqa: E402

SAMPLERS = ("ode", "memoryless")


def collect(paths: list[str]) -> pd.DataFrame:
    rows = []
    for p in paths:
        ev = json.loads(Path(p).read_text())
        row = {
            "problem": ev["problem"],
            "reward_scale": ev["reward_scale"],
            "method": ev.get("tag", ev["method"]),
            "seed": ev["seed"],
            "metric": ev["metric"],
            "noise_floor": ev["noise_floor"],
            "target_reward": ev["target_reward"],
            "target_diversity": ev["target_diversity"],
            "target_distance_to_base": ev["target_distance_to_base"],
            "base_reward": ev["base_reward"],
            "base_diversity": ev["base_diversity"],
            "target_mode_error": ev.get("target_mode_error", float("nan")),
            "diverged_at": ev.get("diverged_at"),
            "exported_iteration": ev.get("exported_iteration"),
        }
        for s in SAMPLERS:
            res = ev["samplers"].get(s)
            if res is None:
                continue
            for k in ("distance", "reward", "diversity", "distance_to_base", "mode_error"):
                row[f"{k}_{s}"] = res.get(k, float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["problem", "reward_scale", "method", "metric"]
    df = df.assign(diverged=df["diverged_at"].notna())
    values = [c for c in df.columns if c not in keys + ["seed", "diverged"]]
    agg = df.groupby(keys, sort=False)[values].mean()
    agg.insert(0, "seeds", df.groupby(keys, sort=False)["seed"].nunique())
    agg.insert(1, "diverged_seeds", df.groupby(keys, sort=False)["diverged"].sum())
    out = agg.reset_index()
    if "distance_ode" in out:
        out.insert(5, "ratio_to_floor_ode", out["distance_ode"] / out["noise_floor"])
    return out


def pareto(table: pd.DataFrame, png: str, pdf: str) -> None:
    """Reward against distance to the base, one panel per problem. Every method keeps one colour
    and marker in all panels (:func:`amcli.plotting.method_styles`), its points across reward
    scales joined by a thin line; one legend for the figure."""
    sns.set_theme(style="whitegrid", context="paper")
    problems = list(dict.fromkeys(table["problem"]))
    styles = method_styles(table["method"])
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.8), squeeze=False)
    for ax, prob in zip(axes[0], problems, strict=True):
        t = table[table["problem"] == prob]
        # runs that ran away (reward maximisers on unbounded rewards) would flatten the plot:
        # they are listed in the panel instead of drawn
        limit = 10 * t["target_distance_to_base"].max()
        far = ~(t["distance_to_base_ode"] <= limit) | ~(t["reward_ode"].abs() < 1e6)
        off = t[far].groupby("method", sort=False)["reward_scale"].apply(list)
        t = t[~far]
        if len(off):
            lines = [f"{m} (lambda {', '.join(f'{x:g}' for x in lams)})" for m, lams in off.items()]
            ax.text(
                0.02,
                0.98,
                "off scale (ran away):\n" + "\n".join(lines),
                transform=ax.transAxes,
                fontsize=6,
                va="top",
            )
        for method, g in t.groupby("method", sort=False):
            g = g.sort_values("reward_scale")
            st = styles[method]
            ax.plot(g["distance_to_base_ode"], g["reward_ode"], "-", color=st["color"], lw=0.6)
            ax.plot(
                g["distance_to_base_ode"],
                g["reward_ode"],
                ls="",
                ms=6,
                mec="white",
                mew=0.5,
                **st,
            )
        tilt = t.drop_duplicates("reward_scale").sort_values("reward_scale")
        ax.plot(tilt["target_distance_to_base"], tilt["target_reward"], "k*--", ms=12, lw=0.8)
        lams = ", ".join(f"{x:g}" for x in tilt["reward_scale"])
        ax.set_title(f"{prob} (lambda {lams}; {t['metric'].iloc[0]}; ODE samples)", fontsize=9)
        ax.set_xlabel("distance to the base")
        ax.set_ylabel("mean reward")
    handles = legend_handles(styles)
    handles.append(
        Line2D([], [], color="k", marker="*", ls="--", ms=10, lw=0.8, label="exact tilt")
    )
    fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(
        "Reward against distance to the base; stars: the exact tilted targets", fontsize=10
    )
    fig.tight_layout()
    for out in (png, pdf):
        atomic_savefig(fig, out, dpi=150, bbox_inches="tight")
    plt.close(fig)


def main(inputs: list[str], csv: str, md: str, png: str, pdf: str) -> None:
    table = summarise(collect(inputs))
    Path(csv).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(csv), table.to_csv(index=False, float_format="%.4g"))
    header = (
        "Every method on every problem and reward scale lambda. `dist_*`: distance to the exact\n"
        "tilted target with the ODE / memoryless-SDE sampler (noise floor: two independent\n"
        "target samples; both means over the evaluation's independent pairs of sample sets);\n"
        "`reward`, `diversity` (mean pairwise distance) and `to_base`\n"
        "(distance to base samples) with the ODE sampler, next to the exact target's values;\n"
        "`mode_err`: mass on the wrong mixture components (ODE samples; `target_mode_err`: that\n"
        "of exact target samples, the sampling noise).\n"
        "A run whose loss or gradient became non-finite is evaluated at its last good\n"
        "checkpoint (`note`). Regenerate: `bash scripts/reproduce.sh`.\n\n"
    )
    cols = {
        "problem": "problem",
        "reward_scale": "lambda",
        "method": "method",
        "distance_ode": "dist_ode",
        "distance_memoryless": "dist_sde",
        "noise_floor": "floor",
        "reward_ode": "reward",
        "target_reward": "target_reward",
        "diversity_ode": "diversity",
        "target_diversity": "target_diversity",
        "distance_to_base_ode": "to_base",
        "target_distance_to_base": "target_to_base",
        "mode_error_ode": "mode_err",
        "target_mode_error": "target_mode_err",
    }
    shown = table[[c for c in cols if c in table]].rename(columns=cols)
    shown["note"] = [
        f"diverged at it. {int(r.diverged_at)}; last good checkpoint (it. "
        f"{int(r.exported_iteration)}) shown"
        if r.diverged_seeds
        else ""
        for r in table.itertuples()
    ]
    atomic_write_text(Path(md), header + shown.to_markdown(index=False, floatfmt=".3g") + "\n")
    pareto(table, png, pdf)


if "snakemake" in globals():  # a Snakemake rule: its output goes to the rule's log
    import contextlib

    with (
        open(snakemake.log[0], "w") as _log,  # noqa: F821
        contextlib.redirect_stdout(_log),
        contextlib.redirect_stderr(_log),
    ):
        o = snakemake.output  # noqa: F821
        main(list(snakemake.input), o.csv, o.md, o.png, o.pdf)  # noqa: F821
