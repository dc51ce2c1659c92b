"""What ``python -m amcli.t2i`` checks before any weights load.

A text-to-image model is gigabytes and minutes to load; everything that can be known from files
is checked first, each failure naming the config key: the YAML's syntax, a ``train`` section
that sets the budget, the pipeline family (``model_index.json``'s
``_class_name``, ``model.path``), every scorer's weight files (``reward.terms.<scorer>``), the
run directory's recorded settings (:mod:`amcli.t2i_settings`), and for ``sample`` the prompt
file and the fine-tuning result it will load.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("amcli.t2i")

__all__ = [
    "ResourceError",
    "FinetunePlan",
    "read_yaml",
    "require_train",
    "check_finetune",
    "check_sample",
    "result_path",
]


class ResourceError(RuntimeError):
    """A model, prompt file or weight file the config names is missing, the model is one this
    suite cannot fine-tune, or a run directory holds a run made under other settings; the
    message starts with the config key."""


@dataclass(frozen=True)
class FinetunePlan:
    """``notes``: what to tell the user before the run (an extended budget); ``finished``: the
    saved result when the run directory already holds this run, finished (nothing to do)."""

    notes: list[str] = field(default_factory=list)
    finished: Path | None = None


def read_yaml(path: Path):
    """The YAML file's data; a syntax error is a :class:`amcli.config.ConfigError` with its line
    and column."""
    import yaml

    from amcli.config import ConfigError

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"YAML syntax error{where}: {problem}") from None


# TrainConfig's defaults (lr 3e-3, batch 256, 1000 iterations) suit the toy problems; on a
# 1B-parameter model they would burn GPU-days on a diverging run: a config states its own
REQUIRED_TRAIN = ("iterations", "batch_size", "lr")


def require_train(train) -> None:
    """A text-to-image config's ``train`` section sets :data:`REQUIRED_TRAIN` itself."""
    from amcli.config import ConfigError

    if not isinstance(train, dict):
        raise ConfigError(
            f"train: missing; a text-to-image config sets its budget ({', '.join(REQUIRED_TRAIN)}"
            "): the library's defaults are the toy problems' (lr 3e-3, batch 256)"
        )
    missing = [f"train.{k}" for k in REQUIRED_TRAIN if k not in train]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: missing; a text-to-image config sets it")


def check_model(cfg) -> str:
    """The pipeline class of ``model.path`` (from ``model_index.json`` alone), its
    ``model.variant`` files, and the options that hold for one family only: ``model.betas``
    and ``model.final_alpha_bar`` (VP pipelines) and ``sample.scheduler`` (a scheduler of the
    model's family)."""
    from am.t2i.loading import (
        ModelNotFoundError,
        UnsupportedModelError,
        check_variant,
        model_family,
    )
    from am.t2i.sampling import SCHEDULER_CLASSES, parse_sampler

    try:
        family = model_family(cfg.model.path)
    except (ModelNotFoundError, UnsupportedModelError) as e:
        raise ResourceError(f"model.path: {e}") from None
    if cfg.model.variant is not None:
        try:
            check_variant(cfg.model.path, cfg.model.variant)
        except ModelNotFoundError as e:
            raise ResourceError(f"model.variant: {e}") from None
    vp = family == "StableDiffusionPipeline"
    for key, value, default in (("betas", cfg.model.betas, None),
                                ("final_alpha_bar", cfg.model.final_alpha_bar, "clean")):  # fmt: skip
        if not vp and value != default:
            raise ResourceError(
                f"model.{key}: a VP (DDIM/DDPM) schedule option; {cfg.model.path} is a {family}"
            )
    if cfg.sample.scheduler is not None:
        sampler = parse_sampler(cfg.sample.scheduler)
        if cfg.model.final_alpha_bar == "half" and sampler.scheduler != "ddim":
            raise ResourceError(
                f"sample.scheduler: {cfg.sample.scheduler!r} cannot end noisy as "
                "model.final_alpha_bar: half does; use ddim or ddim:<eta>"
            )
        name = SCHEDULER_CLASSES[sampler.scheduler]
        if name is not None and (name == "FlowMatchEulerDiscreteScheduler") == vp:
            raise ResourceError(
                f"sample.scheduler: {cfg.sample.scheduler!r} does not sample a {family} "
                f"({cfg.model.path})"
            )
    return family


