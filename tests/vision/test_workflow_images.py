"""The workflow's score_images rule on a folder of generations, with tiny weights written here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
from am.vision.clip import AestheticMLP  # noqa: E402
from am.vision.testing import tiny_clip_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_score_images_rule(tmp_path):
    from PIL import Image

    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "snakemake").exists():
        pytest.skip("snakemake not installed in this environment")
    weights = tmp_path / "weights"
    tiny_clip_dir(weights / "clip-vit-large-patch14", seed=3)
    (weights / "aesthetic").mkdir()
    torch.save(
        AestheticMLP(16).state_dict(), weights / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
    )
    folder = tmp_path / "samples" / "base"
    folder.mkdir(parents=True)
    rows = []
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 40, 200 - 30 * i)).save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "prompt": "a cat" if i < 2 else "a dog"})
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "AM_WEIGHTS": str(weights),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    cmd = [str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
           "--configfile", str(ROOT / "config" / "smoke.yaml"),
           "--cores", "1", "--config", "image_metrics=[clipscore,aesthetic]", "--",
           "samples/base/metrics/metrics.md"]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = pd.read_csv(folder / "metrics" / "metrics.csv")
    assert list(summary["metric"]) == ["clipscore", "aesthetic"]
    assert (summary["prompts"] == 2).all() and (summary["images"] == 4).all()
