"""The digits section of the workflow config is validated before any compute, naming the key."""

from pathlib import Path

import pytest
import yaml

from amcli.config import ConfigError
from amcli.digits import parse_digits_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_parse():
    for name in ("config.yaml", "full.yaml", "smoke.yaml"):
        section = yaml.safe_load((ROOT / "config" / name).read_text())["digits"]
        cfg = parse_digits_config(section)
        assert cfg.methods and cfg.reward_scales and cfg.seeds


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

    cfg = parse_digits_config({"methods": ["draft"], "train": {"iterations": 4}})
    _restart_if_changed(cfg, "draft", tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"old")
    _restart_if_changed(cfg, "draft", tmp_path)  # same settings: resume
    assert (tmp_path / "checkpoint.pt").exists()
    other = parse_digits_config({"methods": ["draft"], "train": {"iterations": 5}})
    _restart_if_changed(other, "draft", tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
    assert "starting the run afresh" in capsys.readouterr().err
    # a method's own settings count too
    (tmp_path / "checkpoint.pt").write_bytes(b"old")
    steps = parse_digits_config(
        {
            "methods": ["draft"],
            "train": {"iterations": 5},
            "method_configs": {"draft": {"num_steps": 3}},
        }
    )
    _restart_if_changed(steps, "draft", tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
