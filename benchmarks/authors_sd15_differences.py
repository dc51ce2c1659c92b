"""What each of the Adjoint Matching authors' SD 1.5 settings changes, on the tiny SD 1.5 pipeline's
scheduler (SD 1.5's betas) and the 50-step grid: the numbers of docs/text_to_image.md's table
"The authors' run, difference by difference". CPU, about 5 s:

    python benchmarks/authors_sd15_differences.py

Per-step fixed points (item 3): with a perfect regressor, step k of the continuous target moves
the step's mean by ``-(c_v sigma_k / c_k) E[a_k | X_k]`` (``c_k`` the continuous control
coefficient, ``sigma_k`` the memoryless diffusion, ``c_v`` the step's velocity coefficient), the
discrete target by ``-s_k^2 E[a_k | X_k]`` (``s_k`` the step's noise): their ratio depends on the
schedule only.
"""

from __future__ import annotations

import math

import torch

from am.diffusion import make_diffusion
from am.loss import StepSubset
from am.sde import DDPMStep, control_coefficient, uniform_grid
from am.t2i.schedules import schedule_from_scheduler
from am.t2i.testing import tiny_sd15

K = 50
AUTHORS = dict(betas=(0.002, 0.009), final_alpha_bar="half", num_steps=K)


def step_numbers(schedule) -> dict:
    """Per step: the noise s_k, and discrete / continuous fixed-point ratio."""
    times = uniform_grid(K, dtype=torch.float64)
    sigma = make_diffusion("memoryless", schedule).on_grid(times).double()
    coefs = DDPMStep().on_grid(schedule, times, sigma)
    c = control_coefficient(schedule(times[:-1]), sigma)
    ratio = coefs.noise**2 * c / (coefs.v * sigma)  # discrete shift / continuous shift
    shift = coefs.v * sigma / c  # the continuous target's mean shift per unit of -E[a_k]
    return {
        "noise": coefs.noise,
        "ratio": ratio,
        "abar": schedule(times).alpha ** 2,
        "shift": shift,
    }


def main() -> None:
    torch.set_num_threads(1)
    scheduler = tiny_sd15().scheduler
    ours = step_numbers(schedule_from_scheduler(scheduler))
    theirs = step_numbers(schedule_from_scheduler(scheduler, **AUTHORS))
    for name, sched in (("ours", ours), ("theirs", theirs)):
        print(f"{name}: alpha-bar at timestep 499 (t = 0.5): {float(sched['abar'][25]):.3f}; "
              f"at t = 0: {float(sched['abar'][0]):.4f}; at t = 1: {float(sched['abar'][-1]):.4f}")  # fmt: skip
        print(f"  last step's noise s_49 = {float(sched['noise'][-1]):.4f}, the continuous "
              f"target's mean shift there {float(sched['shift'][-1]):.4f} x E[a]; "
              "discrete / continuous fixed point at k = 0, 25, 48, 49: "
              + ", ".join(f"{float(sched['ratio'][k]):.2f}" for k in (0, 25, 48, 49)))  # fmt: skip
    g, n = torch.Generator().manual_seed(0), 4000
    for subset in (StepSubset(mode="uniform", num_steps=4),
                   StepSubset(mode="split", num_steps=4, early_fraction=0.6)):  # fmt: skip
        counts = torch.bincount(torch.cat([subset.select(K, g) for _ in range(n)]), minlength=K)
        p = counts.double() / n
        print(f"steps {subset.mode}: P(step in loss) first 30 steps {float(p[:30].mean()):.3f}, "
              f"last 20 {float(p[30:].mean()):.3f}")  # fmt: skip
    warm = sum(min(i / 20, 1.0) for i in range(20))
    print(f"warm-up: the first 20 updates sum to {warm:.1f} full-lr updates (the first is 0)")
    N = 9798  # ImageReward's ReFL prompts, duplicates dropped
    print(f"prompts with replacement: {100 * (1 - 1 / N) ** N:.1f} % unseen after N draws "
          f"(epochs: 0 %); 100k rollouts = {100_000 / N:.1f} epochs of {N}")  # fmt: skip
    print(f"budget: 800 x 125 = {800 * 125} rollouts (ours before: 400 x 125 = {400 * 125})")
    assert math.isfinite(float(theirs["ratio"][-1]))


if __name__ == "__main__":
    main()
