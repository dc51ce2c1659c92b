"""Data parallelism: two CPU processes under ``accelerate launch`` (gloo) give exactly the
parameters of one process with the same micro-batches; resume across ranks is exact; and
micro-batches average their chunks' gradients."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from am.distributed import SingleProcess
from am.train_config import TrainConfig, iteration_generator

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "_data_parallel_run.py"
sys.path.insert(0, str(SCRIPT.parent))
from _data_parallel_run import train  # noqa: E402


def launch(tmp_path, run_dir, out, *extra):
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        pytest.skip("accelerate is not installed in this environment")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT),
           "--run-dir", str(run_dir), "--out", str(out), *extra]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "world size 2" in done.stdout
    return torch.load(out, weights_only=True)


def assert_same(params, reference):
    assert len(params) == len(reference)
    for p, r in zip(params, reference, strict=True):
        torch.testing.assert_close(p.detach(), r, rtol=0, atol=0)


def test_two_processes_equal_one_process_and_resume_across_ranks(tmp_path):
    two = launch(tmp_path, tmp_path / "two", tmp_path / "two.pt")
    one = train(tmp_path / "one", iterations=4, micro_batches=2, parallel=SingleProcess())
    assert_same(one.params, two)
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4  # one log, written by the main process only
    # interrupted after 2 iterations, resumed by two fresh processes
    launch(tmp_path, tmp_path / "resumed", tmp_path / "half.pt", "--until", "2")
    resumed = launch(tmp_path, tmp_path / "resumed", tmp_path / "resumed.pt")
    assert_same(one.params, resumed)
    # and a single process resumes a two-process run's checkpoint (same micro-batches)
    shutil.copytree(tmp_path / "resumed", tmp_path / "mixed")
    (tmp_path / "mixed" / "checkpoint.pt").unlink()
    launch(tmp_path, tmp_path / "mixed", tmp_path / "mixed_half.pt", "--until", "2")
    mixed = train(tmp_path / "mixed", iterations=4, micro_batches=2, parallel=SingleProcess())
    assert_same(mixed.params, two)


def test_micro_batches_average_the_chunk_gradients(tmp_path):
    trainer = train(None, iterations=0, micro_batches=2, parallel=SingleProcess())
    trainer._accumulate("cpu")
    accumulated = [p.grad.clone() for p in trainer.params]
    manual = [torch.zeros_like(p) for p in trainer.params]
    for chunk in (0, 1):
        trainer.optimizer.zero_grad(set_to_none=True)
        gen = iteration_generator(trainer.config.seed, 0, "cpu", chunk)
        trainer.method.loss(trainer.model, batch_size=8, generator=gen).loss.backward()
        for m, p in zip(manual, trainer.params, strict=True):
            m += p.grad / 2
    for a, m in zip(accumulated, manual, strict=True):
        torch.testing.assert_close(a, m)
    assert (
        iteration_generator(3, 5, "cpu", 0).initial_seed()
        != iteration_generator(3, 5, "cpu", 1).initial_seed()
    )


def test_micro_batches_are_checked():
    with pytest.raises(ValueError, match="micro_batches must be >= 1 and divide"):
        TrainConfig(batch_size=10, micro_batches=3)
    with pytest.raises(ValueError, match="does not combine"):
        TrainConfig(batch_size=8, micro_batches=2, updates_per_rollout=2)
