"""Cost of one training iteration of every registered method, as a ratio to one sampling pass.

Run: ``python benchmarks/bench_methods.py`` (``--help`` for sizes). For each entry of
``baselines.registry.METHODS`` with its default config (so each uses its own number of steps,
printed), times one iteration (loss + backward) on the same MLP velocity model, batch and
quadratic reward, and divides by the time of sampling the same batch with the ODE on K = 40
steps (the reference pass every method's table row is sampled with): both timed once in each of
``--rounds`` interleaved rounds, the ratio taken within a round, its median (and range over the
rounds) printed (``_timing.py``). Also prints the bytes autograd
saves for the backward pass during one iteration (``saved_tensors_hooks``; exact, unlike RSS),
which separates the methods that keep a graph across steps (DRaFT-K for K > 1, the discrete
adjoint without checkpointing) from those that do not. One thread, fresh process per method.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import torch
from _timing import interleaved, paired

from am.diffusion import ConstantDiffusion
from am.loss import StepSubset
from am.methods import FineTuningProblem
from am.models import TimeMLP, finetunable_copy
from am.rewards import QuadraticReward
from am.schedules import FlowMatchingSchedule
from am.sde import sample
from baselines.registry import METHODS, make_method, method_class

VARIANTS = {  # extra rows: name -> (registry key, config overrides)
    "adjoint_matching (paper: loss on 20 of 40 steps)": (
        "adjoint_matching",
        {"steps": StepSubset("paper")},
    ),
    "adjoint_matching (control variate)": ("adjoint_matching", {"control_variate": "antithetic"}),
    "draft (K = 40, full backprop)": ("draft", {"grad_steps": 40}),
    "discrete_adjoint (checkpointing)": ("discrete_adjoint", {"checkpoint": True}),
}


def rows() -> dict[str, tuple[str, dict]]:
    out = {name: (name, {}) for name in METHODS}
    out.update(VARIANTS)
    return out


def build(key: str, overrides: dict, dim: int, hidden: int):
    torch.manual_seed(0)
    base = TimeMLP(dim, hidden, 3).requires_grad_(False)
    model = finetunable_copy(base)
    problem = FineTuningProblem(
        base=base,
        reward=QuadraticReward(torch.ones(dim), torch.eye(dim)),
        schedule=FlowMatchingSchedule(),
        sample_shape=(dim,),
        reward_scale=1.0,
    )
    cfg = method_class(key).config_class(**overrides)
    return model, problem, make_method(key, cfg, problem)


def measure(name: str, dim: int, hidden: int, batch: int, rounds: int) -> dict:
    """Time and peak-RSS growth of one iteration of ``name`` (run in a fresh process)."""
    torch.set_num_threads(1)
    key, overrides = rows()[name]
    model, problem, method = build(key, overrides, dim, hidden)

    def iteration():
        model.zero_grad(set_to_none=True)
        out = method.loss(model, batch_size=batch, generator=torch.Generator().manual_seed(1))
        out.loss.backward()

    def sampling():
        sample(
            model,
            batch,
            (dim,),
            schedule=problem.schedule,
            num_steps=40,
            diffusion=ConstantDiffusion(0.0),
            generator=torch.Generator().manual_seed(2),
        )

    s = interleaved({"sampling": sampling, "iteration": iteration}, rounds)
    ratio, lo, hi = paired(lambda r: r["iteration"] / r["sampling"], s)
    saved = [0]

    def pack(t):  # every tensor autograd keeps for the backward pass, counted once
        saved[0] += t.numel() * t.element_size()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = method.loss(model, batch_size=batch, generator=torch.Generator().manual_seed(1))
    out.loss.backward()
    return {
        "method": name,
        "steps": method.config.num_steps,
        "iteration_ms": 1e3 * statistics.median(s["iteration"]),
        "sampling_ms": 1e3 * statistics.median(s["sampling"]),
        "ratio": ratio,
        "ratio_range": [lo, hi],
        "saved_mib": saved[0] / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child-process mode
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.dim, args.hidden, args.batch, args.rounds)))
        return
    print(
        f"MLP velocity d={args.dim}, hidden={args.hidden}, batch={args.batch}, 1 thread, CPU; "
        f"reference: ODE sampling, 40 steps, same batch\n"
    )
    print("| method | steps K | one iteration (ms) | / sampling pass (range) | graph kept (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for name in rows():
        cmd = [sys.executable, __file__, "--one", name, "--dim", str(args.dim)]
        cmd += ["--hidden", str(args.hidden), "--batch", str(args.batch)]
        cmd += ["--rounds", str(args.rounds)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(
            f"| {r['method']} | {r['steps']} | {r['iteration_ms']:.1f} | {r['ratio']:.2f}x "
            f"({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}) | "
            f"{r['saved_mib']:.1f} |"
        )


if __name__ == "__main__":
    main()
