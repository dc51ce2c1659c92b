"""The digits section of the workflow config is validated before any compute, naming the key."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from amcli.config import ConfigError
from amcli.digits import DigitsPretrain, parse_digits_config, training_grid

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("config.yaml", "full.yaml", "smoke.yaml")


def _section(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())["digits"]


def test_shipped_configs_parse():
    for name in SHIPPED:
        cfg = parse_digits_config(_section(name))
        assert cfg.methods and cfg.reward_scales and cfg.seeds


@pytest.mark.parametrize("name", SHIPPED)
def test_every_method_trains_on_the_grid_the_evaluation_samples_on(name):
    """One discretisation per comparison: the reference is the tilt of the evaluation's K-step
    uniform-grid sampler, so every method's rollouts use that grid (none is declared otherwise
    in a shipped config)."""
    cfg = parse_digits_config(_section(name))
    assert cfg.other_grids == ()
    for method in cfg.methods:
        assert training_grid(method, cfg.method_configs.get(method, {})) == (
            cfg.eval.num_steps, 0.0,
        ), method  # fmt: skip


def test_another_grid_is_refused_unless_declared():
    # Adjoint Matching's recommended config warps its grid: left alone, it is another grid
    with pytest.raises(ConfigError, match=r"method_configs\.adjoint_matching.*grid_warp 0\.5"):
        parse_digits_config({"methods": ["adjoint_matching"], "method_configs": {}})
    section = {"methods": ["draft"], "method_configs": {"draft": {"num_steps": 40}}}
    with pytest.raises(ConfigError, match="K = 40"):
        parse_digits_config(section)
    cfg = parse_digits_config({**section, "other_grids": ["draft"]})
    assert training_grid("draft", {"num_steps": 40}) == (40, 0.0) != (cfg.eval.num_steps, 0.0)
    with pytest.raises(ConfigError, match="other_grids"):
        parse_digits_config({**section, "other_grids": ["grpo"]})


def test_convergence_budgets_are_checked():
    base = {"methods": ["draft"], "method_configs": {"draft": {"num_steps": 10}}}
    parse_digits_config({**base, "convergence": {"methods": ["draft"], "iterations": [10, 25]}})
    for conv, key in [
        ({"methods": ["grpo"], "iterations": [10]}, "convergence.methods"),
        ({"methods": ["draft"], "iterations": [25, 10]}, "convergence.iterations"),
        ({"methods": ["draft"], "iterations": [50]}, "convergence.iterations"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_digits_config({**base, "convergence": conv})


def test_pretraining_defaults_are_the_benchmarks():
    """``digits_assets``' default config is the benchmark's, so its cache loads without one."""
    from am.problems.digits_pretrain import PretrainConfig

    shipped = _section("config.yaml")["pretrain"]
    mine = DigitsPretrain(**{**shipped, "channels": tuple(shipped["channels"])})
    assert mine == DigitsPretrain()
    library = PretrainConfig()
    for key, value in dataclasses.asdict(DigitsPretrain()).items():
        assert getattr(library, key) == value, key


@pytest.mark.parametrize(
    "section, key",
    [
        ({"methods": ["adjoint_matching", "drift"]}, "digits.methods"),
        ({"train": {"lr": -1}}, "digits.train.lr"),
        (
            {"method_configs": {"adjoint_matching": {"num_step": 3}}},
            "method_configs.adjoint_matching",
        ),
        ({"methods": ["draft"], "method_configs": {"grpo": {}}}, "digits.method_configs"),
        ({"eval": {"diffusion": "sde"}}, "digits.eval.diffusion"),
        ({"pretrain": {"channels": [8]}}, "digits.pretrain.channels"),
        ({"reward_scale": [1.0]}, "digits: unknown key"),
    ],
)
def test_bad_digits_config_names_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_digits_config(section)


def test_a_run_with_changed_settings_starts_afresh(tmp_path, caplog):
    """The workflow reruns a digits run whose settings changed; its directory then holds a
    checkpoint of the old settings, which must not be resumed (the trainer would refuse it):
    :func:`am.finetune` (``on_change="restart"``) clears it with the run's exports."""
    from amcli.digits import run

    tiny = {
        "cache": str(tmp_path / "assets"),
        "methods": ["draft"],
        "other_grids": ["draft"],  # the grid is not the point here
        "pretrain": {"flow_steps": 4, "flow_batch": 16, "channels": [8, 16],
                     "classifier_steps": 4},
        "eval": {"per_class": 4, "reference_per_class": 4},
    }  # fmt: skip
    run_dir = tmp_path / "run"

    def go(**over):
        over = {"method_configs": {"draft": {"num_steps": 2}}, **over}
        cfg = parse_digits_config({**tiny, "train": {"iterations": 2, "batch_size": 4}, **over})
        caplog.clear()
        with caplog.at_level("WARNING", logger="am.api"):
            row = run(cfg, method="draft", reward_scale=1.0, seed=0, run_dir=run_dir)
        (run_dir / "eval.json").write_text("{}")  # what the CLI writes after run()
        return row, caplog.text

    row, _ = go()
    assert row["status"] == "finished" and row["iterations"] == 2
    assert (run_dir / "checkpoint.pt").exists()
    _, text = go()  # same settings: the finished run is returned
    assert "finished, returning it" in text
    # a method's own settings count too
    _, text = go(method_configs={"draft": {"num_steps": 3}})
    assert "starting the run afresh" in text and "num_steps" in text
    # and so does the base's pretraining (a new cache: the old one is read-only)
    pre = {**tiny["pretrain"], "flow_steps": 5}
    _, text = go(pretrain=pre, cache=str(tmp_path / "assets5"))
    assert "starting the run afresh" in text and "pretrain.flow_steps" in text
