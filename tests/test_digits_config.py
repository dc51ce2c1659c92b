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


def test_a_run_with_changed_settings_starts_afresh(tmp_path, capsys):
    """The workflow reruns a digits run whose settings changed; its directory then holds a
    checkpoint of the old settings, which must not be resumed (the trainer would refuse it)."""
    from amcli.digits import _restart_if_changed

    grid = {"methods": ["draft"], "other_grids": ["draft"]}  # the grid is not the point here
    cfg = parse_digits_config({**grid, "train": {"iterations": 4}})
    _restart_if_changed(cfg, "draft", tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"old")
    _restart_if_changed(cfg, "draft", tmp_path)  # same settings: resume
    assert (tmp_path / "checkpoint.pt").exists()
    other = parse_digits_config({**grid, "train": {"iterations": 5}})
    _restart_if_changed(other, "draft", tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
    assert "starting the run afresh" in capsys.readouterr().err
    # a method's own settings count too
    (tmp_path / "checkpoint.pt").write_bytes(b"old")
    steps = parse_digits_config(
        {
            **grid,
            "train": {"iterations": 5},
            "method_configs": {"draft": {"num_steps": 3}},
        }
    )
    _restart_if_changed(steps, "draft", tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
