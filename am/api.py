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
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from am.conditions import ClassLabels
from am.methods import AdjointMatching, FineTuningProblem, Method
from am.models import ResidualVelocity, TimeMLP, finetunable_copy
from am.schedules import Schedule
from am.train import TrainConfig, Trainer

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
    ``run_dir``: checkpoints, exact resume and a ``metrics.jsonl`` log. A ``run_dir`` that holds
    a checkpoint of the same configuration is resumed (a message says from which iteration; a
    finished run returns at once, and a longer ``train.iterations`` continues it); one of another
    configuration is refused, naming the keys; ``resume=False`` trains anew and overwrites it.
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
    trainer = Trainer(
        method(_method_config(method, config), problem), model, train or TrainConfig(), run_dir
    )
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
        history = trainer.fit(resume=False, progress=progress)
        seconds = time.perf_counter() - t0
    trainer.load_ema_into_model()
    return FineTuneResult(model, history, seconds, start, trainer.iteration)
