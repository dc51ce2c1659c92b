"""The evaluation command end to end on images written here, and its statistics by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from am.vision.base import ScorerInfo  # noqa: E402
from am.vision.clip import AestheticMLP  # noqa: E402
from am.vision.evaluate import read_image_folder, score_folder  # noqa: E402
from am.vision.testing import tiny_clip_dir  # noqa: E402
from amcli.score_images import main  # noqa: E402

PROMPTS = ["a red cat"] * 3 + ["a blue dog"] * 3 + ["a lighthouse"] * 2


def write_folder(folder, sizes=None):
    g = torch.Generator().manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, _ in enumerate(PROMPTS):
        h, w = (sizes or {}).get(i, (40, 48))
        array = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(array).save(folder / f"{i:03d}.png")
        names.append(f"{i:03d}.png")
    pd.DataFrame({"file_name": names, "prompt": PROMPTS}).to_csv(
        folder / "metadata.csv", index=False
    )
    return folder


class MeanColour:
    """A DreamSim stand-in whose embedding is the mean colour: 1 - cos is easy by hand."""

    info = ScorerInfo("dreamsim", "stand-in", "100 * (1 - cos)")

    def embed(self, images):
        return images.mean(dim=(2, 3))


def test_command_end_to_end(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    monkeypatch.setenv("AM_WEIGHTS", str(weights))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    tiny_clip_dir(weights / "clip-vit-large-patch14", seed=3)
    (weights / "aesthetic").mkdir()
    torch.save(
        AestheticMLP(16).state_dict(), weights / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
    )
    folder = write_folder(tmp_path / "gen", sizes={7: (64, 32)})  # one image of another shape
    assert (
        main([str(folder), "--metrics", "clipscore,aesthetic", "--out", str(tmp_path / "out")]) == 0
    )
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    summary = pd.read_csv(tmp_path / "out" / "metrics.csv").set_index("metric")
    assert list(scores.columns) == ["file_name", "prompt", "clipscore", "aesthetic"]
    assert scores["aesthetic"].notna().all() and len(scores) == 8
    for metric in ("clipscore", "aesthetic"):
        per_prompt = scores.groupby("prompt")[metric].mean()
        assert summary.loc[metric, "mean"] == pytest.approx(per_prompt.mean())
        se = per_prompt.std(ddof=1) / math.sqrt(3)
        assert summary.loc[metric, "stderr"] == pytest.approx(se)
        assert summary.loc[metric, "prompts"] == 3 and summary.loc[metric, "images"] == 8
    markdown = (tmp_path / "out" / "metrics.md").read_text()
    assert "max(mean, 0)" in markdown and "sac+logos+ava1" in markdown


def test_command_errors_before_compute(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = write_folder(tmp_path / "gen")
    assert main([str(folder), "--metrics", "pickscore"]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and str(tmp_path / "weights" / "pickscore") in err
    with pytest.raises(SystemExit):
        main([str(folder), "--metrics", "hpsv2"])  # the version must be chosen
    assert "hpsv2.0 or hpsv2.1" in capsys.readouterr().err
    (folder / "001.png").unlink()
    assert main([str(folder), "--metrics", "clipscore"]) == 2
    assert "missing" in capsys.readouterr().err


def test_diversity_by_hand(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    colours = {"a": [(255, 0, 0), (0, 255, 0)], "b": [(255, 0, 0), (255, 0, 0), (0, 0, 255)]}
    rows = []
    for prompt, cs in colours.items():
        for k, c in enumerate(cs):
            Image.new("RGB", (8, 8), c).save(folder / f"{prompt}{k}.png")
            rows.append({"file_name": f"{prompt}{k}.png", "prompt": prompt})
    pd.DataFrame(rows).to_json(folder / "metadata.jsonl", orient="records", lines=True)
    result = score_folder(read_image_folder(folder), {}, dreamsim=MeanColour())
    row = result.summary.set_index("metric").loc["dreamsim_diversity"]
    # a: orthogonal colours -> 1; b: pairs (same, orth, orth) -> (0 + 1 + 1) / 3; the table
    # reports x 100, the paper's Table 2 scale
    per_prompt = [100.0, 200 / 3]
    assert row["mean"] == pytest.approx(sum(per_prompt) / 2)
    assert row["stderr"] == pytest.approx(abs(per_prompt[0] - per_prompt[1]) / 2)
    assert row["prompts"] == 2 and row["images"] == 5
