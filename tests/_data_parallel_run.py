"""Run by tests/test_distributed.py under ``accelerate launch`` (2 CPU processes, gloo) and
in-process: a few Adjoint Matching steps on the exact 1-D problem with micro-batches; writes
the final parameters (``--out``) from the main process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am import AdjointMatching, AdjointMatchingConfig, FlowMatchingSchedule, TrainConfig  # noqa: E402
from am.methods.base import FineTuningProblem  # noqa: E402
from am.models import ResidualVelocity, TimeMLP  # noqa: E402
from am.problems.benchmarks import make_problem  # noqa: E402
from am.train import Trainer  # noqa: E402


def train(run_dir, *, iterations: int, micro_batches: int, until: int | None = None, parallel=None):
    torch.manual_seed(0)
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    model = ResidualVelocity(gt.velocity, TimeMLP(1, 16, 2, time_features=4, zero_init=False))
    problem = FineTuningProblem(base=gt.velocity, reward=gt.reward, schedule=gt.schedule,
                                sample_shape=(1,), reward_scale=1.0)  # fmt: skip
    # with the authors' loss dropping: its running threshold must not depend on the processes
    method = AdjointMatching(AdjointMatchingConfig(num_steps=6, drop_quantile=0.75), problem)
    config = TrainConfig(iterations=iterations, batch_size=16, lr=1e-2, ema_decay=0.9,
                         checkpoint_every=1, micro_batches=micro_batches)  # fmt: skip
    trainer = Trainer(method, model, config, run_dir, parallel=parallel)
    trainer.fit(progress=False, until=until)
    return trainer


if __name__ == "__main__":
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--until", type=int, default=None)
    args = ap.parse_args()
    trainer = train(args.run_dir, iterations=args.iterations, micro_batches=2, until=args.until)
    if trainer.parallel.is_main:
        torch.save([p.detach() for p in trainer.params], args.out)
        print(f"world size {trainer.parallel.world_size}, iteration {trainer.iteration}")