def check_scorers(cfg) -> None:
    """Every file of every scorer of ``reward.terms`` is on this machine (``reward.weights``
    names a scorer's own directory, as :func:`am.vision.load_reward` reads it)."""
    from am.vision import SCORERS, MissingWeightsError, locate

    for name in cfg.reward.terms:
        for i, resource in enumerate(SCORERS[name].resources):
            try:  # the override is the scorer's main resource's directory
                locate(resource, cfg.reward.weights.get(name) if i == 0 else None)
            except MissingWeightsError as e:
                raise ResourceError(f"reward.terms.{name}: {e}") from None


def result_path(run_dir: Path, family: str, lora: bool) -> Path:
    """Where :func:`amcli.t2i_run.finetune` saves a run's result."""
    from am.t2i.lora import DENOISER_OF

    return run_dir / "lora" if lora else run_dir / "result" / DENOISER_OF[family][0]


def check_finetune(cfg, run_dir: Path, *, restart_if_changed: bool = False) -> FinetunePlan:
    """Model, scorers and the run directory's settings; a run directory that holds this very
    run, finished, is reported as such (``finished``). With ``restart_if_changed`` a run
    directory of other settings is cleared (a new run starts there) instead of refused."""
    from amcli.t2i_settings import SettingsError, compare_settings

    family = check_model(cfg)
    try:
        notes = compare_settings(cfg, run_dir)
    except SettingsError as e:
        if not restart_if_changed:
            raise ResourceError(f"--run-dir: {e}") from None
        log.warning("%s; --restart-if-changed: starting afresh", e)
        notes = compare_settings(cfg, run_dir, restart_if_changed=True)
    summary = run_dir / "result.json"
    if not notes and summary.is_file():
        saved = result_path(run_dir, family, cfg.lora is not None)
        done = json.loads(summary.read_text()).get("iterations") == cfg.train.iterations
        if done and saved.is_dir():
            return FinetunePlan(finished=saved)
    check_scorers(cfg)
    return FinetunePlan(notes=notes)


def check_sample(cfg, run_dir: Path | None, prompts_file: str | None) -> None:
    """Model, the prompt file of ``--prompts`` (relative to the working directory) and the
    fine-tuning result of ``--run-dir``."""
    from am.t2i.prompts import read_prompts
    from amcli.t2i_settings import SETTINGS_FILE

    family = check_model(cfg)
    if prompts_file is not None:
        if not Path(prompts_file).is_file():
            raise ResourceError(
                f"--prompts: prompt file {prompts_file!r} not found ({Path(prompts_file).resolve()})"
            )
        try:
            read_prompts(prompts_file)
        except ValueError as e:  # empty, or not UTF-8
            raise ResourceError(f"--prompts: {e}") from None
    if run_dir is not None:
        saved = result_path(run_dir, family, (run_dir / "lora").is_dir())
        if not saved.is_dir():
            raise ResourceError(
                f"--run-dir: {run_dir} holds no fine-tuning result (looked for "
                f"{run_dir / 'lora'} and {result_path(run_dir, family, False)}): run "
                "`python -m amcli.t2i finetune` first"
            )
        record = run_dir / SETTINGS_FILE
        settings = json.loads(record.read_text())["settings"] if record.is_file() else {}
        trained_on = settings.get("model.path", cfg.model.path)
        if trained_on != cfg.model.path:  # its weights would land on another base model
            raise ResourceError(
                f"model.path: {run_dir} was fine-tuned from {trained_on!r} ({record}), the "
                f"config names {cfg.model.path!r}"
            )
