"""What torch's intra-op thread count does to one Adjoint Matching iteration on this CPU.

Run: ``python benchmarks/bench_threads.py`` (``--help`` for rounds, problems and the burner;
about 2-3 minutes on 2 cores with the defaults).

Times one ``Trainer.step`` (batch 256, K = 40, ``AdjointMatchingConfig(control_variate=
"antithetic", weighting="uniform")``, a ``ResidualVelocity`` whose zero-initialised ``TimeMLP``
sits on top of the base, as :func:`amcli.run.build_run` builds a run) for two problems:

* ``1d``: ``gmm1d_linear`` with its exact Gaussian-mixture base, hidden 64, depth 3,
  4 time features (the default config's model);
* ``64d``: d = 64 with a random ``TimeMLP(64, 256, 3)`` base and a quadratic reward, hidden 256
  (the size of ``benchmarks/bench_adjoint_matching.py``).

Each problem is timed at ``torch.set_num_threads(1)`` and ``(2)`` in two situations: alone, and
beside a busy process (a separate CPU-burning process, started before that block and stopped
after it). Within a block the two thread counts alternate in every round
(:func:`_timing.interleaved`, one trainer per thread count, so both see the same work), and the
ratio 2 threads / 1 thread is taken within each round, then its median and range over the rounds
are printed. The slowdown beside the busy process compares two blocks timed one after the
other, so the machine's drift between blocks is not cancelled there. Each block's line ends
with the cores that *other* processes (not this one, not the burner) kept busy meanwhile, from
``/proc/stat``: a block that is not really alone shows it there.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
from _timing import interleaved, paired

from am.methods import AdjointMatching, AdjointMatchingConfig, FineTuningProblem
from am.models import ResidualVelocity, TimeMLP
from am.problems.benchmarks import make_problem
from am.rewards import QuadraticReward
from am.schedules import FlowMatchingSchedule
from am.train import TrainConfig, Trainer

THREADS = (1, 2)

# name: (description, dim, hidden, time_features)
PROBLEMS = {
    "1d": ("gmm1d_linear, exact base, hidden 64", 1, 64, 4),
    "64d": ("d=64, TimeMLP(64, 256, 3) base, hidden 256", 64, 256, 16),
}

BURNERS = {
    # a pure-Python busy loop: one core, no torch threads
    "python": "while True:\n    pass\n",
    # a torch matmul loop on one thread
    "matmul": (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "a = torch.randn(512, 512)\n"
        "while True:\n"
        "    a @ a\n"
    ),
}


def build_trainer(name: str, batch: int, K: int) -> Trainer:
    """The trainer of one problem, as ``amcli.run.build_run`` builds a run (seeded: every call
    gives the same weights and the same sequence of iterations)."""
    _, dim, hidden, time_features = PROBLEMS[name]
    torch.manual_seed(0)
    schedule = FlowMatchingSchedule()
    if name == "1d":
        gt = make_problem("gmm1d_linear", schedule, 1.0)
        base, reward = gt.velocity.requires_grad_(False), gt.reward
    else:
        base = TimeMLP(dim, hidden, 3).requires_grad_(False)
        reward = QuadraticReward(torch.ones(dim), torch.eye(dim))
    net = TimeMLP(dim, hidden, 3, time_features, zero_init=True)
    model = ResidualVelocity(base, net)
    problem = FineTuningProblem(
        base=base, reward=reward, schedule=schedule, sample_shape=(dim,), reward_scale=1.0
    )
    config = AdjointMatchingConfig(num_steps=K, control_variate="antithetic", weighting="uniform")
    method = AdjointMatching(config, problem)
    return Trainer(method, model, TrainConfig(batch_size=batch))


def start_burner(kind: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURNERS[kind]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    time.sleep(1.0)  # let it start (and import torch) before the timing begins
    if proc.poll() is not None:
        raise RuntimeError(f"the {kind} burner exited at once (code {proc.returncode})")
    return proc


def stop_burner(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``; Linux)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores kept busy by processes other than this one and the burner while a block ran: the
    machine's busy CPU time minus theirs, over the wall time (NaN where ``/proc`` is missing)."""

    def __init__(self, burner: subprocess.Popen | None):
        self.pid = None if burner is None else burner.pid

    def _cpu(self) -> tuple[float, float]:
        theirs = 0.0 if self.pid is None else _process_cpu_s(self.pid)
        return _busy_cpu_s(), time.process_time() + theirs

    def __enter__(self):
        try:
            self.t0, self.start = time.perf_counter(), self._cpu()
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc):
        self.cores = float("nan")
        if self.start is not None:
            try:
                busy, ours = self._cpu()
            except OSError:
                return
            wall = time.perf_counter() - self.t0
            self.cores = max(0.0, (busy - self.start[0]) - (ours - self.start[1])) / wall


def time_block(name: str, batch: int, K: int, warmup: int, rounds: int) -> dict[str, list]:
    """Seconds per iteration at each thread count, in interleaved rounds."""
    trainers = {n: build_trainer(name, batch, K) for n in THREADS}

    def step_at(n: int):
        def fn():
            torch.set_num_threads(n)
            trainers[n].step()

        return fn

    fns = {f"{n}t": step_at(n) for n in THREADS}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    return interleaved(fns, rounds)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=["1d", "64d"])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per block")
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations per thread count")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=40, help="K, the rollout's steps")
    ap.add_argument(
        "--burner", choices=sorted(BURNERS), default="python", help="the busy process's loop"
    )
    args = ap.parse_args()

    default_threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, os.cpu_count()={os.cpu_count()}, "
        f"default torch.get_num_threads()={default_threads}, "
        f"interop threads={torch.get_num_interop_threads()}, python {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"one Trainer.step: batch {args.batch}, K={args.steps}, antithetic control variate, "
        f"uniform weighting; {args.warmup} warm-up + 1 + {args.rounds} timed rounds per block; "
        f"busy process: {args.burner} loop"
    )
    print("ms per iteration: median over rounds; ratio 2t/1t within each round: median (min-max)")
    t_start = time.perf_counter()
    for name in args.problems:
        print(f"\n[{name}] {PROBLEMS[name][0]}")
        medians = {}
        for situation in ("alone", "busy"):
            burner = start_burner(args.burner) if situation == "busy" else None
            try:
                with OtherLoad(burner) as other:
                    s = time_block(name, args.batch, args.steps, args.warmup, args.rounds)
            finally:
                if burner is not None:
                    stop_burner(burner)
            med = {k: statistics.median(v) for k, v in s.items()}
            medians[situation] = med
            r_med, r_lo, r_hi = paired(lambda r: r["2t"] / r["1t"], s)
            print(
                f"  {situation:5s}  1 thread {med['1t'] * 1e3:7.1f} ms   "
                f"2 threads {med['2t'] * 1e3:7.1f} ms   "
                f"2t/1t {r_med:.2f}x ({r_lo:.2f}-{r_hi:.2f})   "
                f"other processes: {other.cores:.2f} cores"
            )
        slow = "   ".join(
            f"{n} thread{'s' if n > 1 else ''} {medians['busy'][f'{n}t'] / medians['alone'][f'{n}t']:.2f}x"
            for n in THREADS
        )
        print(f"  busy / alone (medians of separate blocks): {slow}")
    torch.set_num_threads(default_threads)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
