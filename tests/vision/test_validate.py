"""``python -m amcli.resources --check``: presence, and the weight files' keys and shapes
against the models that would load them (tiny files in the released layouts)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from am.vision.testing import write_tiny_weights  # noqa: E402
from am.vision.validate import validate  # noqa: E402
from amcli.resources import main  # noqa: E402


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return write_tiny_weights(tmp_path / "weights")


ONLY = ["--only", "clip-vit-large-patch14", "--only", "aesthetic"]


def test_check_passes_on_fitting_files(weights, capsys):
    assert main(["--check", *ONLY]) == 0
    assert "2 of 2 present" in capsys.readouterr().out
    assert validate("clip-vit-large-patch14", weights / "clip-vit-large-patch14") == ""


def test_check_reports_clip_without_its_vision_tower(weights, capsys):
    from safetensors.torch import load_file, save_file

    file = weights / "clip-vit-large-patch14" / "model.safetensors"
    save_file({k: v for k, v in load_file(file).items() if "vision_model" not in k}, file)
    assert main(["--check", *ONLY]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and str(file) in out and "vision_model." in out
    assert main(ONLY) == 0  # without --check only presence is listed


def test_check_reports_wrong_aesthetic_head(weights, capsys):
    import torch

    file = weights / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
    state = torch.load(file, weights_only=True)
    state["layers.7.weight"] = torch.zeros(2, 16)
    torch.save(state, file)
    assert main(["--check", *ONLY]) == 1
    out = capsys.readouterr().out
    assert str(file) in out and "layers.7.weight" in out and "wrong shape" in out


def test_missing_dreamsim_adapter_weights_fail_the_check(tmp_path, monkeypatch, capsys):
    from am.vision.resources import RESOURCES

    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path))
    for name in RESOURCES["dreamsim"].files:
        if "|" not in name:  # every file but the adapter's weights
            (tmp_path / "dreamsim" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "dreamsim" / name).write_text("")
    assert main(["--check", "--only", "dreamsim"]) == 1
    out = capsys.readouterr().out
    assert "ensemble_lora/adapter_model.safetensors or ensemble_lora/adapter_model.bin" in out
    assert "missing: dreamsim" in out
