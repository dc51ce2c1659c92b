"""How much of the 1-D error is the network's, per time weighting (docs/findings.md).

Run: ``python benchmarks/capacity_1d.py [--weightings uniform adjoint drift] [--noise 0 3]
[--time-features 4 16] [--iterations 1000] [--lr 1e-3]``.

The default grid's network and optimiser (``v_base + MLP``, hidden 256, depth 3, 4 time
features; AdamW lr 1e-3 with cosine decay, 1000 iterations, batch 256, K = 40 memoryless
Euler-Maruyama rollouts of the current model) regress the *exact* optimal control ``u*`` instead
of the Adjoint Matching target: no discretisation bias, no target noise (``--noise s`` adds
Gaussian noise of ``s`` times the mean |u*| to see the effect of noise alone). The loss is the
Adjoint Matching loss with the chosen time weighting (:data:`am.loss.WEIGHTINGS`). The fitted
model is sampled with 200 steps (ODE and memoryless SDE, 20 000 samples; W1 to exact target
samples, whose own floor is about 0.011).

What it shows: with a shared network the weighting decides where the approximation error goes.
The ODE integrates velocity errors at every t; the ``adjoint`` weighting (``1 / sigma^2``) leaves
the early-time velocity nearly unconstrained and the ODE far from the target even with exact,
noiseless targets.
"""

from __future__ import annotations

import argparse
import math

import torch
from _optimal import w1_to_target_1d

from am.diffusion import MemorylessDiffusion
from am.loss import WEIGHTINGS
from am.models import ResidualVelocity, TimeMLP
from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule
from am.sde import control_coefficient, simulate, uniform_grid


def fit(
    weighting: str,
    noise: float,
    *,
    time_features: int = 4,
    iterations: int = 1000,
    lr: float = 1e-3,
    K: int = 40,
) -> tuple[float, float]:
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    sched = gt.schedule
    torch.manual_seed(0)
    net = TimeMLP(1, 256, 3, time_features, zero_init=True)
    model = ResidualVelocity(gt.velocity, net)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    decay = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / iterations))
    )
    times = uniform_grid(K)
    g = torch.Generator().manual_seed(0)
    for _ in range(iterations):
        with torch.no_grad():
            traj = simulate(
                model,
                torch.randn(256, 1, generator=g),
                schedule=sched,
                times=times,
                diffusion=MemorylessDiffusion(sched),
                generator=g,
            )
            x = traj.states[:K]  # [K, B, 1]
            t = times[:K, None].expand(x.shape[:2]).reshape(-1)
            sig = traj.sigmas[:, None, None]
            c = control_coefficient(sched(times[:K, None, None]), sig)
            flat = x.reshape(-1, 1)
            ustar = c * (gt.target_velocity(flat, t) - gt.velocity(flat, t)).reshape(x.shape)
            ustar = ustar + noise * ustar.abs().mean() * torch.randn(ustar.shape, generator=g)
        u = c * net(flat, t).reshape(x.shape)
        loss = (WEIGHTINGS[weighting](sig) * (u - ustar) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    return w1_to_target_1d(gt, model)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--weightings", nargs="*", default=["uniform", "adjoint", "drift"], choices=list(WEIGHTINGS)
    )
    ap.add_argument("--noise", nargs="*", type=float, default=[0.0])
    ap.add_argument("--time-features", nargs="*", type=int, default=[4])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{args.iterations} iterations, lr {args.lr:g}")
    print("| weighting | time features | target noise | W1 ODE | W1 memoryless SDE |")
    print("| --- | --- | --- | --- | --- |")
    for w in args.weightings:
        for tf in args.time_features:
            for s in args.noise:
                ode, sde = fit(w, s, time_features=tf, iterations=args.iterations, lr=args.lr)
                print(f"| {w} | {tf} | {s:g} x mean abs u* | {ode:.4f} | {sde:.4f} |", flush=True)


if __name__ == "__main__":
    main()
