"""One ground-truth run through the CLI (`amcli.run`): restart on a changed config, evaluation
against the noise floor, a diverged run's export, a shared floor."""

import pytest
import torch
import yaml

from amcli.__main__ import main
from amcli.config import parse_run_config, run_config_to_dict


def test_finetune_restarts_when_the_run_config_changes(tmp_path, caplog):
    from amcli.run import finetune

    def notices() -> str:  # what amcli logged since the last call
        text = caplog.text
        caplog.clear()
        return text

    small = {
        "method": {"num_steps": 4},
        "model": {"hidden": 8, "depth": 1, "time_features": 2},
        "train": {"iterations": 2, "batch_size": 8, "checkpoint_every": 1},
    }
    finetune(parse_run_config(small), tmp_path, progress=False)
    small["train"]["lr"] = 5e-4
    small["train"]["iterations"] = 3
    finetune(parse_run_config(small), tmp_path, progress=False)
    assert "starting the run afresh" in notices()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [yaml.safe_load(x)["iteration"] for x in lines] == [1, 2, 3]
    # a change of the eval section alone keeps the trained run (nothing is retrained)
    weights = (tmp_path / "model.safetensors").read_bytes()
    small["eval"] = {"num_samples": 64, "repeats": 2}
    finetune(parse_run_config(small), tmp_path, progress=False)
    assert "afresh" not in notices()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "model.safetensors").read_bytes() == weights
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["eval"]["repeats"] == 2
    # a config.yaml (and checkpoint) written before a field existed: the field at its default
    # keeps the run; the same field changed restarts it
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del old["method"]["grid_warp"], old["train"]["ema_decay"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["method_config"]["grid_warp"], state["config"]["ema_decay"]
    torch.save(state, tmp_path / "checkpoint.pt")
    finetune(parse_run_config(small), tmp_path, progress=False)
    assert "afresh" not in notices()
    assert (tmp_path / "model.safetensors").read_bytes() == weights
    small["method"]["grid_warp"] = 0.3
    finetune(parse_run_config(small), tmp_path, progress=False)
    assert "afresh" in notices()


def test_evaluate_averages_distance_over_independent_pairs(tmp_path):
    """distance = mean over `repeats` (fresh draw, fresh target set) pairs, like the floor; an
    untrained (zero-residual) model is the base, so its distance is the base's, up to noise."""
    import json

    from amcli.run import evaluate, finetune

    cfg = parse_run_config(
        {
            "method": {"num_steps": 4},
            "model": {"hidden": 8, "depth": 1, "time_features": 2},
            "train": {"iterations": 1, "batch_size": 8, "lr": 1e-12},
            "eval": {"num_samples": 400, "sampling_steps": 50, "repeats": 4},
        }
    )
    finetune(cfg, tmp_path, progress=False)
    ev = evaluate(cfg, tmp_path)
    assert ev["repeats"] == 4
    for res in ev["samplers"].values():
        assert res["distance_sd"] > 0  # four different pairs
        assert res["ratio_to_floor"] == res["distance"] / ev["noise_floor"]
        # the base is W1 ~ 2.3 from the tilt; four 400-sample pairs average to within 0.2
        assert abs(res["distance"] - ev["base_distance"]) < 0.2
        assert sum(res["mode_weights"]) == pytest.approx(1.0)
    assert json.loads((tmp_path / "eval.json").read_text())["repeats"] == 4

    # the floor over its own number of pairs; the ratio's standard error from both spreads
    from am.metrics import noise_floor_pairs
    from am.problems.benchmarks import make_problem
    from am.schedules import FlowMatchingSchedule

    more = parse_run_config(
        {**run_config_to_dict(cfg), "eval": {**run_config_to_dict(cfg)["eval"], "floor_repeats": 9}}
    )
    ev9 = evaluate(more, tmp_path)
    assert (ev9["repeats"], ev9["floor_repeats"]) == (4, 9)
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    # the floor has a generator of its own (eval.seed + 3), so that it can be computed once and
    # shared by the runs of a problem without changing their other draws
    g = torch.Generator().manual_seed(more.eval.seed + 3)
    pairs = noise_floor_pairs(gt.target.sample, 400, metric="w1", generator=g, repeats=9)
    assert ev9["noise_floor"] == pytest.approx(sum(pairs) / 9, rel=1e-12)
    for res in ev9["samplers"].values():
        assert 0 < res["ratio_se"] < res["ratio_to_floor"]


def test_diverged_run_exports_last_good_checkpoint(tmp_path, monkeypatch):
    """A run whose loss turns non-finite finishes with its last good checkpoint exported and
    status.json / eval.json saying where it diverged (the workflow goes on)."""
    import json

    from am.train import NonFiniteError, Trainer
    from amcli.run import evaluate, finetune

    real_step = Trainer.step

    def step(self):
        if self.iteration == 3:  # the 4th iteration "diverges"
            raise NonFiniteError("non-finite loss at iteration 4")
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step)
    cfg = parse_run_config(
        {
            "method": {"name": "draft", "num_steps": 4},
            "model": {"hidden": 8, "depth": 1, "time_features": 2},
            "train": {"iterations": 6, "batch_size": 8, "checkpoint_every": 2},
            "eval": {"num_samples": 50, "sampling_steps": 4, "repeats": 1},
        }
    )
    finetune(cfg, tmp_path, progress=False)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "diverged"
    assert status["diverged_at"] == 4 and status["exported_iteration"] == 2
    ev = evaluate(cfg, tmp_path)
    assert ev["diverged_at"] == 4 and ev["exported_iteration"] == 2


def test_a_shared_noise_floor_gives_the_same_evaluation(tmp_path):
    """The workflow computes each problem's noise floor once (`python -m amcli floor`) and every
    run's evaluation reads it: the evaluation is then the same, number for number, as one that
    computes its floor itself; a floor of other settings is refused, naming the key; runs that
    differ only in training share the floor's key."""
    import json

    from amcli.run import evaluate, floor_key, noise_floor_record

    small = {
        "problem": {"name": "gmm2d_overlap_quadratic"},
        "method": {"num_steps": 4},
        "model": {"hidden": 8, "depth": 1, "time_features": 2},
        "train": {"iterations": 2, "batch_size": 8},
        "eval": {"num_samples": 300, "sampling_steps": 8, "repeats": 2, "floor_repeats": 3},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(small))
    run_dir = tmp_path / "run"
    assert main(["finetune", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir)]) == 0
    assert main(["evaluate", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir)]) == 0
    inline = (run_dir / "eval.json").read_text()
    floor = tmp_path / "floor.json"
    assert main(["floor", str(tmp_path / "run.yaml"), "--out", str(floor)]) == 0
    assert len(json.loads(floor.read_text())["pairs"]) == 3
    cmd = ["evaluate", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir), "--floor", str(floor)]
    assert main(cmd) == 0
    assert (run_dir / "eval.json").read_text() == inline
    cfg = parse_run_config(small)
    other = parse_run_config({**small, "train": {"iterations": 5, "lr": 1e-4}})
    assert floor_key(other) == floor_key(cfg)
    bigger = parse_run_config({**small, "eval": {**small["eval"], "num_samples": 400}})
    with pytest.raises(ValueError, match="num_samples"):
        evaluate(cfg, run_dir, noise_floor_record(bigger))
