"""Config parsing at the YAML edge: unknown keys, bad values and types name the dotted key."""

import pytest
import yaml

from amcli.__main__ import main
from amcli.config import ConfigError, parse_run_config, run_config_to_dict


def test_defaults_and_round_trip():
    cfg = parse_run_config(
        {"method": {"name": "adjoint_matching", "num_steps": 12, "steps": {"mode": "paper"}}}
    )
    assert cfg.method_config.num_steps == 12 and cfg.method_config.steps.mode == "paper"
    again = parse_run_config(yaml.safe_load(yaml.safe_dump(run_config_to_dict(cfg))))
    assert again == cfg


@pytest.mark.parametrize(
    "data, key",
    [
        ({"train": {"lr": "abc"}}, "train.lr"),
        ({"train": {"iterations": -5}}, "train.iterations"),
        ({"train": {"iterations": 2.5}}, "train.iterations"),
        ({"problem": {"reward_scale": "lambda"}}, "problem.reward_scale"),
        ({"problem": {"reward_scale": float("nan")}}, "reward_scale"),
        ({"problem": {"schedule": "linear"}}, "unknown schedule 'linear'"),
        ({"problem": {"name": "gmm3d"}}, "unknown problem 'gmm3d'"),
        ({"method": {"num_steps": -1}}, "num_steps"),
        ({"method": {"num_stepz": 10}}, "unknown key(s) ['num_stepz']"),
        ({"method": {"name": "drafty"}}, "method.name: unknown method 'drafty'; valid"),
        ({"method": {"steps": {"mode": "most"}}}, "method.steps"),
        ({"method": {"diffusion": "ddim"}}, "method.diffusion"),
        ({"method": {"grid_warp": 1.0}}, "grid_warp"),
        ({"trian": {}}, "unknown key(s) ['trian']"),
        ({"eval": {"samplers": ["ode", "sde"]}}, "sampler"),
        ({"eval": {"floor_repeats": 0}}, "floor_repeats"),
        ({"eval": {"floor_repeats": 2.5}}, "eval.floor_repeats"),
    ],
)
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        parse_run_config(data)
    assert key in str(err.value)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"model": {"depth": 0}}, "model.depth"),
        ({"model": {"time_features": -1}}, "model.time_features"),
        ({"problem": {"schedule": "linear"}}, "problem.schedule"),
        ({"method": {"steps": {"mode": "most"}}}, "method.steps.mode"),
        ({"method": {"steps": {"num_last": -1}}}, "method.steps.num_last"),
        ({"method": {"stepper": "rk4"}}, "method.stepper"),
        ({"method": {"drop_quantile": 2.0}}, "method.drop_quantile"),
        ({"method": {"name": "basic_adjoint_matching", "adjoint": "lean"}}, "method.adjoint"),
        ({"method": {"name": "draft", "num_steps": 4, "grad_steps": 5}}, "method.grad_steps"),
        ({"train": {"log_every": 0}}, "train.log_every"),
        ({"train": {"batch_size": 4, "micro_batches": 3}}, "train.micro_batches"),
        ({"eval": {"repeats": 0}}, "eval.repeats"),
        ({"eval": {"samplers": ["sde"]}}, "eval.samplers"),
        ({"tag": "a/b"}, "tag"),
    ],
)
def test_the_error_starts_with_the_exact_key(data, key):
    """Each field's check raises :class:`am.fields.FieldError` naming its field, so the key is
    exact even where the message starts with another word (or another field's name)."""
    with pytest.raises(ConfigError) as err:
        parse_run_config(data)
    assert str(err.value).startswith(key + ": "), str(err.value)


def test_yaml_exponent_without_dot_is_a_number():
    assert parse_run_config({"train": {"lr": "3e-4"}}).train.lr == 3e-4


def test_cli_check_reports_bad_config(tmp_path, capsys):
    p = tmp_path / "run.yaml"
    p.write_text("train: {batch_size: 0}\n")
    assert main(["check", str(p)]) == 2
    assert "train" in capsys.readouterr().err
