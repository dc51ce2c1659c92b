"""Cost of one Adjoint Matching iteration against sampling and against its pass-count floor.

Run: ``python benchmarks/bench_adjoint_matching.py`` (``--help`` for sizes; ``--model digits``
for the digits benchmark's class-conditional UNet, batch 40, instead of the d = 64 MLP). Prints,
measured
side by side in one process (each figure timed once in each of ``--rounds`` rounds, all of them
in turn within a round; a ratio is taken within each round, then its median and range over the
rounds are printed, so that the machine's drift in speed cancels):

1. time of one AM iteration / time of sampling the same batch with the same number of steps,
   next to the *floor*: the summed cost of the passes the algorithm cannot avoid, each timed in
   isolation on the same model and batch:
     K rollout forwards of the fine-tuned model (no grad)
   + K base forward+VJP pairs (the lean adjoint)
   + one forward+backward of the fine-tuned model on the M subsampled steps (the regression;
     the base outputs it needs are reused from the adjoint pass, not recomputed)
   + the reward's forward+backward at X_K.
2. with the control variate (``control_variate="antithetic"``): the iteration's extra time over
   the plain one, next to the extra passes' floor: ``K`` forwards of ``v_theta`` and ``v_base`` at
   the ``B`` mirrored states (the visited states' ``g`` reuses the rollout's ``v_theta`` and the
   adjoint's ``v_base``; evaluating ``g`` at both points, as :func:`antithetic_corrections`
   does, would cost twice that floor).
3. peak memory growth (current RSS sampled every ms, over the warmed-up process) of one
   iteration at several K, each in a fresh process, with the
   loss on a fixed number of steps, next to the bytes of the stored trajectory, noises, adjoints
   and base velocities (4 tensors of ``[K, B, d]``): the peak should grow by no more than those.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace

import torch
from _timing import interleaved, paired

from am.conditions import ClassLabels, bind_reward, bind_velocity
from am.control_variate import AntitheticCorrections, adjoint_estimate, antithetic_corrections
from am.diffusion import MemorylessDiffusion
from am.loss import StepSubset
from am.methods import AdjointMatching, AdjointMatchingConfig, FineTuningProblem
from am.models import TimeMLP, finetunable_copy
from am.rewards import QuadraticReward
from am.schedules import FlowMatchingSchedule
from am.sde import EulerMaruyama, sample, simulate, uniform_grid


def build(spec: str, dim: int, hidden: int, K: int, subset: StepSubset, batch: int):
    """``spec="mlp"``: a ``TimeMLP(dim, hidden, 3)`` base, quadratic reward, vectors ``[dim]``;
    ``"digits"``: the digits benchmark's class-conditional UNet (random weights: the cost does
    not depend on them) and its classifier reward, images ``[1, 8, 8]``. The base, model and
    reward come back bound to one batch of labels, for the floor's passes timed on their own."""
    torch.manual_seed(0)
    conditions, cond = None, None
    if spec == "mlp":
        base = TimeMLP(dim, hidden, 3).requires_grad_(False)
        reward = QuadraticReward(torch.ones(dim), torch.eye(dim))
        shape = (dim,)
    else:
        from am.models.unet import UNetVelocity, digits_unet
        from am.problems.digits import ClassifierReward, DigitsCNN

        base = UNetVelocity(digits_unet()).requires_grad_(False)
        reward = ClassifierReward(DigitsCNN(), temperature=10.0)
        shape = (1, 8, 8)
        conditions = ClassLabels(10)
        cond = torch.arange(batch) % 10
    model = finetunable_copy(base)
    problem = FineTuningProblem(
        base=base,
        reward=reward,
        schedule=FlowMatchingSchedule(),
        sample_shape=shape,
        reward_scale=1.0,
        conditions=conditions,
    )
    method = AdjointMatching(AdjointMatchingConfig(num_steps=K, steps=subset), problem)
    bound = (bind_velocity(base, cond), bind_velocity(model, cond), bind_reward(reward, cond))
    return *bound, model, problem, method, shape


