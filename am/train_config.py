"""The training run's settings: :class:`TrainConfig` (validated on construction, before any
compute), which of them a resumed run may change, and :data:`DRAW_POSITION`, the place in the
run of the micro-batch being drawn (:mod:`am.train` sets it)."""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from am.fields import FieldError

__all__ = [
    "TrainConfig",
    "DrawPosition",
    "DRAW_POSITION",
    "RESUMABLE_CHANGES",
    "iteration_generator",
]


@dataclass(frozen=True)
class DrawPosition:
    """``index``: the place of the micro-batch being drawn in the run's sequence of
    micro-batches (``iteration * micro_batches + chunk``; with rollout reuse, the round). A
    pure function of the run's progress, so samplers that walk a data set in order
    (:class:`am.t2i.prompts.PromptSampler` in epochs) resume exactly and draw the same rows
    in any number of processes."""

    index: int


# set by the trainer while a micro-batch's loss runs; None outside the trainer
DRAW_POSITION: ContextVar[DrawPosition | None] = ContextVar("draw_position", default=None)


def iteration_generator(seed: int, iteration: int, device="cpu", chunk: int = 0) -> torch.Generator:
    """The generator of one iteration (of its micro-batch ``chunk``): a pure function of
    ``(seed, iteration, chunk)``; chunk 0 is the whole batch's generator of a one-chunk run."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + iteration + chunk * 7_919_000_009) % (2**63 - 1))
    return g


@dataclass(frozen=True)
class TrainConfig:
    """``iterations``, ``batch_size``; AdamW ``lr, betas, weight_decay``; ``lr_schedule``
    (``constant`` or ``cosine`` decay to 0 over ``iterations``); ``grad_clip`` (global
    norm, ``None`` = off); ``ema_decay`` (``None`` = no EMA; warmed up,
    :meth:`ema_decay_at`); ``checkpoint_every`` iterations (0 = only at the end) and
    ``checkpoint_minutes`` of wall-clock time (``None`` = off; either one triggers a checkpoint:
    on hours-long runs a crash then costs minutes, whatever an iteration takes); ``log_every``;
    ``seed``. ``updates_per_rollout``: optimiser steps per batch of
    ``batch_size`` rollouts (1: a fresh batch every step; more: :mod:`am.reuse`), each on
    ``minibatch`` stored rollouts (default ``batch_size``); ``updates_per_rollout * minibatch``
    must be a multiple of ``batch_size`` (each rollout is then served that many times over).
    ``iterations`` counts optimiser steps. ``warmup_steps``: the learning rate rises linearly
    from 0 over that many optimiser steps (step ``i`` gets ``min(i / warmup_steps, 1)`` times
    its scheduled rate, the first step 0: ``LambdaLR`` as in the Adjoint Matching authors' SD 1.5
    code). ``micro_batches``: the batch is drawn and
    differentiated in that many chunks (gradient accumulation; memory of one chunk), which are
    shared out between the processes of a multi-process run (:mod:`am.distributed`): the result
    does not depend on the number of processes."""

    iterations: int = 1000
    batch_size: int = 256
    lr: float = 3e-3
    lr_schedule: str = "cosine"
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    checkpoint_every: int = 0
    checkpoint_minutes: float | None = None
    log_every: int = 1
    seed: int = 0
    updates_per_rollout: int = 1
    minibatch: int | None = None
    micro_batches: int = 1
    warmup_steps: int = 0

    def __post_init__(self):
        keys = ("iterations", "batch_size", "checkpoint_every", "log_every", "seed")
        for key in (*keys, "updates_per_rollout", "micro_batches", "warmup_steps"):
            val = getattr(self, key)
            if isinstance(val, bool) or not isinstance(val, int):
                raise FieldError(key, f"train.{key} must be an integer, got {val!r}")
        if self.iterations < 0:
            raise FieldError("iterations", f"train.iterations must be >= 0, got {self.iterations}")
        if self.warmup_steps < 0:
            raise FieldError(
                "warmup_steps", f"train.warmup_steps must be >= 0, got {self.warmup_steps}"
            )
        if self.batch_size < 1:
            raise FieldError("batch_size", f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.checkpoint_every < 0:
            raise FieldError(
                "checkpoint_every",
                f"train.checkpoint_every must be >= 0, got {self.checkpoint_every}",
            )
        if self.log_every < 1:
            raise FieldError("log_every", f"train.log_every must be >= 1, got {self.log_every}")
        minutes = self.checkpoint_minutes
        if minutes is not None and not (
            isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and minutes > 0
        ):
            raise FieldError(
                "checkpoint_minutes",
                f"train.checkpoint_minutes must be > 0 or null, got {minutes!r}",
            )
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise FieldError("lr", f"train.lr must be a positive number, got {self.lr!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise FieldError(
                "lr_schedule",
                f"train.lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}",
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise FieldError(
                "betas", f"train.betas must be two numbers in [0, 1), got {self.betas!r}"
            )
        if not self.weight_decay >= 0:
            raise FieldError(
                "weight_decay", f"train.weight_decay must be >= 0, got {self.weight_decay!r}"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise FieldError(
                "grad_clip", f"train.grad_clip must be > 0 or null, got {self.grad_clip!r}"
            )
        if self.updates_per_rollout < 1:
            raise FieldError(
                "updates_per_rollout",
                f"train.updates_per_rollout must be >= 1, got {self.updates_per_rollout}",
            )
        if self.micro_batches < 1 or self.batch_size % self.micro_batches:
            raise FieldError(
                "micro_batches",
                f"train.micro_batches must be >= 1 and divide train.batch_size "
                f"({self.batch_size}), got {self.micro_batches}",
            )
        if self.micro_batches > 1 and self.updates_per_rollout > 1:
            raise FieldError(
                "micro_batches",
                "train.micro_batches > 1 does not combine with updates_per_rollout > 1",
            )
        mb = self.minibatch
        if mb is not None and (isinstance(mb, bool) or not isinstance(mb, int) or mb < 1):
            raise FieldError(
                "minibatch", f"train.minibatch must be a positive integer or null, got {mb!r}"
            )
        if mb is not None and mb > self.batch_size:
            raise FieldError(
                "minibatch",
                f"train.minibatch ({mb}) must be <= train.batch_size ({self.batch_size})",
            )
        if (self.updates_per_rollout * (mb or self.batch_size)) % self.batch_size:
            raise FieldError(
                "updates_per_rollout",
                "train.updates_per_rollout * train.minibatch must be a multiple of "
                f"train.batch_size (so that every rollout is served equally often), got "
                f"{self.updates_per_rollout} * {mb} and {self.batch_size}",
            )
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise FieldError(
                "ema_decay", f"train.ema_decay must be in (0, 1) or null, got {self.ema_decay!r}"
            )

    def learning_rate(self, iteration: int) -> float:
        """The learning rate of the update after ``iteration`` optimizer steps: a pure function
        of the iteration, so resuming needs no scheduler state."""
        warmup = min(iteration / self.warmup_steps, 1.0) if self.warmup_steps else 1.0
        if self.lr_schedule == "cosine" and self.iterations > 0:
            return warmup * self.lr * 0.5 * (1 + math.cos(math.pi * iteration / self.iterations))
        return warmup * self.lr

    def ema_decay_at(self, iteration: int) -> float:
        """The EMA's decay for the update after ``iteration`` optimizer steps:
        ``min(ema_decay, (1 + n) / (10 + n))``. Why the warm-up: a fine-tuned model starts at the
        base (zero-initialised residual), and a fixed decay keeps ``ema_decay ** N`` of that start
        in the average after ``N`` steps (0.999 over 4500 iterations: 1.1 %, an under-tilt of the
        same order); the warm-up forgets the start within the first few updates."""
        return min(self.ema_decay, (1 + iteration) / (10 + iteration))


# Train settings a resumed run may change: resume is exact from any checkpoint, so when and how
# often it checkpoints or logs does not change the weights, and ``iterations`` extends the budget
# (under ``lr_schedule: cosine`` the remaining steps then follow the longer schedule).
RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "checkpoint_minutes", "log_every")
