"""The library's front door: fine-tune a velocity model against a reward in one call.

    result = am.finetune(base, reward, schedule=schedule, sample_shape=(2,), reward_scale=1.0)
    x = am.sample(result.model, 5000, (2,), schedule=schedule, num_steps=100,
                  diffusion=am.make_diffusion("ode", schedule))

Every default is the setting this project measured to work on its ground-truth problems
(``docs/library.md``): Adjoint Matching with the antithetic control variate, AdamW at 3e-3 with
cosine decay, and for a parameter-free base a zero-initialised residual MLP of width 64.
Any other registered method runs through the same call with ``method=`` a method class (or by
name with :func:`baselines.finetune`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from am.conditions import ClassLabels
from am.distributed import data_parallel
from am.methods import AdjointMatching, FineTuningProblem, Method
from am.models import ResidualVelocity, TimeMLP, finetunable_copy
from am.run_dir import SettingsComparison, prepare, training_settings, write_settings_only
from am.schedules import Schedule
from am.train import NonFiniteError, TrainConfig, Trainer

__all__ = ["FineTuneResult", "finetune", "default_model", "num_threads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneResult:
    """``model``: the fine-tuned velocity (EMA weights if ``train.ema_decay`` is set), an
    ordinary velocity field to sample with any diffusion, the ODE included; ``history``: the
    metrics of every iteration this call ran (``loss``, ``reward``, ``grad_norm``, ``lr``,
    ``seconds``, ...); ``seconds``: wall time of this call's training.

    Three counts of optimiser iterations: ``start_iteration``, how many the run had done when
    this call began (``> 0`` when it resumed a checkpoint from ``run_dir``); ``iterations``, how
    many the returned model has had in all (the resumed ones included: ``train.iterations`` once
    a run is finished); ``iterations_run``, how many of them this call ran (the ones ``history``
    holds and ``seconds`` timed)."""

    model: nn.Module
    history: list[dict]
    seconds: float
    start_iteration: int
    iterations: int
    # "finished", or "diverged" (``on_divergence="last_good"``): then ``diverged_at`` is the
    # iteration whose loss or gradient was not finite, ``message`` says why, and ``model`` holds
    # the last good checkpoint's weights (``iterations`` of them; 0: the initial model)
    status: str = "finished"
    diverged_at: int | None = None
    message: str | None = None

    @property
    def iterations_run(self) -> int:
        return self.iterations - self.start_iteration


def default_model(
    base: nn.Module | Callable, sample_shape: tuple[int, ...], conditions=None
) -> nn.Module:
    """The model :func:`finetune` trains when none is given: a trainable copy of ``base`` (the
    paper initialises ``v_ft = v_base``); for a base without parameters (an exact velocity) and
    vector samples, ``base + TimeMLP(d, hidden=64, depth=3, time_features=4)`` with a
    zero-initialised last layer, so that it starts at the base (class-conditional when
    ``conditions`` is :class:`am.conditions.ClassLabels`)."""
    if isinstance(base, nn.Module) and any(True for _ in base.parameters()):
        return finetunable_copy(base)
    if len(sample_shape) == 1 and conditions is None:
        return ResidualVelocity(base, TimeMLP(sample_shape[0], zero_init=True))
    if len(sample_shape) == 1 and isinstance(conditions, ClassLabels):
        net = TimeMLP(sample_shape[0], zero_init=True, num_classes=conditions.num_classes)
        return ResidualVelocity(base, net)
    raise ValueError(
        "the base has no parameters and the samples are not vectors (or the conditions are not "
        "class labels): pass `model=` "
        "(a network to train, e.g. am.models.ResidualVelocity(base, net))"
    )


@contextmanager
def num_threads(n: int | None):
    """Run a block with ``torch.set_num_threads(n)`` and restore the previous count after
    (``None``: leave it alone). Why: on small problems torch's default of one thread per core
    loses up to 10x (more beside another busy process) to thread synchronisation
    (``benchmarks/bench_threads.py``)."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _method_config(method: type[Method], config):
    """``config`` as an instance of ``method.config_class``: ``None`` -> the method's
    recommended config, a dict -> its fields (unknown keys named), an instance -> itself."""
    if config is None:
        return method.recommended_config()
    if isinstance(config, dict):
        cls = method.config_class
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown {method.name} config key(s) {unknown}; valid: {sorted(known)}"
            )
        return cls(**{**vars(method.recommended_config()), **config})
    return config


