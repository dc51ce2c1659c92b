"""Where in time a fine-tuned 1-D model's velocity is wrong, next to the discrete fixed point.

Run: ``python benchmarks/velocity_error_1d.py RUN_DIR [--paths 100000]`` on a finished
``gmm1d_linear`` run (e.g. ``runs/gmm1d_linear/lam1/adjoint_matching/seed0``). Prints two tables:

1. For the trained model, at several t, on ``X_t`` drawn from the exact *tilted* marginal: the
   exact ``dv* = v*(x, t) - v_base(x, t)`` (mean, and its regression slope on x) against the
   learned ``dv = v_theta - v_base``, and the rms error. The ODE sampler integrates these errors
   over all t; the memoryless SDE forgets the early ones.
2. The fixed point of the run's discrete regression: with the exact optimal velocity ``v*`` plugged
   into the K-step rollout, the regression target ``-sigma_k a_{k+o}`` converted to velocity units
   (``/ c_k``), mean and slope at the first steps, against ``dv*``. Where they differ, even a
   perfect regressor learns the discrete problem's control, not the continuous one.
"""

from __future__ import annotations

import argparse

import torch
import yaml
from _optimal import optimal_rollout

from am.sde import control_coefficient, make_stepper, warped_grid
from amcli.config import parse_run_config
from amcli.run import load_model


def slope(x: torch.Tensor, y: torch.Tensor) -> float:
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--paths", type=int, default=100_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = parse_run_config(yaml.safe_load(open(f"{args.run_dir}/config.yaml")))
    gt, model = load_model(cfg, args.run_dir)
    if gt.dim != 1:
        raise SystemExit(f"{args.run_dir} is a {gt.dim}-D run; this diagnostic is for 1-D runs")
    sched, base, vstar = gt.schedule, gt.velocity, gt.target_velocity
    g = torch.Generator().manual_seed(0)
    n = args.paths

    print(f"1. learned vs exact dv on the tilted marginal ({args.run_dir})")
    print("     t   rms err   dv* mean   dv mean   dv* slope   dv slope")
    x1 = gt.target.sample(n, generator=g)
    x0 = torch.randn(x1.shape, generator=g)
    with torch.no_grad():
        for t in (0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
            s = sched(torch.tensor(t))
            x = s.alpha * x1 + s.beta * x0
            tt = torch.full((n,), t)
            dvs = (vstar(x, tt) - base(x, tt))[:, 0]
            dv = (model(x, tt) - base(x, tt))[:, 0]
            print(
                f"  {t:5.3f}  {float((dv - dvs).pow(2).mean().sqrt()):7.3f}  {float(dvs.mean()):9.3f}"
                f"  {float(dv.mean()):8.3f}  {slope(x[:, 0], dvs):10.3f}  {slope(x[:, 0], dv):9.3f}"
            )

    mc = cfg.method_config
    stepper = make_stepper(getattr(mc, "stepper", "euler_maruyama"))
    K = mc.num_steps
    times = warped_grid(K, getattr(mc, "grid_warp", 0.0))
    print(f"\n2. fixed point of the K = {K} {stepper.name} regression (exact v* plugged in)")
    print("   k      t   dv* mean   target mean   dv* slope   target slope")
    traj, adj = optimal_rollout(gt, times, n, generator=g, stepper=stepper)
    with torch.no_grad():
        for k in (0, 1, 2, 4, 8, 16):
            x, tk, sig = traj.states[k], times[k].expand(n), traj.sigmas[k]
            dvs = (vstar(x, tk) - base(x, tk))[:, 0]
            c = control_coefficient(sched(times[k]), sig)
            tgt = (-sig * adj.adjoints[k + stepper.target_adjoint_offset] / c)[:, 0]
            print(
                f"  {k:2d}  {float(times[k]):.3f}  {float(dvs.mean()):9.3f}  {float(tgt.mean()):12.3f}"
                f"  {slope(x[:, 0], dvs):10.3f}  {slope(x[:, 0], tgt):13.3f}"
            )


if __name__ == "__main__":
    main()
