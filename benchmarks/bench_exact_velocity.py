"""What the exact Gaussian-mixture velocity costs, and what its per-call form changes.

Run: ``python benchmarks/bench_exact_velocity.py`` (about 2 minutes on 2 cores; ``--help``).

Every exact-ground-truth run evaluates the base velocity
(:class:`am.problems.gaussian_mixture.GaussianMixtureVelocity`) at every rollout step, every
lean-adjoint step (a VJP) and in the control variate, at batch 256, where a call costs its
dozen-odd tensor ops' dispatch, not their arithmetic. The rotations into and out of each
component's eigenbasis are one matmul each on precomputed ``[D, N*D]`` / ``[N*D, D]`` matrices;
the earlier form (kept below as ``EinsumVelocity``, the reference) used an ``einsum`` per
rotation. For the three problems of the default reproduction this times, interleaved in every
round (:func:`_timing.interleaved`), ratios within a round:

* the velocity's forward at batch 256 (rollouts) and 5000 (evaluation), and its VJP at 256
  (the lean adjoint), in both forms;
* one Adjoint Matching iteration as the workflow runs it (``amcli.run.build_run`` of the run
  config the default grid writes: ``ResidualVelocity``, K = 40, the antithetic control variate),
  with either form as the base.

It checks first that both forms give the same velocity (to float32 rounding).
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
from pathlib import Path

import torch
import yaml
from _timing import interleaved, paired

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # workflow.scripts.grid

from am.problems.gaussian_mixture import GaussianMixtureVelocity  # noqa: E402
from am.schedules import ScheduleValues  # noqa: E402
from amcli.config import parse_run_config  # noqa: E402
from amcli.run import build_run  # noqa: E402
from workflow.scripts.grid import run_configs  # noqa: E402

PROBLEMS = ("gmm1d_linear", "gmm2d_overlap_quadratic", "gmm10d_overlap_quadratic")


class EinsumVelocity(GaussianMixtureVelocity):
    """The earlier form: one ``einsum`` per rotation (same mathematics, same buffers)."""

    def _components(self, x, t):
        sv = self.schedule(t)
        fields = (sv.t, sv.alpha, sv.beta, sv.d_alpha, sv.d_beta)
        sv = ScheduleValues(*(v.reshape(-1, 1, 1) for v in fields))
        U, lam = self.eigvecs.to(x), self.eigvals.to(x)
        d = sv.alpha**2 * lam + sv.beta**2
        z = torch.einsum("bd,nde->bne", x, U) - sv.alpha * self.means_rot.to(x)
        log_norm = -0.5 * ((z**2 / d).sum(-1) + torch.log(d).sum(-1))
        logits = self.log_weights.to(x) + log_norm - 0.5 * self.dim * math.log(2 * math.pi)
        return logits, z, d, sv

    def _rotate_back(self, w, coef):
        return torch.einsum("bne,nde->bd", w[..., None] * coef, self.eigvecs.to(coef))


def as_einsum(v: GaussianMixtureVelocity) -> EinsumVelocity:
    old = copy.copy(v)  # shares the buffers
    old.__class__ = EinsumVelocity
    return old


def default_run_config(problem: str):
    """The default grid's Adjoint Matching run on ``problem`` (config/config.yaml)."""
    with open(ROOT / "config" / "config.yaml") as f:
        config = yaml.safe_load(f)
    for path, data in run_configs(config).items():
        if path.endswith(f"{problem}/lam1/adjoint_matching/seed0"):
            return parse_run_config(data)
    raise KeyError(problem)


def velocity_calls(v, dim: int, batch: int, vjp: bool):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, generator=gen)
    t = torch.rand(batch, generator=gen)
    a = torch.randn(batch, dim, generator=gen)

    def call():
        if vjp:
            xx = x.detach().requires_grad_(True)
            torch.autograd.grad((v(xx, t) * a).sum(), xx)
        else:
            with torch.no_grad():
                v(x, t)

    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds")
    ap.add_argument("--calls", type=int, default=50, help="velocity calls per timed figure")
    ap.add_argument("--iterations", type=int, default=3, help="AM iterations per timed figure")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread")
    print(f"{args.rounds} interleaved rounds; ratio einsum / matmul form: median (min-max)\n")
    print(f"{'problem':26s} {'figure':22s} {'matmul':>10s} {'einsum':>10s}   ratio")
    for name in PROBLEMS:
        cfg = default_run_config(name)
        _, model, trainer = build_run(cfg)
        new = model.base
        old = as_einsum(new)
        x = torch.randn(1000, new.dim, generator=torch.Generator().manual_seed(1))
        t = torch.rand(1000, generator=torch.Generator().manual_seed(2))
        err = (old(x, t) - new(x, t)).abs().max().item()
        scale = new(x, t).abs().max().item()
        if err > 1e-5 * scale:
            raise SystemExit(f"{name}: the two forms differ by {err:.3g} (scale {scale:.3g})")
        fns = {}
        for label, batch, vjp in (
            ("forward, B=256", 256, False),
            ("VJP, B=256", 256, True),
            ("forward, B=5000", 5000, False),
        ):
            for form, v in (("matmul", new), ("einsum", old)):
                call = velocity_calls(v, new.dim, batch, vjp)
                fns[(label, form)] = lambda call=call: [call() for _ in range(args.calls)]
        trainers = {"matmul": trainer}
        _, _, trainers["einsum"] = build_run(cfg)
        trainers["einsum"].model.base.__class__ = EinsumVelocity  # base of model and problem
        for form, tr in trainers.items():
            fns[("AM iteration", form)] = lambda tr=tr: [tr.step() for _ in range(args.iterations)]
        s = interleaved({f"{k[0]}|{k[1]}": f for k, f in fns.items()}, args.rounds)
        for label in ("forward, B=256", "VJP, B=256", "forward, B=5000", "AM iteration"):
            per = args.iterations if label == "AM iteration" else args.calls
            med = {
                f: sorted(s[f"{label}|{f}"])[args.rounds // 2] / per for f in ("matmul", "einsum")
            }
            ratio = paired(lambda r, lab=label: r[f"{lab}|einsum"] / r[f"{lab}|matmul"], s)
            print(
                f"{name:26s} {label:22s} {med['matmul'] * 1e3:8.3f}ms {med['einsum'] * 1e3:8.3f}ms"
                f"   {ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
