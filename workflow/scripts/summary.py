"""The README's short results tables, made from the full tables in ``results/``.

    python -m workflow.scripts.summary [RESULTS_DIR]

prints three Markdown tables: Theorem 1 (distance to the exact tilt over the noise floor,
memoryless against constant sigma) from ``ground_truth.csv``, the method comparison at lambda = 1
from ``comparison.csv`` (the problems every method ran), and the digits benchmark at lambda = 10
from ``digits/table.csv``. ``tests/test_readme.py`` checks that the README shows exactly what
this prints,
so the README's numbers are regenerated with the tables, never edited by hand.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

__all__ = ["theorem1_table", "methods_table", "digits_table", "summary"]

THEOREM1_COLUMNS = {
    ("adjoint_matching", "ode"): "memoryless, ODE sampling",
    ("adjoint_matching", "memoryless"): "memoryless, SDE sampling",
    ("am_constant_sigma", "memoryless"): "sigma = 1.0",
    ("am_constant_sigma_0.2", "memoryless"): "sigma = 0.2",
}


def _dim_label(problem: str) -> str:
    """``gmm10d_overlap_quadratic`` -> ``10-D``."""
    m = re.match(r"gmm(\d+)d", problem)
    return f"{m.group(1)}-D" if m else problem


def _ratio(value: float, se: float) -> str:
    return f"{value:.2f}" if pd.isna(se) else f"{value:.2f} ± {se:.2f}"


def theorem1_table(ground_truth: pd.DataFrame) -> str:
    """Rows: problems; columns: the ratio to the floor (± its standard error) of the memoryless
    run with each sampler and of the constant-sigma runs (sampled with the memoryless SDE)."""
    lines = [
        "| problem | " + " | ".join(THEOREM1_COLUMNS.values()) + " |",
        "|---" * (len(THEOREM1_COLUMNS) + 1) + "|",
    ]
    for problem, rows in ground_truth.groupby("problem", sort=False):
        cells = []
        for method, sampler in THEOREM1_COLUMNS:
            r = rows[(rows.method == method) & (rows.sampler == sampler)]
            cells.append("" if r.empty else _ratio(r.ratio_to_floor.iloc[0], r.ratio_se.iloc[0]))
        lines.append(f"| `{problem}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def methods_table(comparison: pd.DataFrame, reward_scale: float = 1.0) -> str:
    """Rows: methods; columns: distance / floor (ODE sampling) on each problem that every method
    ran, and on the first 2-D one the mean reward and diversity beside the exact target's."""
    df = comparison[comparison.reward_scale == reward_scale]
    methods = list(df.method.drop_duplicates())
    problems = [
        p for p in df.problem.drop_duplicates() if set(df[df.problem == p].method) == set(methods)
    ]
    labels = [_dim_label(p) for p in problems]
    if len(set(labels)) < len(labels):  # two problems of one dimension: their names
        labels = [f"`{p}`" for p in problems]
    shown = next((p for p in problems if _dim_label(p) == "2-D"), problems[0])
    ref = df[df.problem == shown].iloc[0]
    where = _dim_label(shown)
    head = [f"{name} distance / floor" for name in labels]
    head += [
        f"{where} reward (target {ref.target_reward:.2f})",
        f"{where} diversity (target {ref.target_diversity:.2f})",
    ]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for method in methods:
        rows = df[df.method == method].set_index("problem")
        cells = []
        for problem in problems:
            r = rows.loc[problem]
            # a diverged run is evaluated at its last good checkpoint, already far off
            ratio = r.distance_ode / r.noise_floor
            cells.append("diverged" if r.diverged_seeds > 0 else f"{ratio:.3g}")
        r = rows.loc[shown]
        cells += [f"{r.reward_ode:.2f}", f"{r.diversity_ode:.2f}"]
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pm(value: float, se: float, digits: int) -> str:
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def digits_table(table: pd.DataFrame, reward_scale: float = 10.0) -> str:
    """Rows: the base (and its guided versions), the importance-sampling reference and every
    method at ``reward_scale``; columns: the four metrics and two statistics of the images with
    their standard errors, ``†`` where a method is more than 2 combined standard errors from the
    reference (the table's ``<metric>_z``)."""
    rows = table[table.row.str.startswith("base") | (table.reward_scale == reward_scale)]
    cols = [("reward", "consistency (reward)", 3), ("heldout_acc", "held-out accuracy", 3),
            ("diversity", "diversity", 1), ("realism", "realism (FD)", 0),
            ("pixel_mean", "mean pixel", 4), ("out_of_range", "out of range", 4)]  # fmt: skip
    lines = ["| | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for _, r in rows.iterrows():
        name = r.row if r.row.startswith("base") else f"`{r.row}`"
        if r.row == "reference (IS)":
            name = f"exact tilt (IS estimate, ESS {r.ess_min:.0f} of {r.n_per_class:.0f})"
        cells = []
        for key, _, digits in cols:
            if pd.isna(r[key]):
                cells.append("")
                continue
            z = r.get(key + "_z", float("nan"))
            cells.append(_pm(r[key], r[key + "_se"], digits) + (" †" if abs(z) > 2 else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results_dir: str | Path) -> str:
    results_dir = Path(results_dir)
    return (
        theorem1_table(pd.read_csv(results_dir / "ground_truth.csv"))
        + "\n\n"
        + methods_table(pd.read_csv(results_dir / "comparison.csv"))
        + "\n\n"
        + digits_table(pd.read_csv(results_dir / "digits" / "table.csv"))
        + "\n"
    )


if __name__ == "__main__":
    print(summary(sys.argv[1] if len(sys.argv) > 1 else "results"), end="")