def finetune(
    base: nn.Module,
    reward,
    *,
    schedule: Schedule,
    sample_shape: tuple[int, ...],
    reward_scale: float,
    conditions=None,
    null_condition=None,
    method: type[Method] = AdjointMatching,
    config=None,
    model: nn.Module | None = None,
    train: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = True,
    settings: Mapping[str, Any] | None = None,
    on_change: str = "refuse",
    derived: tuple[str, ...] = (),
    on_divergence: str = "raise",
    progress: bool = True,
    threads: int | None = 1,
) -> FineTuneResult:
    """Fine-tune ``base`` towards ``p_base(x) exp(reward_scale * reward(x))``.

    ``base``: velocity ``(x [B, *sample_shape], t [B]) -> [B, *sample_shape]``, frozen here;
    ``reward``: ``x [B, *sample_shape] -> [B]``, differentiable; ``schedule``: the base's
    reference path (``am.FlowMatchingSchedule()`` for a flow-matching model). ``conditions``:
    for a conditional base ``(x, t, cond)`` and reward ``(x, cond)``, the sampler of the
    conditions to fine-tune on (e.g. ``am.conditions.ClassLabels(10)``; :mod:`am.conditions`);
    ``null_condition``: the "no condition" row of classifier-free guidance, for
    ``config={"rollout_guidance": w}``.
    ``method``: a method class (default :class:`am.methods.AdjointMatching`; the baselines in
    ``baselines.METHODS``); ``config``: its config (an instance, a dict of fields over the
    recommended ones, or ``None`` for ``method.recommended_config()``).
    ``model``: the network to train (default :func:`default_model`); ``train``: optimiser and
    budget (default ``TrainConfig()``).
    ``run_dir``: checkpoints, exact resume, a ``metrics.jsonl`` log and ``settings.json``, what
    the weights depend on: ``train``, the method and its config, and ``settings``, whatever
    else the caller's weights depend on (``{name: value}``; a dataclass value is recorded field
    by field, and a field an older record lacks reads as its default). A ``run_dir`` that holds
    a checkpoint of the same settings is resumed (a message says from which iteration; a
    finished run returns at once, and a longer ``train.iterations`` continues it). One of other
    settings is refused naming each key with both values (``on_change="refuse"``), or cleared
    and trained afresh (``"restart"``: with the files ``derived`` names, the caller's exports
    of the old run); :mod:`am.run_dir` has the rules. ``resume=False`` trains anew over it.
    ``on_divergence``: ``"raise"`` lets :class:`am.train.NonFiniteError` out; ``"last_good"``
    returns the last good checkpoint's model (the initial one if none was written) with
    ``status="diverged"``, for runs that must report a diverged method rather than fail.
    ``threads``: torch threads while training (default 1, the fastest on small CPU problems;
    ``None`` leaves torch's setting, e.g. for a large model on many cores).
    """
    if not (isinstance(method, type) and issubclass(method, Method)):
        if hasattr(method, "__dataclass_fields__"):
            raise TypeError(
                f"method takes a method class; pass the {type(method).__name__} as config= "
                "(e.g. am.finetune(..., config=am.AdjointMatchingConfig(num_steps=20)))"
            )
        raise TypeError(
            f"method must be a Method class (e.g. am.methods.AdjointMatching), got {method!r}; "
            "to pick a registered method by name use baselines.finetune(..., method='draft')"
        )
    if on_divergence not in ("raise", "last_good"):
        raise ValueError(f"on_divergence must be 'raise' or 'last_good', got {on_divergence!r}")
    train = train or TrainConfig()
    config = _method_config(method, config)
    if run_dir is not None:  # before anything is built or frozen: a refusal changes nothing
        recorded, known = training_settings(method.name, config, train, settings or {})
        check = prepare if resume else write_settings_only
        comparison = SettingsComparison((), None)
        if data_parallel().is_main:  # one process reads, clears and writes the directory
            comparison = check(run_dir, recorded, defaults=known, on_change=on_change,
                               trained=("checkpoint.pt",),
                               state=("checkpoint.pt", "metrics.jsonl", *derived))  # fmt: skip
        if comparison.changes:
            log.warning(
                "am.finetune: %s was trained under other settings (%s): starting the run afresh",
                run_dir, "; ".join(comparison.changes),
            )  # fmt: skip
    if isinstance(base, nn.Module):  # a plain callable velocity has nothing to freeze
        base.requires_grad_(False)
    if model is None:
        model = default_model(base, tuple(sample_shape), conditions)
    problem = FineTuningProblem(
        base=base,
        reward=reward,
        schedule=schedule,
        sample_shape=tuple(sample_shape),
        reward_scale=reward_scale,
        conditions=conditions,
        null_condition=null_condition,
    )
    trainer = Trainer(method(config, problem), model, train, run_dir)
    initial = None
    if on_divergence == "last_good":  # the trainable weights only: the frozen ones stay
        initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with num_threads(threads):
        if resume and trainer.load_checkpoint():
            total = trainer.config.iterations
            what = "finished, returning it" if trainer.iteration >= total else "resuming"
            # a warning, not info: the call does less than a plain reading of it says, and a
            # script that never configured logging should still show why
            log.warning(
                "am.finetune: %s is at iteration %d of %d: %s",
                trainer.checkpoint_path, trainer.iteration, total, what,
            )  # fmt: skip
        start = trainer.iteration
        t0 = time.perf_counter()
        try:
            history = trainer.fit(resume=False, progress=progress)
        except NonFiniteError as e:
            if initial is None:
                raise
            return _last_good(trainer, initial, e, start, time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
    trainer.load_ema_into_model()
    return FineTuneResult(model, history, seconds, start, trainer.iteration)


def _last_good(trainer: Trainer, initial: dict, error: Exception, start: int, seconds: float):
    """The result of a run that diverged: its last good checkpoint, else its initial weights."""
    log.warning("%s", error)
    diverged_at = trainer.iteration + 1
    if not trainer.load_checkpoint():
        with torch.no_grad():
            for name, p in trainer.model.named_parameters():
                if name in initial:
                    p.copy_(initial[name])
        trainer.iteration, trainer.ema = 0, None
    trainer.load_ema_into_model()
    return FineTuneResult(trainer.model, [], seconds, start, trainer.iteration, status="diverged",
                          diverged_at=diverged_at, message=str(error))  # fmt: skip
