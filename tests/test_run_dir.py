"""The one rule for a reused run directory (am.run_dir): record, compare, refuse or restart."""

from dataclasses import dataclass, field

import pytest

from am.run_dir import (
    SETTINGS_FILE,
    SettingsError,
    check,
    compare,
    defaults,
    flatten,
    prepare,
    read_settings,
)


@dataclass(frozen=True)
class Inner:
    width: int = 8


@dataclass(frozen=True)
class Conf:
    lr: float = 1e-3
    betas: tuple = (0.9, 0.99)
    inner: Inner = field(default_factory=Inner)
    iterations: int = 10


def test_flatten_and_defaults_are_json_plain():
    assert flatten("train", Conf()) == {
        "train.lr": 1e-3, "train.betas": [0.9, 0.99], "train.inner": {"width": 8},
        "train.iterations": 10,
    }  # fmt: skip
    assert defaults("train", Conf) == flatten("train", Conf())


def test_compare_names_each_change_with_both_values():
    old = flatten("train", Conf())
    new = flatten("train", Conf(lr=2e-3, inner=Inner(4)))
    c = compare(old, new)
    assert c.keys == ["train.inner", "train.lr"]
    assert "train.lr: recorded 0.001, now 0.002" in c.changes
    assert c.extended is None


def test_a_missing_key_reads_as_its_default_and_ignored_keys_may_change():
    old = {k: v for k, v in flatten("train", Conf()).items() if k != "train.betas"}
    assert compare(old, flatten("train", Conf()), defaults=defaults("train", Conf)).changes == ()
    # without the default the key is absent on one side: a change
    assert compare(old, flatten("train", Conf())).keys == ["train.betas"]
    assert (
        compare(old, flatten("train", Conf(lr=5.0)), ignore=["train.lr", "train.betas"]).changes
        == ()
    )


def test_budget_may_grow_never_shrink():
    old = flatten("train", Conf(iterations=10))
    assert compare(old, flatten("train", Conf(iterations=20))).extended == (10, 20)
    cut = compare(old, flatten("train", Conf(iterations=5)))
    assert cut.keys == ["train.iterations"] and "not cut" in cut.changes[0]


def test_prepare_refuses_or_restarts_only_a_trained_directory(tmp_path):
    run = tmp_path / "run"
    prepare(run, flatten("train", Conf()))
    assert read_settings(run) == flatten("train", Conf())
    # nothing trained yet: other settings start afresh
    prepare(run, flatten("train", Conf(lr=1.0)))
    (run / "checkpoint.pt").write_text("x")
    with pytest.raises(SettingsError, match=r"train.lr: recorded 1.0, now 0.001"):
        prepare(run, flatten("train", Conf()))
    assert (run / "checkpoint.pt").exists() and read_settings(run)["train.lr"] == 1.0
    c = prepare(run, flatten("train", Conf()), on_change="restart")
    assert c.keys == ["train.lr"] and not (run / "checkpoint.pt").exists()
    assert read_settings(run)["train.lr"] == 1e-3


def test_a_trained_directory_without_a_record(tmp_path):
    (tmp_path / "checkpoint.pt").write_text("x")
    with pytest.raises(SettingsError, match=f"no {SETTINGS_FILE}"):
        check(tmp_path, {"a": 1})
    check(tmp_path, {"a": 1}, on_change="restart")
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="on_change"):
        check(tmp_path, {}, on_change="ignore")


def test_restart_treats_a_longer_budget_as_a_change(tmp_path):
    """The workflow restarts so that a run equals a fresh run of its settings: a longer budget
    under ``restart`` starts afresh, under ``refuse`` it continues."""
    prepare(tmp_path, flatten("train", Conf(iterations=10)))
    (tmp_path / "checkpoint.pt").write_text("x")
    assert check(tmp_path, flatten("train", Conf(iterations=20))).extended == (10, 20)
    assert (tmp_path / "checkpoint.pt").exists()
    c = check(tmp_path, flatten("train", Conf(iterations=20)), on_change="restart")
    assert c.keys == ["train.iterations"] and not (tmp_path / "checkpoint.pt").exists()
