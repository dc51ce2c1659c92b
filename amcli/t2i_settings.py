"""What a text-to-image run's weights depend on, recorded in its run directory.

``python -m amcli.t2i finetune`` writes ``settings.json`` beside the checkpoint: one dotted key
per setting that changes the trained weights (the model and its dtype, the image size, the
reward terms and scale, the training prompts' content, LoRA, the method and its config, the
training config and seed). A reused run directory is compared with it before any model loads,
and any other value is refused naming each key with both values, so a run never mixes two
configurations and a finished run's ``lora/`` is never rewritten over weights trained under
other settings. ``train.iterations`` may grow (the run continues from its checkpoint); how often
it checkpoints or logs may change (resume is exact from any checkpoint).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from am.train import RESUMABLE_CHANGES

__all__ = ["SETTINGS_FILE", "SettingsError", "run_settings", "compare_settings", "record"]

SETTINGS_FILE = "settings.json"
# ``model`` fields that do not change the weights: gradient checkpointing recomputes the same
# activations (tested equal with and without in tests/t2i)
_NOT_RECORDED = ("model.gradient_checkpointing",)
_CHANGEABLE = tuple(f"train.{k}" for k in RESUMABLE_CHANGES if k != "iterations")


class SettingsError(ValueError):
    """A run directory holds a run made under other settings."""


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples as lists), so a round trip through the file compares equal."""
    return json.loads(json.dumps(value, default=str))


def _flat(prefix: str, obj: Any) -> dict[str, Any]:
    """``{prefix.field: value}`` of a dataclass instance (nested dataclasses as mappings)."""
    return {f"{prefix}.{k}": _plain(v) for k, v in dataclasses.asdict(obj).items()}


