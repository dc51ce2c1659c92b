"""Figure 2 / Theorem 1: fine-tuned samples against the exact tilted density, one column per
training diffusion (memoryless vs constant sigma), one row per sampler (ODE, memoryless SDE).
1-D problems get histograms; 2-D a scatter; higher dimensions a scatter in the plane of the exact
target's two leading principal axes (where its modes lie apart), the same plane in every panel."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from am.problems.benchmarks import make_problem  # noqa: E402
from am.schedules import make_schedule  # noqa: E402
from amcli.run import atomic_savefig  # noqa: E402


def _label(tag: str) -> str:
    return "memoryless" if tag == "memoryless" else f"constant sigma = {tag}"


def _plane(target: np.ndarray) -> np.ndarray:
    """``(d, 2)`` projection: the identity for d <= 2, else the target's two leading principal
    axes (a fixed sign, so that the panels of one figure agree)."""
    d = target.shape[1]
    if d <= 2:
        return np.eye(d, 2) if d == 2 else np.eye(1)
    _, _, vt = np.linalg.svd(target - target.mean(0), full_matrices=False)
    axes = vt[:2].T
    return axes * np.sign(axes[np.abs(axes).argmax(0), [0, 1]])


def main(sample_files: list[str], png: str, pdf: str) -> None:
    sns.set_theme(style="whitegrid", context="paper")
    runs = []
    for f in sample_files:
        d = Path(f).parent
        cfg = yaml.safe_load((d / "run.yaml").read_text())
        ev = json.loads((d / "eval.json").read_text())
        runs.append((cfg, ev, np.load(f)))
    samplers = list(runs[0][1]["samplers"])
    view = _plane(runs[0][2]["target"])
    fig, axes = plt.subplots(
        len(samplers),
        len(runs),
        figsize=(3.6 * len(runs), 2.8 * len(samplers)),
        squeeze=False,
        sharex=True,
    )
    for j, (cfg, ev, arr) in enumerate(runs):
        gt = make_problem(
            cfg["problem"]["name"],
            make_schedule(cfg["problem"].get("schedule", "flow_matching")),
            cfg["problem"].get("reward_scale", 1.0),
        )
        for i, s in enumerate(samplers):
            ax = axes[i, j]
            x = arr[f"finetuned_{s}"]
            res = ev["samplers"][s]
            if gt.dim == 1:
                grid = torch.linspace(-5, 6, 600, dtype=torch.float64)[:, None]
                ax.hist(
                    x[:, 0], bins=80, range=(-5, 6), density=True, alpha=0.55, label="fine-tuned"
                )
                tgt = gt.target.to(torch.float64).log_prob(grid).exp()
                base = gt.base.to(torch.float64).log_prob(grid).exp()
                ax.plot(grid[:, 0], tgt, "k-", lw=1.5, label="exact tilt")
                ax.plot(grid[:, 0], base, "k:", lw=1.0, label="base")
            else:
                t, x = arr["target"] @ view, x @ view
                ax.scatter(t[:, 0], t[:, 1], s=1, c="k", alpha=0.25, label="exact tilt")
                ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.25, label="fine-tuned")
                if gt.dim > 2 and i == len(samplers) - 1:
                    ax.set_xlabel("target PC 1", fontsize=7)
                if gt.dim > 2 and j == 0:
                    ax.set_ylabel("target PC 2", fontsize=7)
            ax.set_title(
                f"train: {_label(ev['diffusion'])}\nsample: {s}; "
                f"{ev['metric']} {res['distance']:.3f} (floor {ev['noise_floor']:.3f})",
                fontsize=8,
            )
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(
        f"{runs[0][1]['problem']}: fine-tuning with memoryless vs constant noise", fontsize=10
    )
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    for out in (png, pdf):
        atomic_savefig(fig, out, dpi=150)


if "snakemake" in globals():  # a Snakemake rule: its output goes to the rule's log
    import contextlib

    with (
        open(snakemake.log[0], "w") as _log,  # noqa: F821
        contextlib.redirect_stdout(_log),
        contextlib.redirect_stderr(_log),
    ):
        main(list(snakemake.input), snakemake.output.png, snakemake.output.pdf)  # noqa: F821
