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

import hashlib
import json
from pathlib import Path
from typing import Any

from am.run_dir import SETTINGS_FILE, SettingsError, check, training_settings

__all__ = ["SETTINGS_FILE", "SettingsError", "extra_settings", "run_settings", "compare_settings"]

# what a fine-tuning run writes into its directory (the run's config file and logs stay)
TRAINING_STATE = ("checkpoint.pt", "metrics.jsonl", SETTINGS_FILE, "result.json", "lora", "result")


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


def extra_settings(cfg) -> dict[str, Any]:
    """What a text-to-image run's weights depend on beside its method and training configs:
    the model, LoRA, the reward (its scorers' files by digest) and the training prompts (by
    content); ``am.finetune(settings=...)`` records them with the rest."""
    return {"model": cfg.model, "lora": cfg.lora, "reward": cfg.reward,
            "reward.weights_sha256": scorer_digests(cfg), "prompts": cfg.prompts,
            "prompts.train_sha256": prompts_digest(cfg.prompts.train)}  # fmt: skip


def run_settings(cfg) -> dict[str, Any]:
    """``{dotted key: value}`` of every setting of ``cfg`` (a :class:`amcli.t2i_config.T2IConfig`)
    that changes the trained weights, as ``am.finetune`` records it."""
    return training_settings(cfg.method, cfg.method_config, cfg.train, extra_settings(cfg))[0]


def compare_settings(cfg, run_dir: Path, *, restart_if_changed: bool = False) -> list[str]:
    """Check ``cfg`` against the record in ``run_dir`` (the rules of :mod:`am.run_dir`); the
    notes to tell the user (an extended budget). Raises :class:`SettingsError` naming every
    differing key with its recorded and its new value, or with ``restart_if_changed`` clears
    what was trained there. A directory with no checkpoint and no result (a run stopped before
    its first checkpoint) starts afresh under any settings."""
    trained = ("checkpoint.pt", "result.json")
    if not any((run_dir / name).exists() for name in trained):
        return []  # before the settings are computed: they read the scorers' weight files
    now, known = training_settings(cfg.method, cfg.method_config, cfg.train, extra_settings(cfg))
    comparison = check(run_dir, now, defaults=known,
                       trained=trained, state=TRAINING_STATE,
                       on_change="restart" if restart_if_changed else "refuse")  # fmt: skip
    if comparison.changes or comparison.extended is None:  # cleared, or nothing to say
        return []
    old_budget, budget = comparison.extended
    note = (
        f"train.iterations: extending {run_dir} from {old_budget} to {budget} iterations "
        "(it continues from its checkpoint"
    )
    if cfg.train.lr_schedule == "cosine":
        note += f"; the cosine learning rate now decays over {budget} iterations"
    return [note + ")"]
