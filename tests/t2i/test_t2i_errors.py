"""``python -m amcli.t2i``: every mistake a user can make in a config or on the command line is
one line naming the file and the key, printed before any weights load (the loaders are replaced
by ones that fail the test if called)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("diffusers")

import am.t2i.loading  # noqa: E402
import am.vision  # noqa: E402
from amcli.config import ConfigError  # noqa: E402
from amcli.t2i import load_config, main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ROOT / "data" / "prompts"


@pytest.fixture
def no_loading(monkeypatch):
    forbid_loading(monkeypatch)


def forbid_loading(monkeypatch) -> None:
    """Any pipeline or scorer load fails the test: the errors must come before."""

    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded before the error")

    monkeypatch.setattr(am.t2i.loading, "load_pipeline", fail)
    monkeypatch.setattr(am.vision, "load_reward", fail)
    monkeypatch.setattr(am.vision, "load_scorer", fail)


@pytest.fixture
def model(tmp_path):
    """A model directory as far as the checks read it: ``model_index.json`` alone."""
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline"})
    )
    return directory


def config(tmp_path, model, text: str | None = None, **overrides) -> Path:
    data = {
        "model": {"path": str(model), "height": 16, "width": 16},
        "reward": {"terms": {"aesthetic": 1.0}},
        "prompts": {
            "train": str(PROMPTS / "demo_train.txt"),
            "eval": str(PROMPTS / "demo_eval.txt"),
        },
        "method": {"name": "adjoint_matching", "num_steps": 4},
        "train": {"iterations": 2, "batch_size": 4, "lr": 1e-2},
        "device": "cpu",
    }
    data.update(overrides)
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "cfg" / "run.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text if text is not None else yaml.safe_dump(data))
    return path


def edited(path: Path, section: str, values: dict) -> Path:
    """``path``'s config with ``values`` merged into its ``section``."""
    data = yaml.safe_load(path.read_text())
    data[section] = {**data.get(section, {}), **values}
    path.write_text(yaml.safe_dump(data))
    return path


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "edit, needle",
    [
        (
            {"text": "model: {path: x\ntrain: [1, 2\n"},
            "YAML syntax error at line 2, column 6: expected ',' or '}'",
        ),
        (
            {"method": "adjoint_matching"},
            "method: expected a mapping such as {name: adjoint_matching",
        ),
        ({"train": None}, "train: missing; a text-to-image config sets its budget"),
        ({"train": {"iterations": 2, "batch_size": 4}}, "train.lr: missing"),
        (
            {"train": {"iterations": 2, "batchsize": 4, "lr": 1}},
            "train: unknown key(s) ['batchsize']",
        ),
        ({"lora": {"rank": "four"}}, "lora.rank: expected an integer, got 'four'"),
        ({"prompts": {"train": "nowhere.txt", "eval": "x.txt"}}, "prompts.train: prompt file"),
    ],
    ids=["yaml", "method-string", "no-train", "no-lr", "typo", "rank-type", "prompts"],
)
def test_config_mistakes_are_one_line(tmp_path, model, capsys, no_loading, edit, needle):
    path = config(tmp_path, model, **edit)
    assert main(["finetune", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = one_line(capsys)
    assert err.startswith(f"invalid config {path}: ") and needle in err, err
    assert not (tmp_path / "run").exists()


def test_prompt_files_are_relative_to_the_config_file(tmp_path, model, monkeypatch):
    (tmp_path / "cfg" / "prompts").mkdir(parents=True)
    (tmp_path / "cfg" / "prompts" / "train.txt").write_text("a cat\n")
    (tmp_path / "cfg" / "prompts" / "eval.txt").write_text("a dog\n")
    path = config(
        tmp_path, model, prompts={"train": "prompts/train.txt", "eval": "prompts/eval.txt"}
    )
    monkeypatch.chdir(tmp_path)  # where a cwd-relative reading would look: not there
    cfg = load_config(str(path))
    assert cfg.prompts.train == str(tmp_path / "cfg" / "prompts" / "train.txt")
    # a file that exists relative to the working directory only is not found
    (tmp_path / "only_here.txt").write_text("a cow\n")
    path = config(tmp_path, model, prompts={"train": "only_here.txt", "eval": "prompts/eval.txt"})
    with pytest.raises(ConfigError, match=r"prompts.train: prompt file 'only_here.txt' not found"):
        load_config(str(path))
    (tmp_path / "cfg" / "prompts" / "eval.txt").write_text("# only a comment\n\n")
    path = config(
        tmp_path, model, prompts={"train": "prompts/train.txt", "eval": "prompts/eval.txt"}
    )
    with pytest.raises(ConfigError, match=r"prompts.eval: .*eval.txt holds no prompts"):
        load_config(str(path))


def test_unsupported_family_before_loading(tmp_path, model, capsys, no_loading):
    (model / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline"})
    )
    path = config(tmp_path, model)
    for argv in (["finetune", str(path), "--run-dir", str(tmp_path / "run")],
                 ["sample", str(path), "--out", str(tmp_path / "out")]):  # fmt: skip
        assert main(argv) == 2
        err = one_line(capsys)
        assert err.startswith(f"error in {path}: model.path: ")
        assert "'StableDiffusionXLPipeline', which this suite cannot fine-tune" in err
        assert "StableDiffusionPipeline, StableDiffusion3Pipeline, FluxPipeline" in err


def test_missing_model_says_hf_download(tmp_path, capsys, no_loading):
    path = config(tmp_path, "some-org/some-model")
    assert main(["finetune", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error in {path}: model.path: model 'some-org/some-model'")
    assert "`hf download some-org/some-model`" in err and "huggingface-cli" not in err


def test_missing_scorer_weights_before_loading(tmp_path, model, capsys, no_loading, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    path = config(tmp_path, model, reward={"terms": {"pickscore": 1.0}})
    assert main(["finetune", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error in {path}: reward.terms.pickscore: ")
    assert "model.safetensors" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_sample_mistakes_before_loading(tmp_path, model, capsys, no_loading):
    path = config(tmp_path, model)
    argv = ["sample", str(path), "--out", str(tmp_path / "out")]
    assert main([*argv, "--prompts", "missing.txt"]) == 2
    err = one_line(capsys)
    assert err.startswith(f"error in {path}: --prompts: prompt file 'missing.txt' not found")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    assert main([*argv, "--prompts", str(tmp_path / "empty.txt")]) == 2
    assert "--prompts: " in (err := one_line(capsys)) and "holds no prompts" in err
    assert main([*argv, "--run-dir", str(tmp_path)]) == 2
    assert "--run-dir: " in one_line(capsys) and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "family, edit, needle",
    [
        ("StableDiffusion3Pipeline", {"betas": [0.002, 0.009]}, "model.betas: a VP (DDIM/DDPM)"),
        ("FluxPipeline", {"final_alpha_bar": "half"}, "model.final_alpha_bar: a VP (DDIM/DDPM)"),
        ("StableDiffusion3Pipeline", {"scheduler": "ddim:0"}, "sample.scheduler: 'ddim:0' does"),
        ("StableDiffusionPipeline", {"scheduler": "flow_match_euler"}, "sample.scheduler: 'flow"),
    ],
    ids=["betas-sd3", "final-flux", "ddim-sd3", "euler-sd15"],
)
def test_options_of_another_family_before_loading(
    tmp_path, model, capsys, no_loading, family, edit, needle
):
    (model / "model_index.json").write_text(json.dumps({"_class_name": family}))
    path = edited(config(tmp_path, model), "sample" if "scheduler" in edit else "model", edit)
    for argv in (["finetune", str(path), "--run-dir", str(tmp_path / "run")],
                 ["sample", str(path), "--out", str(tmp_path / "out")]):  # fmt: skip
        assert main(argv) == 2
        err = one_line(capsys)
        assert err.startswith(f"error in {path}: {needle}"), err


def test_a_noisy_end_samples_with_ddim_only(tmp_path, model, capsys, no_loading):
    path = edited(config(tmp_path, model), "model", {"final_alpha_bar": "half"})
    path = edited(path, "sample", {"scheduler": "ddpm"})
    assert main(["sample", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "sample.scheduler: 'ddpm' cannot end noisy" in one_line(capsys)


def test_a_noisy_end_refuses_a_warped_grid(tmp_path, model, capsys, no_loading):
    path = edited(config(tmp_path, model), "model", {"final_alpha_bar": "half"})
    path = edited(path, "method", {"grid_warp": 0.5})
    assert main(["finetune", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "method.grid_warp: must be 0 with model.final_alpha_bar: half" in one_line(capsys)
