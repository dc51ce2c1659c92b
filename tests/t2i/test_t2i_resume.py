"""A reused run directory: the settings that change the trained weights are recorded, any other
value is refused before any model loads (naming each key with both values), a longer
``train.iterations`` continues the run, and a finished run's LoRA is never rewritten."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from amcli.t2i import load_config, main  # noqa: E402
from amcli.t2i_checks import check_finetune  # noqa: E402
from tests.t2i.test_t2i_cli import PROMPTS, make_world, write_config  # noqa: E402
from tests.t2i.test_t2i_errors import forbid_loading  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("resume"))


@pytest.fixture(autouse=True)
def _weights(world, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(world / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(world / "hub"))


@pytest.fixture
def no_loading(monkeypatch):
    forbid_loading(monkeypatch)


@pytest.fixture(scope="module")
def finished(world):
    """A LoRA run of 2 iterations, finished; tests copy it before changing it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AM_WEIGHTS", str(world / "weights"))
        mp.setenv("HF_HUB_CACHE", str(world / "hub"))
        config = write_config(world, "resume.yaml")
        run_dir = world / "runs" / "resume"
        assert main(["finetune", str(config), "--run-dir", str(run_dir)]) == 0
    return run_dir


def variant(world, name, **changes):
    """``resume.yaml`` with ``changes`` (``section={key: value}``) merged in."""
    data = yaml.safe_load((world / "resume.yaml").read_text())
    for section, values in changes.items():
        data[section] = {**data[section], **values} if isinstance(values, dict) else values
    path = world / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_record_holds_every_setting_that_changes_the_weights(finished):
    settings = json.loads((finished / "settings.json").read_text())["settings"]
    for key in ("model.path", "model.dtype", "model.height", "model.width", "lora.rank",
                "lora.alpha", "lora.target_modules", "reward.terms", "reward.reward_scale",
                "prompts.train_sha256", "method.name", "method.num_steps", "train.lr",
                "train.batch_size", "train.seed", "train.iterations"):  # fmt: skip
        assert key in settings, key
    # what does not change the weights is not held against a resumed run
    for key in ("model.gradient_checkpointing", "train.checkpoint_every", "train.log_every"):
        assert key not in settings


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"lora": {"alpha": 16.0}}, "lora.alpha: recorded 8.0, now 16.0"),
        ({"lora": {"rank": 8}}, "lora.rank: recorded 4, now 8"),
        ({"lora": {"target_modules": ["to_q"]}},
         'lora.target_modules: recorded ["to_q", "to_k", "to_v", "to_out.0"], now ["to_q"]'),
        ({"lora": None}, "lora: recorded (absent), now null"),
        ({"reward": {"reward_scale": 20.0}}, "reward.reward_scale: recorded 10.0, now 20.0"),
        ({"reward": {"terms": {"aesthetic": 2.0}}},
         'reward.terms: recorded {"aesthetic": 1.0}, now {"aesthetic": 2.0}'),
        ({"model": {"height": 32}}, "model.height: recorded 16, now 32"),
        ({"model": {"dtype": "bfloat16"}}, 'model.dtype: recorded "float32", now "bfloat16"'),
        ({"method": {"num_steps": 5}}, "method.num_steps: recorded 4, now 5"),
        ({"train": {"lr": 0.02}}, "train.lr: recorded 0.01, now 0.02"),
        ({"train": {"seed": 1}}, "train.seed: recorded 0, now 1"),
        ({"train": {"iterations": 1}}, "train.iterations: recorded 2, now 1 (a budget can be"),
    ],
    ids=["alpha", "rank", "targets", "no-lora", "scale", "terms", "size", "dtype", "method",
         "lr", "seed", "cut"],
)  # fmt: skip
def test_other_settings_are_refused_before_loading(
    world, finished, capsys, no_loading, changes, needle
):
    lora = (finished / "lora" / "pytorch_lora_weights.safetensors").read_bytes()
    record = (finished / "settings.json").read_text()
    config = variant(world, "changed.yaml", **changes)
    assert main(["finetune", str(config), "--run-dir", str(finished)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error in {config}: --run-dir: {finished} was ")
    assert needle in err, err
    # the finished run is untouched: its LoRA was trained under the recorded settings
    assert (finished / "lora" / "pytorch_lora_weights.safetensors").read_bytes() == lora
    assert (finished / "settings.json").read_text() == record


def test_every_differing_key_is_named(world, finished, capsys, no_loading, tmp_path):
    prompts = tmp_path / "other_prompts.txt"
    prompts.write_text((PROMPTS / "demo_train.txt").read_text() + "one more prompt\n")
    model = tmp_path / "model-copy"
    shutil.copytree(world / "models" / "sd15", model)
    config = variant(
        world, "changed.yaml", lora={"alpha": 4.0}, prompts={"train": str(prompts)},
        model={"path": str(model)},
    )  # fmt: skip
    assert main(["finetune", str(config), "--run-dir", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "lora.alpha: recorded 8.0, now 4.0" in err
    assert f'model.path: recorded "{world / "models" / "sd15"}", now "{model}"' in err
    assert "prompts.train_sha256: recorded " in err
    # comments and blank lines are not prompts: the same prompts are the same training set
    prompts.write_text("# a comment\n\n" + (PROMPTS / "demo_train.txt").read_text())
    config = variant(world, "same.yaml", prompts={"train": str(prompts)})
    assert check_finetune(load_config(str(config)), finished).finished is not None


def test_a_finished_run_returns_at_once_under_changes_that_keep_its_weights(
    world, finished, caplog, no_loading
):
    caplog.set_level("INFO", logger="amcli")
    config = variant(
        world, "same.yaml", train={"checkpoint_every": 1, "checkpoint_minutes": 30.0},
        model={"gradient_checkpointing": True}, sample={"num_steps": 7},
    )  # fmt: skip
    assert main(["finetune", str(config), "--run-dir", str(finished)]) == 0
    assert f"{finished} already holds this run, finished" in caplog.text


def test_a_longer_budget_continues_the_run(world, finished, tmp_path, capsys, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    caplog.set_level("INFO", logger="amcli")
    config = variant(world, "longer.yaml", train={"iterations": 3})
    assert main(["finetune", str(config), "--run-dir", str(run_dir)]) == 0
    assert f"train.iterations: extending {run_dir} from 2 to 3 iterations" in caplog.text
    assert "cosine learning rate now decays over 3 iterations" in caplog.text
    assert "resume=" not in capsys.readouterr().err  # no Python argument the CLI lacks
    assert json.loads((run_dir / "result.json").read_text())["iterations"] == 3
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3
    assert json.loads((run_dir / "settings.json").read_text())["settings"]["train.iterations"] == 3


def test_a_run_without_a_record_or_without_a_checkpoint(world, finished, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / "settings.json").unlink()
    config = world / "resume.yaml"
    assert main(["finetune", str(config), "--run-dir", str(run_dir)]) == 2
    assert "holds a run but no settings.json" in capsys.readouterr().err
    # a run stopped before its first checkpoint kept nothing trained: any settings start afresh
    shutil.copy(finished / "settings.json", run_dir / "settings.json")
    for name in ("checkpoint.pt", "result.json"):
        (run_dir / name).unlink()
    changed = variant(world, "changed.yaml", lora={"alpha": 16.0})
    assert check_finetune(load_config(str(changed)), run_dir).notes == []


def test_sample_refuses_a_run_of_another_base_model(world, finished, tmp_path, capsys, no_loading):
    model = tmp_path / "other-model"
    shutil.copytree(world / "models" / "sd15", model)
    config = variant(world, "other-base.yaml", model={"path": str(model)})
    assert main(["sample", str(config), "--run-dir", str(finished), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"model.path: {finished} was fine-tuned from " in err
    assert f"the config names '{model}'" in err


def test_restart_if_changed_clears_a_run_of_other_settings(world, finished, tmp_path, caplog):
    """The workflow's rule: a config change reruns the fine-tuning from scratch in the same
    directory (the old LoRA, checkpoint and record go), not a refusal."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    old = (run_dir / "lora" / "pytorch_lora_weights.safetensors").read_bytes()
    caplog.set_level("INFO", logger="amcli")
    config = variant(world, "changed.yaml", lora={"alpha": 16.0})
    assert main(["finetune", str(config), "--run-dir", str(run_dir), "--restart-if-changed"]) == 0
    assert "lora.alpha: recorded 8.0, now 16.0" in caplog.text and "starting afresh" in caplog.text
    assert json.loads((run_dir / "settings.json").read_text())["settings"]["lora.alpha"] == 16.0
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2  # a new run of 2
    assert (run_dir / "lora" / "pytorch_lora_weights.safetensors").read_bytes() != old


def test_other_scorer_weights_are_refused(world, finished, tmp_path, capsys, no_loading):
    """The reward model is part of the run: the same bytes elsewhere continue it, other bytes
    (another checkpoint of the same architecture) are refused."""
    weights = tmp_path / "aesthetic"
    shutil.copytree(world / "weights" / "aesthetic", weights)
    config = variant(world, "moved.yaml", reward={"weights": {"aesthetic": str(weights)}})
    assert check_finetune(load_config(str(config)), finished).finished is not None
    head = weights / "sac+logos+ava1-l14-linearMSE.pth"
    data = bytearray(head.read_bytes())
    data[-1] ^= 1
    head.write_bytes(bytes(data))
    assert main(["finetune", str(config), "--run-dir", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "reward.weights_sha256: recorded " in err, err
