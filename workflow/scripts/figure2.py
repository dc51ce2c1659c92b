"""Figure 2 / Theorem 1: fine-tuned samples against the exact tilted density, one column per
training diffusion (memoryless vs constant sigma), one row per sampler (ODE, memoryless SDE).
1-D problems get histograms against the exact densities. In 2-D and above every panel shows the
fine-tuned samples as a 2-D histogram (shade: density) under the exact tilted density's contours,
on the same axes and ranges in every panel: a biased run puts its mass off the contours. Above 2-D
the plane is the exact target's two leading principal axes (where its modes lie apart), and the
contours are the exact density of the projected mixture (a Gaussian mixture projects to one)."""

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


def _projected_density(gt, view: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The exact tilt's density on the grid ``xs x ys`` of the plane ``view [d, 2]``: component
    ``N(mu, S)`` projects to ``N(V^T mu, V^T S V)``. ``[len(ys), len(xs)]``."""
    plane = gt.target.to(torch.float64).project(torch.as_tensor(view, dtype=torch.float64))
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float64)
    return plane.log_prob(pts).exp().reshape(gx.shape).numpy()


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
    # one range for every panel: the exact target's spread (padded), so panels compare directly
    t2 = runs[0][2]["target"] @ view
    if t2.shape[1] == 2:
        lo, hi = np.percentile(t2, 0.5, axis=0), np.percentile(t2, 99.5, axis=0)
        pad = 0.15 * (hi - lo)
        extent = [(lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])]
        xs, ys = (np.linspace(a, b, 200) for a, b in extent)
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
        if gt.dim > 1:
            density = _projected_density(gt, view, xs, ys)
            # contours at fixed fractions of the peak: the modes' shapes, at any dimension
            levels = density.max() * np.array([0.02, 0.1, 0.3, 0.6, 0.9])
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
                if i == len(samplers) - 1:
                    ax.set_xlabel("x", fontsize=8)
                if j == 0:
                    ax.set_ylabel("density", fontsize=8)
            else:
                x = x @ view
                ax.hist2d(
                    x[:, 0],
                    x[:, 1],
                    bins=45,
                    range=extent,
                    density=True,
                    cmap="Blues",
                    rasterized=True,
                )
                ax.contour(xs, ys, density, levels=levels, colors="k", linewidths=0.6)
                ax.set_xlim(extent[0])
                ax.set_ylim(extent[1])
                names = ("target PC 1", "target PC 2") if gt.dim > 2 else ("x1", "x2")
                if i == len(samplers) - 1:
                    ax.set_xlabel(names[0], fontsize=8)
                if j == 0:
                    ax.set_ylabel(names[1], fontsize=8)
            ax.set_title(
                f"train: {_label(ev['diffusion'])}\nsample: {s}; "
                f"{ev['metric']} {res['distance']:.3f} (floor {ev['noise_floor']:.3f})",
                fontsize=8,
            )
            if i == 0 and j == 0 and gt.dim == 1:
                ax.legend(fontsize=7)
    what = (
        "histograms: fine-tuned samples; lines: exact densities"
        if runs[0][2]["target"].shape[1] == 1
        else "shade: fine-tuned samples (2-D histogram); contours: the exact tilted density"
    )
    fig.suptitle(
        f"{runs[0][1]['problem']}: fine-tuning with memoryless vs constant noise\n{what}",
        fontsize=10,
    )
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    for out in (png, pdf):
        atomic_savefig(fig, out, dpi=150)
    plt.close(fig)


if "snakemake" in globals():  # a Snakemake rule: its output goes to the rule's log
    import contextlib

    with (
        open(snakemake.log[0], "w") as _log,  # noqa: F821
        contextlib.redirect_stdout(_log),
        contextlib.redirect_stderr(_log),
    ):
        main(list(snakemake.input), snakemake.output.png, snakemake.output.pdf)  # noqa: F821
