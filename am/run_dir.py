"""Run directories: what a run's weights depend on, recorded beside them, and the one rule for a
directory that is reused under other settings.

A run records its settings as one flat mapping of dotted keys (``train.lr``,
``method.num_steps``, ``model.dtype``, ...) with JSON values (:func:`flatten`). A reused
directory's record is compared with the new settings key by key (:func:`compare`):

- a key the record lacks reads as its default (:func:`defaults`), so adding an option does not
  orphan older runs;
- ``train.iterations`` may grow (the run continues from its checkpoint), never shrink;
- any other difference is a change, reported with both values.

What to do with a change is the caller's choice, made in one place (:func:`prepare`): refuse
(:class:`SettingsError`, the library's and the text-to-image CLI's default) or start afresh (the
workflow, whose grid may be edited between runs). A directory with a record but nothing trained
(a run stopped before its first checkpoint) starts afresh under any settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from am.train_config import RESUMABLE_CHANGES

__all__ = [
    "SETTINGS_FILE",
    "SettingsError",
    "SettingsComparison",
    "atomic_write_text",
    "flatten",
    "defaults",
    "compare",
    "check",
    "prepare",
    "read_settings",
    "write_settings",
    "write_settings_only",
    "training_settings",
]

SETTINGS_FILE = "settings.json"
GROWABLE = "train.iterations"
_ABSENT = object()  # a key only one side has (LoRA against a full fine-tune)


class SettingsError(ValueError):
    """A run directory holds a run made under other settings."""


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader never sees a
    half-written file, and a crash leaves the old one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plain(value: Any) -> Any:
    """JSON's view of a value (tuples as lists, paths as strings), so that a round trip through
    the file compares equal."""
    return json.loads(json.dumps(value, default=str))


def _recorded(f: dataclasses.Field) -> bool:
    # a field that does not change the weights (gradient checkpointing, a file's path whose
    # content is recorded as a digest) says so: ``field(..., metadata={"recorded": False})``
    return f.metadata.get("recorded", True)


def flatten(prefix: str, obj: Any) -> dict[str, Any]:
    """``{prefix.field: value}`` of a dataclass instance (nested dataclasses as mappings)."""
    out = {}
    for f in filter(_recorded, dataclasses.fields(obj)):
        value = getattr(obj, f.name)
        out[f"{prefix}.{f.name}"] = plain(
            dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        )
    return out


def defaults(prefix: str, cls: type) -> dict[str, Any]:
    """``{prefix.field: default}`` of a dataclass type: what a record lacking the key meant."""
    out = {}
    for f in filter(_recorded, dataclasses.fields(cls)):
        if f.default is not dataclasses.MISSING:
            out[f"{prefix}.{f.name}"] = plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out[f"{prefix}.{f.name}"] = plain(
                dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            )
    return out


@dataclass(frozen=True)
class SettingsComparison:
    """``changes``: ``"key: recorded X, now Y"`` for every key that differs (a cut budget
    included); ``extended``: ``(recorded, now)`` iterations when the budget grew, else None."""

    changes: tuple[str, ...]
    extended: tuple[int, int] | None

    @property
    def keys(self) -> list[str]:
        return [c.split(":", 1)[0] for c in self.changes]


def compare(
    recorded: Mapping[str, Any],
    now: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] = {},  # noqa: B006 (read only)
    ignore: Iterable[str] = (),
) -> SettingsComparison:
    """Compare two flat settings records key by key (see the module's rules); ``ignore``: keys
    that may change freely (how often a run checkpoints or logs)."""
    ignore = set(ignore)
    show = lambda v: "(absent)" if v is _ABSENT else json.dumps(v)  # noqa: E731
    changes = []
    for key in sorted(set(recorded) | set(now)):
        if key in ignore or key == GROWABLE:
            continue
        old = plain(recorded[key]) if key in recorded else defaults.get(key, _ABSENT)
        new = plain(now[key]) if key in now else _ABSENT
        if old != new:
            changes.append(f"{key}: recorded {show(old)}, now {show(new)}")
    old_budget, budget = recorded.get(GROWABLE), now.get(GROWABLE)
    extended = None
    if old_budget is not None and budget is not None and GROWABLE not in ignore:
        if budget < old_budget:
            changes.append(
                f"{GROWABLE}: recorded {old_budget}, now {budget} (a budget can be extended, "
                "not cut)"
            )
        elif budget > old_budget:
            extended = (int(old_budget), int(budget))
    return SettingsComparison(tuple(changes), extended)


def read_settings(run_dir: str | Path) -> dict[str, Any] | None:
    """The settings recorded in ``run_dir``, or None if it has no record."""
    file = Path(run_dir) / SETTINGS_FILE
    data = json.loads(file.read_text()) if file.is_file() else {}
    return data.get("settings")  # None too for an older file of another layout


def write_settings(run_dir: str | Path, settings: Mapping[str, Any]) -> None:
    data = {"settings": plain(dict(settings))}
    atomic_write_text(
        Path(run_dir) / SETTINGS_FILE, json.dumps(data, indent=1, sort_keys=True) + "\n"
    )


def clear(run_dir: str | Path, names: Iterable[str]) -> None:
    """Remove the files and folders ``names`` of ``run_dir`` (what an earlier run trained)."""
    for name in names:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def check(
    run_dir: str | Path,
    settings: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] = {},  # noqa: B006 (read only)
    ignore: Iterable[str] = (),
    trained: Iterable[str] = ("checkpoint.pt",),
    state: Iterable[str] | None = None,
    on_change: str = "refuse",
) -> SettingsComparison:
    """Check ``run_dir`` for a run under ``settings``, before anything loads or trains.

    ``trained``: the names whose presence means the directory holds a trained run; ``state``:
    what a restart removes (default: ``trained``). ``on_change``: ``"refuse"`` raises
    :class:`SettingsError` naming every changed key with both values; ``"restart"`` removes
    ``state`` so that the run starts afresh. Returns the comparison (``extended``: the budget
    grew; ``changes`` non-empty: the directory was cleared)."""
    if on_change not in ("refuse", "restart"):
        raise ValueError(f"on_change must be 'refuse' or 'restart', got {on_change!r}")
    run_dir = Path(run_dir)
    trained = tuple(trained)
    if not any((run_dir / name).exists() for name in trained):
        return SettingsComparison((), None)
    recorded = read_settings(run_dir)
    if recorded is None:
        if on_change == "refuse":
            raise SettingsError(
                f"{run_dir} holds a run but no {SETTINGS_FILE} saying what it was trained under "
                "(made by an older version); use a new run directory"
            )
        comparison = SettingsComparison(("(no record)",), None)
    else:
        comparison = compare(recorded, settings, defaults=defaults, ignore=ignore)
        if on_change == "restart" and comparison.extended is not None:
            # a restarted run equals a fresh one: a longer budget would continue the old run
            # under the new cosine schedule, which a fresh run of that budget does not follow
            old, new = comparison.extended
            extended = f"{GROWABLE}: recorded {old}, now {new}"
            comparison = SettingsComparison((*comparison.changes, extended), None)
    if comparison.changes:
        if on_change == "refuse":
            raise SettingsError(
                f"{run_dir} was trained under a different config ({run_dir / SETTINGS_FILE}): "
                + "; ".join(comparison.changes)
                + ". Use the recorded values, or a new run directory"
            )
        clear(run_dir, trained if state is None else state)
    return comparison


def training_settings(
    method: str, config: Any, train: Any, extra: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, defaults)`` of a fine-tuning run: ``method.name``, the method's config and
    the training config as dotted keys (but how often it checkpoints or logs: that may change
    on resume, :data:`am.train_config.RESUMABLE_CHANGES`), and ``extra`` (the caller's: a
    dataclass value field by field with its defaults, any other value as it is)."""
    leave_out = {f"train.{k}" for k in RESUMABLE_CHANGES if k != "iterations"}
    train_part = {k: v for k, v in flatten("train", train).items() if k not in leave_out}
    settings = {"method.name": method, **flatten("method", config), **train_part}
    known = {**defaults("method", type(config)), **defaults("train", type(train))}
    for key, value in extra.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            settings.update(flatten(key, value))
            known.update(defaults(key, type(value)))
        else:
            settings[key] = plain(value)
    return settings, known


def prepare(run_dir: str | Path, settings: Mapping[str, Any], **kwargs) -> SettingsComparison:
    """:func:`check` (same keywords), then create ``run_dir`` and record ``settings`` there."""
    comparison = check(run_dir, settings, **kwargs)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_settings(run_dir, settings)
    return comparison


def write_settings_only(
    run_dir: str | Path, settings: Mapping[str, Any], **_
) -> SettingsComparison:
    """Record ``settings`` in ``run_dir`` without comparing (a run that starts anew over it)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_settings(run_dir, settings)
    return SettingsComparison((), None)
