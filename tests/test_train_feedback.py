"""The trainer's feedback on long runs: a progress bar per micro-batch, time-based checkpoints,
and a budget that a resumed run may extend (but not cut, and not change what it trains)."""

import pytest
import torch

import am.train
from am.train import TrainConfig, Trainer
from tests.test_train import build


class RecordingBar:
    """Stands in for tqdm: records its total, every update and the last postfix."""

    made: list = []

    def __init__(self, total, initial, **kwargs):
        self.total, self.n, self.kwargs, self.postfix = total, initial, kwargs, ""
        RecordingBar.made.append(self)

    def update(self, n):
        self.n += n

    def set_postfix_str(self, text):
        self.postfix = text

    def close(self):
        pass


def test_progress_bar_ticks_per_micro_batch(monkeypatch, tmp_path):
    monkeypatch.setattr(am.train, "tqdm", RecordingBar)
    RecordingBar.made.clear()
    model, method, cfg = build(iterations=3, micro_batches=4, checkpoint_every=1)
    ticks = []
    original = RecordingBar.update
    monkeypatch.setattr(
        RecordingBar, "update", lambda self, n: (ticks.append(n), original(self, n))
    )
    Trainer(method, model, cfg, tmp_path).fit(until=2)
    bar = RecordingBar.made[-1]
    assert bar.total == 12 and bar.n == 8 and ticks == [1] * 8  # 4 ticks per iteration
    assert bar.postfix.startswith("iteration 2/3, loss ") and ", reward " in bar.postfix
    assert bar.kwargs["unit"] == "micro-batch"
    # a resumed run's bar starts where the checkpoint is
    model, method, cfg = build(iterations=3, micro_batches=4, checkpoint_every=1)
    Trainer(method, model, cfg, tmp_path).fit()
    assert RecordingBar.made[-1].total == 12 and RecordingBar.made[-1].n == 12


def test_checkpoint_minutes_saves_by_the_clock(monkeypatch):
    """A fake clock that advances 4 minutes per reading: with ``checkpoint_minutes: 10`` a
    checkpoint is due at every third reading after the last save, whatever the iterations."""
    now = [0.0]

    def monotonic():
        now[0] += 240.0
        return now[0]

    monkeypatch.setattr(am.train.time, "monotonic", monotonic)
    model, method, cfg = build(iterations=7, checkpoint_minutes=10.0)
    trainer = Trainer(method, model, cfg)
    saved = []
    monkeypatch.setattr(trainer, "save_checkpoint", lambda: saved.append(trainer.iteration))
    trainer.fit(progress=False)
    # readings: start 240; it 1: 480 (4 min), it 2: 720 (8), it 3: 960 (12: save, reset 1200);
    # it 4: 1440 (4), it 5: 1680 (8), it 6: 1920 (12: save, reset 2160); it 7: 2400; final save
    assert saved == [3, 6, 7]
    model, method, cfg = build(iterations=3)
    trainer = Trainer(method, model, cfg)
    saved.clear()
    monkeypatch.setattr(trainer, "save_checkpoint", lambda: saved.append(trainer.iteration))
    trainer.fit(progress=False)
    assert saved == [3]  # no time-based checkpoints by default: only the final one


@pytest.mark.parametrize("value", [0, -1.0, True, "5"])
def test_checkpoint_minutes_is_validated(value):
    with pytest.raises(ValueError, match="train.checkpoint_minutes"):
        TrainConfig(checkpoint_minutes=value)


def test_resume_may_extend_the_budget_but_not_cut_it(tmp_path):
    model, method, cfg = build(iterations=2)
    Trainer(method, model, cfg, tmp_path).fit(progress=False)
    # more iterations, other checkpoint and log settings: resumed from iteration 2
    model, method, cfg = build(iterations=3, checkpoint_every=1, log_every=2)
    trainer = Trainer(method, model, cfg, tmp_path)
    assert trainer.load_checkpoint() and trainer.iteration == 2
    trainer.fit(progress=False, resume=False)
    assert trainer.iteration == 3
    model, method, cfg = build(iterations=2)
    with pytest.raises(ValueError, match="at iteration 3, past train.iterations = 2"):
        Trainer(method, model, cfg, tmp_path).load_checkpoint()
    model, method, cfg = build(iterations=4, seed=0, lr=1e-4)
    with pytest.raises(ValueError, match="different config.*train.lr"):
        Trainer(method, model, cfg, tmp_path).load_checkpoint()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["iteration"] == 3
