"""Replay a diverged 1-D run from its last checkpoint and show what blew up (docs/findings.md).

Run: ``python benchmarks/runaway_1d.py RUN_DIR [--until N] [--path-at N]`` on a run whose
``status.json`` says it diverged (e.g. the ablation row "..., seed 1" of
``benchmarks/ablation.py``). Iterations are replayed exactly (each iteration's randomness is a
function of the seed and the iteration number). Printed per replayed iteration: the loss, the
gradient norm, the largest |target| and |control| and the largest squared residual, with the
step and path it sits on. With ``--path-at N``: that iteration's rollout is simulated again, and
the path of its largest term is printed (its states along the grid) with the learned
``dv = v_theta - v_base`` on an x-grid at the last step: a learned drift that pushes outward
where the target has no mass lets a path run off, and its term then dominates the batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

import am.methods.adjoint_matching as amm
from am.sde import simulate, warped_grid
from am.train import NonFiniteError, iteration_generator
from amcli.config import parse_run_config
from amcli.run import build_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--until", type=int, default=None, help="default: the diverged iteration")
    ap.add_argument("--path-at", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run_dir = Path(args.run_dir)
    cfg = parse_run_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
    status = yaml.safe_load((run_dir / "status.json").read_text())
    until = args.until or status.get("diverged_at") or cfg.train.iterations
    _, model, trainer = build_run(cfg)
    trainer.run_dir = run_dir
    if not trainer.load_checkpoint():
        raise SystemExit(f"no checkpoint in {run_dir}")
    # the trainer must not write into the run: replay only
    trainer.run_dir = None
    seen = {}
    loss_fn = amm.adjoint_matching_loss

    def recording(control, *, target, weights, clip):
        r2 = ((control.detach() - target) ** 2).flatten(2).sum(-1)
        step, path = divmod(int(r2.argmax()), r2.shape[1])
        seen.update(
            target=float(target.abs().max()),
            control=float(control.detach().abs().max()),
            r2=float(r2.max()),
            at=(step, path),
        )
        return loss_fn(control, target=target, weights=weights, clip=clip)

    amm.adjoint_matching_loss = recording
    print(f"from checkpoint iteration {trainer.iteration} to {until}")
    print("  iteration       loss   grad norm   max|target|   max|control|   max term (step, path)")
    while trainer.iteration < until:
        if args.path_at is not None and trainer.iteration + 1 == args.path_at:
            show_path(cfg, trainer, model, args.path_at)
        try:
            rec = trainer.step()
        except NonFiniteError:
            print(f"  {trainer.iteration + 1:9d}   non-finite   {seen}")
            break
        print(
            f"  {rec['iteration']:9d}  {rec['loss']:9.3g}   {rec['grad_norm']:9.3g}   "
            f"{seen['target']:11.3g}   {seen['control']:12.3g}   {seen['r2']:.3g} {seen['at']}"
        )
    amm.adjoint_matching_loss = loss_fn


@torch.no_grad()
def show_path(cfg, trainer, model, iteration: int) -> None:
    """Re-simulate iteration ``iteration``'s rollout (same generator) and print its worst path."""
    method, mc = trainer.method, cfg.method_config
    g = iteration_generator(cfg.train.seed, iteration - 1)
    times = warped_grid(mc.num_steps, mc.grid_warp)
    x0 = torch.randn((cfg.train.batch_size, 1), generator=g)
    traj = simulate(
        model,
        x0,
        schedule=method.problem.schedule,
        times=times,
        diffusion=method.diffusion,
        stepper=method.stepper,
        generator=g,
    )
    worst = int(traj.final[:, 0].abs().argmax())
    stride = max(1, mc.num_steps // 10)
    states = ", ".join(f"{float(v):.2f}" for v in traj.states[::stride, worst, 0])
    print(f"  iteration {iteration}: path {worst}, states every {stride} steps: {states}")
    t = torch.full((9,), float(times[-2]))
    xg = torch.linspace(-8.0, 8.0, 9)[:, None]
    dv = (model(xg, t) - method.problem.base(xg, t))[:, 0]
    cells = ", ".join(
        f"x={float(a):.0f}: {float(b):.1f}" for a, b in zip(xg[:, 0], dv, strict=True)
    )
    print(f"  learned dv at the last step (t = {float(times[-2]):.3f}): {cells}")


if __name__ == "__main__":
    main()
