"""am.finetune owns its run directory (am.run_dir's rules): the settings it records, refusal or
restart under other settings, and the last good model of a run that diverges."""

import json
from dataclasses import dataclass

import pytest
import torch

import am
from am.problems import make_problem


@dataclass(frozen=True)
class Net:
    width: int = 16


def small(tmp_path, **kwargs):
    p = make_problem("gmm1d_linear", am.FlowMatchingSchedule(), 1.0)
    args = dict(
        schedule=p.schedule, sample_shape=(1,), reward_scale=1.0,
        config=am.AdjointMatchingConfig(num_steps=4),
        train=am.TrainConfig(iterations=3, batch_size=8, checkpoint_every=1),
        run_dir=tmp_path / "run", settings={"net": Net(), "data": "a"}, progress=False,
    )  # fmt: skip
    args.update(kwargs)
    return p, args


def test_the_record_holds_the_callers_settings_but_not_how_often_it_checkpoints(tmp_path):
    p, args = small(tmp_path)
    am.finetune(p.velocity, p.reward, **args)
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())["settings"]
    assert settings["net.width"] == 16 and settings["data"] == "a"
    assert settings["method.name"] == "adjoint_matching" and settings["method.num_steps"] == 4
    assert settings["train.iterations"] == 3 and "train.checkpoint_every" not in settings


def test_other_settings_are_refused_before_the_base_is_touched(tmp_path):
    p, args = small(tmp_path)
    am.finetune(p.velocity, p.reward, **args)
    base = am.models.TimeMLP(1)  # a fresh base: a refusal must leave it trainable
    with pytest.raises(am.run_dir.SettingsError, match=r'data: recorded "a", now "b"'):
        am.finetune(base, p.reward, **dict(args, settings={"net": Net(), "data": "b"}))
    assert all(q.requires_grad for q in base.parameters())
    with pytest.raises(ValueError, match=r"net.width: recorded 16, now 8"):
        am.finetune(p.velocity, p.reward, **dict(args, settings={"net": Net(8), "data": "a"}))


def test_restart_clears_the_run_and_what_the_caller_derived(tmp_path, caplog):
    p, args = small(tmp_path)
    first = am.finetune(p.velocity, p.reward, **args)
    (tmp_path / "run" / "export.bin").write_text("old")
    again = am.finetune(p.velocity, p.reward, **dict(args, settings={"net": Net(8), "data": "a"},
                        on_change="restart", derived=("export.bin",)))  # fmt: skip
    assert "starting the run afresh" in caplog.text and "net.width" in caplog.text
    assert again.start_iteration == 0 and again.iterations == 3 == first.iterations
    assert not (tmp_path / "run" / "export.bin").exists()


def test_a_run_that_diverges_returns_its_last_good_checkpoint(tmp_path):
    p, args = small(tmp_path, train=am.TrainConfig(iterations=6, batch_size=8, checkpoint_every=1))
    calls = {"n": 0}

    def reward(x):  # finite for two iterations' rollouts, then NaN
        calls["n"] += 1
        return p.reward(x) * (float("nan") if calls["n"] > 2 else 1.0)

    with pytest.raises(am.train.NonFiniteError):
        am.finetune(p.velocity, reward, **dict(args, run_dir=tmp_path / "raise"))
    calls["n"] = 0
    result = am.finetune(p.velocity, reward, **dict(args, on_divergence="last_good"))
    assert result.status == "diverged" and result.diverged_at == 3 and result.iterations == 2
    assert "non-finite" in result.message
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2
    for name, value in state["model"].items():  # the returned model is that checkpoint's
        torch.testing.assert_close(result.model.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="on_divergence"):
        am.finetune(p.velocity, p.reward, **dict(args, on_divergence="ignore"))
