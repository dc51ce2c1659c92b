"""One generic training loop for every method: rollout -> loss -> optimizer step.

Checkpoints hold the model's trained state (its frozen parameters are not copied: a fingerprint
of them is, :mod:`am.checkpoints`), optimizer, EMA, RNG states and iteration, written atomically
(``*.tmp`` then ``os.replace``) and loaded with ``weights_only=True``. Resume is exact: each
iteration draws its randomness from a generator seeded by ``(seed, iteration)``, so a run
interrupted at any checkpoint and resumed ends with the same parameters as an uninterrupted one.
A non-finite loss or gradient stops the run with :class:`NonFiniteError`; the last good
checkpoint on disk is left untouched.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from am.checkpoints import (
    atomic_save,
    check_resumable,
    frozen_fingerprint,
    load_trained_state,
    load_weights,
    trained_state,
    truncate_log,
)
from am.distributed import SingleProcess, data_parallel
from am.methods.base import Method
from am.reuse import RolloutReuse
from am.train_config import DRAW_POSITION, DrawPosition, TrainConfig, iteration_generator

__all__ = ["TrainConfig", "Trainer", "NonFiniteError", "iteration_generator", "load_weights"]


class NonFiniteError(RuntimeError):
    """Raised when the loss or a gradient is NaN/Inf."""


class Trainer:
    """Fine-tunes ``model`` with ``method`` under ``config``, writing into ``run_dir``:
    ``checkpoint.pt`` (resumable), ``metrics.jsonl`` (one line per logged iteration)."""

    def __init__(
        self,
        method: Method,
        model: nn.Module,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        parallel: SingleProcess | None = None,
    ):
        self.method, self.model, self.config = method, model, config
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.parallel = parallel if parallel is not None else data_parallel()
        if config.micro_batches % self.parallel.world_size:
            raise ValueError(
                f"train.micro_batches ({config.micro_batches}) must be a multiple of the number "
                f"of processes ({self.parallel.world_size})"
            )
        with torch.no_grad():  # every process starts from rank 0's parameters
            self.parallel.broadcast_([p.data for p in self.params])
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay
        )
        self.ema = (
            [p.detach().clone() for p in self.params] if config.ema_decay is not None else None
        )
        self.iteration = 0
        self.reuse = None
        if config.updates_per_rollout > 1:
            self.reuse = RolloutReuse(
                method,
                batch_size=config.batch_size,
                updates=config.updates_per_rollout,
                minibatch=config.minibatch or config.batch_size,
                seed=config.seed,
            )
        self._fingerprint = None  # of the frozen parameters; computed at the first save
        self._bar = None  # fit's progress bar, advanced per micro-batch
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoint.pt"

    def state_dict(self) -> dict:
        if self._fingerprint is None:  # frozen parameters never change: one pass per run
            self._fingerprint = frozen_fingerprint(self.model)
        return {
            "iteration": self.iteration,
            "model": trained_state(self.model),
            "frozen": self._fingerprint,
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema,
            "torch_rng": torch.get_rng_state(),
            "config": asdict(self.config),
            "method_config": asdict(self.method.config),
            "reuse": None if self.reuse is None else self.reuse.state_dict(),
            "method_state": self.method.state_dict(),
        }

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is not None and self.parallel.is_main:
            atomic_save(self.state_dict(), self.checkpoint_path)
        self.parallel.barrier()  # no process reads or moves on before the file is complete

    def load_checkpoint(self, path: str | Path | None = None) -> bool:
        """Restore from ``path`` (default: ``run_dir/checkpoint.pt``); False if there is none."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        check_resumable(state, path=path, train=self.config, method=self.method.config)
        load_trained_state(
            self.model, state["model"], source=f"checkpoint {path}", fingerprint=state.get("frozen")
        )
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state["ema"] is not None:
            for e, s in zip(self.ema, state["ema"], strict=True):
                e.copy_(s)
        torch.set_rng_state(state["torch_rng"])
        self.iteration = int(state["iteration"])
        if self.reuse is not None and state.get("reuse") is not None:
            self.reuse.load_state_dict(state["reuse"])
        self.method.load_state_dict(state.get("method_state") or {})
        self._truncate_log()
        return True

    def _truncate_log(self) -> None:
        if self.run_dir is not None and self.parallel.is_main:
            truncate_log(self.run_dir / "metrics.jsonl", self.iteration)

    @torch.no_grad()
    def load_ema_into_model(self) -> None:
        """Copy the EMA parameters into the model (for export and evaluation); no-op without EMA."""
        if self.ema is not None:
            for p, e in zip(self.params, self.ema, strict=True):
                p.copy_(e)

    # -- loop ----------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if self.run_dir is None or not self.parallel.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def step(self) -> dict:
        """One iteration; returns its metrics. Raises :class:`NonFiniteError` before touching
        the parameters if the loss or gradient is not finite."""
        cfg = self.config
        device = self.params[0].device
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        if self.reuse is None:
            metrics = self._accumulate(device)
        else:  # the round's generator: its rollouts are drawn once, at its first step
            round_ = self.iteration // cfg.updates_per_rollout
            gen = iteration_generator(cfg.seed, round_, device)
            token = DRAW_POSITION.set(DrawPosition(round_))
            try:
                out = self.reuse.loss(self.model, self.iteration, gen)
            finally:
                DRAW_POSITION.reset(token)
            if not torch.isfinite(out.loss):
                raise NonFiniteError(self._nan_message("loss"))
            out.loss.backward()
            metrics = out.metrics
        self.method.end_step(self.parallel)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.params, cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        )
        if not torch.isfinite(grad_norm):
            raise NonFiniteError(self._nan_message("gradient"))
        lr = cfg.learning_rate(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        if self.ema is not None:
            decay = cfg.ema_decay_at(self.iteration)
            with torch.no_grad():
                for e, p in zip(self.ema, self.params, strict=True):
                    e.lerp_(p.detach(), 1 - decay)
        self.iteration += 1
        return {
            "iteration": self.iteration,
            **metrics,
            "grad_norm": float(grad_norm),
            "lr": lr,
            "seconds": time.perf_counter() - t0,
        }

    def _accumulate(self, device) -> dict:
        """This process's share of the micro-batches: their gradients accumulated into the
        parameters' ``.grad`` and averaged across processes; returns the metrics averaged over
        every micro-batch of the step. Raises :class:`NonFiniteError` (on every process) before
        the parameters move if any micro-batch's loss is not finite."""
        cfg, par = self.config, self.parallel
        per = cfg.micro_batches // par.world_size
        chunks = range(par.rank * per, (par.rank + 1) * per)
        totals: dict[str, float] = {}
        finite = True
        for chunk in chunks:
            gen = iteration_generator(cfg.seed, self.iteration, device, chunk)
            token = DRAW_POSITION.set(DrawPosition(self.iteration * cfg.micro_batches + chunk))
            try:
                out = self.method.loss(
                    self.model, batch_size=cfg.batch_size // cfg.micro_batches, generator=gen
                )
            finally:
                DRAW_POSITION.reset(token)
            finite = finite and bool(torch.isfinite(out.loss))
            if finite:
                (out.loss / per).backward()
            for k, v in out.metrics.items():
                totals[k] = totals.get(k, 0.0) + float(v) / per
            if self._bar is not None:
                self._bar.update(1)
        if par.world_size > 1:
            names = sorted(totals)
            flags = torch.tensor([float(not finite), *(totals[k] for k in names)], device=device)
            par.mean_([flags])
            finite, totals = bool(flags[0] == 0), dict(zip(names, flags[1:].tolist(), strict=True))
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            par.mean_(grads)
            for p, g in zip(self.params, grads, strict=True):
                p.grad = g
        if not finite:
            raise NonFiniteError(self._nan_message("loss"))
        return totals

    def _nan_message(self, what: str) -> str:
        where = (
            self.checkpoint_path if self.checkpoint_path and self.checkpoint_path.exists() else None
        )
        keep = (
            f"the last good checkpoint is kept at {where}"
            if where
            else "no checkpoint was written yet"
        )
        return (
            f"non-finite {what} at iteration {self.iteration + 1}; stopping ({keep}). "
            "Lower the learning rate, enable clipping, or check the reward's gradient."
        )

    def fit(
        self, *, resume: bool = True, progress: bool = True, until: int | None = None
    ) -> list[dict]:
        """Run to ``config.iterations`` (resuming from ``run_dir`` if a checkpoint is there).
        ``until`` stops earlier, as an interruption would (the learning-rate schedule still
        spans ``config.iterations``)."""
        cfg = self.config
        if resume:
            self.load_checkpoint()
        # without a checkpoint a run restarts from its first iteration: drop the log of the
        # interrupted attempt too (e.g. a run killed before its first checkpoint)
        self._truncate_log()
        stop = cfg.iterations if until is None else min(until, cfg.iterations)
        history = []
        # one tick per micro-batch of this process (an iteration of a large model is many
        # minutes of micro-batches), so the bar and its ETA move within an iteration
        ticks = cfg.micro_batches // self.parallel.world_size if self.reuse is None else 1
        self._bar = tqdm(
            total=cfg.iterations * ticks, initial=self.iteration * ticks, unit="micro-batch",
            desc="fine-tune", disable=not progress or not self.parallel.is_main, mininterval=1.0,
        )  # fmt: skip
        last_save = time.monotonic()
        try:
            while self.iteration < stop:
                rec = self.step()
                history.append(rec)
                if self.iteration % cfg.log_every == 0 or self.iteration == stop:
                    self._log(rec)
                if self.reuse is not None:
                    self._bar.update(1)
                self._bar.set_postfix_str(
                    f"iteration {self.iteration}/{cfg.iterations}, "
                    f"loss {rec.get('loss', float('nan')):.3g}, "
                    f"reward {rec.get('reward', float('nan')):.3g}"
                )
                due = bool(cfg.checkpoint_every) and self.iteration % cfg.checkpoint_every == 0
                if due or self._minutes_since(last_save) >= (cfg.checkpoint_minutes or math.inf):
                    self.save_checkpoint()
                    last_save = time.monotonic()
        finally:
            self._bar.close()
            self._bar = None
        self.save_checkpoint()
        return history

    def _minutes_since(self, start: float) -> float:
        """Minutes since ``start`` by rank 0's clock: every process must decide alike, since a
        checkpoint is a collective (:meth:`save_checkpoint` waits for all)."""
        if self.config.checkpoint_minutes is None:
            return 0.0
        elapsed = torch.tensor([(time.monotonic() - start) / 60], device=self.params[0].device)
        self.parallel.broadcast_([elapsed])
        return float(elapsed)