def time_ratios(spec, dim, hidden, batch, K, rounds) -> dict:
    subset = StepSubset("paper", num_random=K // 4, num_last=K // 4)
    base, model, reward, trained, problem, method, shape = build(
        spec, dim, hidden, K, subset, batch
    )
    M = subset.select(K, torch.Generator().manual_seed(0)).numel()
    x = torch.randn(batch, *shape)
    t = torch.full((batch,), 0.5)
    xm = torch.randn(M * batch, *shape)
    tm = torch.rand(M * batch)
    cond = None if problem.conditions is None else torch.arange(batch) % 10

    cv_method = AdjointMatching(replace(method.config, control_variate="antithetic"), problem)

    def iteration(m=method):
        out = m.loss(trained, batch_size=batch, generator=torch.Generator().manual_seed(1))
        out.loss.backward()
        trained.zero_grad(set_to_none=True)

    def sampling():
        sample(
            trained,
            batch,
            shape,
            cond=cond,
            schedule=problem.schedule,
            num_steps=K,
            diffusion=MemorylessDiffusion(problem.schedule),
            generator=torch.Generator().manual_seed(1),
        )

    def rollout_forwards():  # K forwards of the fine-tuned model, no graph
        with torch.no_grad():
            for _ in range(K):
                model(x, t)

    def adjoint_vjps():  # K base forward+VJP pairs
        for _ in range(K):
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(base(xg, t), xg, grad_outputs=torch.ones_like(xg))

    def cv_forwards():  # v_theta and v_base at B states, K times: the control variate's pass
        with torch.no_grad():
            for _ in range(K):
                model(x, t) - base(x, t)

    def regression():
        model(xm, tm).square().sum().backward()
        trained.zero_grad(set_to_none=True)

    def reward_grad():
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(reward(xg).sum(), xg)

    # the increments alone, on one trajectory: g at both points vs the reusing form
    traj = simulate(
        model,
        torch.randn(batch, *shape, generator=torch.Generator().manual_seed(2)),
        schedule=problem.schedule,
        times=uniform_grid(K),
        diffusion=MemorylessDiffusion(problem.schedule),
        generator=torch.Generator().manual_seed(3),
        keep_velocities=True,
    )
    with torch.no_grad():
        base_v = [base(traj.states[j], traj.times[j].expand(batch)) for j in range(K)]
    common = dict(reward=reward, reward_scale=1.0, schedule=problem.schedule, trajectory=traj)
    stepper = EulerMaruyama()

    def eager():
        estimate = adjoint_estimate(model, base, **common)
        antithetic_corrections(estimate, traj, schedule=problem.schedule, stepper=stepper)

    def reusing():
        make = AntitheticCorrections(model, base, stepper=stepper, **common)
        for j in range(K, 0, -1):
            make(j, base_v[j] if j < K else None)

    s = interleaved(
        {
            "iteration": iteration,
            "cv_iteration": lambda: iteration(cv_method),
            "sampling": sampling,
            "rollout_forwards": rollout_forwards,
            "adjoint_vjps": adjoint_vjps,
            "regression": regression,
            "reward_grad": reward_grad,
            "cv_forwards": cv_forwards,
            "eager": eager,
            "reusing": reusing,
        },
        rounds,
    )

    def floor(r):
        return r["rollout_forwards"] + r["adjoint_vjps"] + r["regression"] + r["reward_grad"]

    med = {k: statistics.median(v) for k, v in s.items()}
    return {
        "K": K,
        "M": M,
        "rounds": rounds,
        "sampling_s": med["sampling"],
        "floor_s": statistics.median(
            [floor({k: v[r] for k, v in s.items()}) for r in range(rounds)]
        ),
        "iteration_s": med["iteration"],
        "iteration_over_sampling": paired(lambda r: r["iteration"] / r["sampling"], s),
        "floor_over_sampling": paired(lambda r: floor(r) / r["sampling"], s),
        "iteration_over_floor": paired(lambda r: r["iteration"] / floor(r), s),
        "cv_over_plain": paired(lambda r: r["cv_iteration"] / r["iteration"], s),
        "cv_extra_over_floor": paired(
            lambda r: (r["cv_iteration"] - r["iteration"]) / r["cv_forwards"], s
        ),
        "cv_floor_s": med["cv_forwards"],
        "corrections_both_s": med["eager"],
        "corrections_reusing_s": med["reusing"],
        "corrections_both_over_reusing": paired(lambda r: r["eager"] / r["reusing"], s),
    }


def peak_memory_child(spec, dim, hidden, batch, K, part="iteration") -> dict:
    # The paper's subset: 10 random steps of the first 75 % plus the last 10, M = 20 at every K,
    # so the regression's graph is the same size and only the stored states grow with K.
    *_, model, _, method, shape = build(spec, dim, hidden, K, StepSubset("paper"), batch)
    numel = torch.Size(shape).numel()
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    def iteration():
        g = torch.Generator().manual_seed(1)
        if part == "collect":  # the rollout and the adjoint alone, without the regression
            method.collect(model, batch_size=batch, generator=g)
            return
        out = method.loss(model, batch_size=batch, generator=g)
        out.loss.backward()

    iteration()  # warm-up: allocator pools and lazy initialisation
    model.zero_grad(set_to_none=True)
    gc.collect()
    base, peak, done = rss(), [0], threading.Event()

    def watch():  # the process's current RSS, sampled every millisecond during the iteration
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    th = threading.Thread(target=watch)
    th.start()
    iteration()
    done.set()
    th.join()
    stored = 4 * (K + 1) * batch * numel * 4  # states, noises, adjoints, base velocities (fp32)
    return {"K": K, "peak_mib": (max(peak[0], rss()) - base) / 2**20, "stored_mib": stored / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", choices=["mlp", "digits"], default="mlp")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=None, help="default 256 (mlp), 40 (digits)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--memory-steps", type=int, nargs="+", default=[10, 40, 100, 200])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--memory-part",
        choices=["iteration", "collect"],
        default="iteration",
        help="measure the whole iteration, or the rollout and adjoint alone",
    )
    args = ap.parse_args()
    if args.batch is None:
        args.batch = 256 if args.model == "mlp" else 40
    torch.set_num_threads(1)
    if args.child is not None:
        child = peak_memory_child(
            args.model, args.dim, args.hidden, args.batch, args.child, args.memory_part
        )
        print(json.dumps(child))
        return

    if args.model == "mlp":
        print(f"MLP velocity d={args.dim}, hidden={args.hidden}, batch={args.batch}, 1 thread, CPU")
    else:
        print(f"digits UNet2DModel (16, 32), class-conditional, batch={args.batch}, 1 thread, CPU")
    r = time_ratios(args.model, args.dim, args.hidden, args.batch, args.steps, args.rounds)
    print(
        f"\n[time] K={r['K']} steps, loss on M={r['M']} of them; every figure timed in each of "
        f"{r['rounds']} interleaved rounds,\n       ratios per round: median (min-max over rounds)"
    )

    def ratio(key: str) -> str:
        med, lo, hi = r[key]
        return f"{med:.2f}x ({lo:.2f}-{hi:.2f})"

    print(f"  sampling (K steps)       {r['sampling_s'] * 1e3:8.1f} ms   1.00x")
    print(
        f"  pass-count floor         {r['floor_s'] * 1e3:8.1f} ms   {ratio('floor_over_sampling')} sampling"
    )
    print(
        f"  one AM iteration         {r['iteration_s'] * 1e3:8.1f} ms   {ratio('iteration_over_sampling')} sampling"
    )
    print(f"  iteration / floor        {ratio('iteration_over_floor')}   (target <= 1.25x)")
    print("\n[control variate] the same iteration with control_variate='antithetic'")
    print(f"  iteration / plain iteration          {ratio('cv_over_plain')}")
    print(
        f"  extra / its floor                    {ratio('cv_extra_over_floor')}   "
        f"(floor: K forwards of v_theta and v_base at B states, {r['cv_floor_s'] * 1e3:.1f} ms; "
        "g at both points: 2x)"
    )
    print(
        f"  increments alone: g at both points {r['corrections_both_s'] * 1e3:8.1f} ms, reusing "
        f"{r['corrections_reusing_s'] * 1e3:.1f} ms ({ratio('corrections_both_over_reusing')})"
    )

    print(
        "\n[memory] peak RSS growth during one iteration over the warmed-up process (fresh process per K),"
    )
    print("         loss on the paper's 20 steps at every K")
    print(
        "     K   peak MiB   stored trajectory+adjoint MiB   growth since previous K: peak / stored"
    )
    prev = None
    for K in args.memory_steps:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(K),
            "--model",
            args.model,
            "--memory-part",
            args.memory_part,
            "--dim",
            str(args.dim),
            "--hidden",
            str(args.hidden),
            "--batch",
            str(args.batch),
        ]
        row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        growth = ""
        if prev is not None:
            d_peak, d_stored = (
                row["peak_mib"] - prev["peak_mib"],
                row["stored_mib"] - prev["stored_mib"],
            )
            growth = f"{d_peak:7.1f} / {d_stored:5.1f} MiB"
        print(f"  {K:4d}   {row['peak_mib']:8.1f}   {row['stored_mib']:28.1f}   {growth}")
        prev = row


if __name__ == "__main__":
    main()