def _defaults(prefix: str, cls: type) -> dict[str, Any]:
    """``{prefix.field: default}`` of a dataclass: a key a record lacks (written before the
    option existed) reads as its default, so adding an option does not orphan older runs."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f"{prefix}.{f.name}"] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out[f"{prefix}.{f.name}"] = _plain(
                dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            )
    return out


def prompts_digest(path: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of the prompts as training reads them, in order: comments
    and blank lines may change, the prompts may not."""
    from am.t2i.prompts import read_prompts

    text = json.dumps(read_prompts(path), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scorer_digests(cfg) -> dict[str, str]:
    """``{scorer/file: digest}`` of the weight files of every scorer of ``reward.terms`` as
    they would load: the file's size and a SHA-256 of its first and last MiB (16 hex digits).
    Another checkpoint of the same architecture has the same keys and shapes but other bytes;
    reading two MiB a file keeps this cheap on multi-gigabyte files."""
    from am.vision import SCORERS, locate
    from am.vision.resources import _get

    out = {}
    for name in sorted(cfg.reward.terms):
        for i, resource in enumerate(SCORERS[name].resources):
            directory = locate(resource, cfg.reward.weights.get(name) if i == 0 else None)
            for file in _get(resource).files:
                path = directory / file
                if not path.is_file():
                    continue  # a folder resource's own files are listed by it
                digest = hashlib.sha256(str(path.stat().st_size).encode())
                with open(path, "rb") as f:
                    digest.update(f.read(2**20))
                    f.seek(max(path.stat().st_size - 2**20, 0))
                    digest.update(f.read(2**20))
                out[f"{resource}/{file}"] = digest.hexdigest()[:16]
    return out


def run_settings(cfg) -> dict[str, Any]:
    """``{dotted key: value}`` of every setting of ``cfg`` (a :class:`amcli.t2i.T2IConfig`)
    that changes the trained weights."""
    out = {k: v for k, v in _flat("model", cfg.model).items() if k not in _NOT_RECORDED}
    out.update({"lora": None} if cfg.lora is None else _flat("lora", cfg.lora))
    out["reward.terms"] = _plain(dict(cfg.reward.terms))
    out["reward.reward_scale"] = cfg.reward.reward_scale
    out["reward.weights_sha256"] = scorer_digests(cfg)
    out["prompts.train_sha256"] = prompts_digest(cfg.prompts.train)
    out.update({k: v for k, v in _flat("prompts", cfg.prompts).items()
                if k not in ("prompts.train", "prompts.eval")})  # fmt: skip
    out["method.name"] = cfg.method
    out.update(_flat("method", cfg.method_config))
    out.update({k: v for k, v in _flat("train", cfg.train).items() if k not in _CHANGEABLE})
    return out


def _defaults_of(cfg) -> dict[str, Any]:
    out = {}
    for part in ("model", "prompts", "train"):
        out.update(_defaults(part, type(getattr(cfg, part))))
    out.update(_defaults("method", type(cfg.method_config)))
    if cfg.lora is not None:
        out.update(_defaults("lora", type(cfg.lora)))
    return out


def compare_settings(cfg, run_dir: Path) -> list[str]:
    """Check ``cfg`` against the record in ``run_dir``; the notes to tell the user (an extended
    budget). Raises :class:`SettingsError` naming every differing key with its recorded and its
    new value. A directory with no checkpoint and no result (nothing trained is kept: a run
    stopped before its first checkpoint) starts afresh under any settings."""
    trained = (run_dir / "checkpoint.pt").is_file() or (run_dir / "result.json").is_file()
    file = run_dir / SETTINGS_FILE
    if not trained:
        return []
    if not file.is_file():
        raise SettingsError(
            f"{run_dir} holds a run but no {SETTINGS_FILE} saying what it was trained under "
            "(made by an older version); fine-tune in a new --run-dir"
        )
    recorded = json.loads(file.read_text())["settings"]
    now, defaults = run_settings(cfg), _defaults_of(cfg)
    absent = object()  # a key only one side has (LoRA against a full fine-tune)
    show = lambda v: "(absent)" if v is absent else json.dumps(v)  # noqa: E731
    diff = []
    for key in sorted(set(recorded) | set(now)):
        old, new = recorded.get(key, defaults.get(key, absent)), now.get(key, absent)
        if key != "train.iterations" and old != new:
            diff.append(f"{key}: recorded {show(old)}, now {show(new)}")
    old_budget, budget = recorded.get("train.iterations"), cfg.train.iterations
    if old_budget is not None and budget < old_budget:
        diff.append(
            f"train.iterations: recorded {old_budget}, now {budget} (a budget can be extended, "
            "not cut)"
        )
    if diff:
        raise SettingsError(
            f"{run_dir} was trained under other settings ({file}): " + "; ".join(diff)
            + ". Use the recorded values, or fine-tune in a new --run-dir"
        )  # fmt: skip
    if old_budget is not None and budget > old_budget:
        note = (
            f"train.iterations: extending {run_dir} from {old_budget} to {budget} iterations "
            "(it continues from its checkpoint"
        )
        if cfg.train.lr_schedule == "cosine":
            note += f"; the cosine learning rate now decays over {budget} iterations"
        return [note + ")"]
    return []


def record(cfg, run_dir: Path) -> None:
    """Write ``run_dir/settings.json`` (atomically) for :func:`compare_settings`."""
    from amcli.run import atomic_write_text

    data = {"settings": run_settings(cfg)}
    atomic_write_text(run_dir / SETTINGS_FILE, json.dumps(data, indent=1, sort_keys=True) + "\n")


# what a fine-tuning run writes into its directory (the run's config file and logs stay)
TRAINING_STATE = ("checkpoint.pt", "metrics.jsonl", SETTINGS_FILE, "result.json", "lora", "result")


def clear_training_state(run_dir: Path) -> None:
    """Remove what an earlier run trained in ``run_dir`` (:data:`TRAINING_STATE`), so that a run
    under other settings starts afresh there (the workflow's reruns after a config change)."""
    import shutil

    for name in TRAINING_STATE:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
