"""The numbers of docs/text_to_image.md's table "The authors' run, difference by difference"
(last column), computed from SD 1.5's scheduler and the 50-step grid; a number that drifts from
the table fails here. tests/t2i/test_authors_sd15.py checks each option against their code."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from am.diffusion import make_diffusion  # noqa: E402
from am.sde import DDPMStep, control_coefficient, uniform_grid  # noqa: E402
from am.t2i.schedules import schedule_from_scheduler  # noqa: E402
from am.t2i.testing import tiny_sd15  # noqa: E402
from am.train import TrainConfig  # noqa: E402

K = 50
AUTHORS = dict(betas=(0.002, 0.009), final_alpha_bar="half", num_steps=K)


@pytest.fixture(scope="module")
def schedules():
    scheduler = tiny_sd15(seed=0).scheduler  # SD 1.5's betas, 0.00085-0.012 scaled linear
    return {
        "ours": step_numbers(schedule_from_scheduler(scheduler)),
        "theirs": step_numbers(schedule_from_scheduler(scheduler, **AUTHORS)),
    }


def step_numbers(schedule) -> dict:
    """Per step: alpha-bar, the noise s_k, the continuous target's mean shift per unit of
    -E[a_k] (c_v sigma_k / c_k), and the discrete target's over it (s_k^2 / that): with a
    perfect regressor, what step k learns under either target depends on the schedule only."""
    times = uniform_grid(K, dtype=torch.float64)
    sigma = make_diffusion("memoryless", schedule).on_grid(times).double()
    coefs = DDPMStep().on_grid(schedule, times, sigma)
    c = control_coefficient(schedule(times[:-1]), sigma)
    shift = coefs.v * sigma / c
    return {
        "abar": schedule(times).alpha ** 2,
        "noise": coefs.noise,
        "shift": shift,
        "ratio": coefs.noise**2 / shift,
    }


def test_items_1_2_alpha_bar_and_the_noisy_last_step(schedules):
    ours, theirs = schedules["ours"], schedules["theirs"]
    # (1) alpha-bar at timestep 499 (t = 0.5) and 999 (t = 0)
    assert f"{theirs['abar'][25]:.3f} {ours['abar'][25]:.3f}" == "0.189 0.278"
    assert f"{theirs['abar'][0]:.4f} {ours['abar'][0]:.4f}" == "0.0061 0.0047"
    # (2) their last step ends at alpha-bar 0.980 with noise 0.101; ours at 1 without noise,
    # where the continuous target moves the mean by 0.018 x E[a] (theirs: s^2 = 0.010 x E[a])
    assert f"{theirs['abar'][-1]:.3f} {ours['abar'][-1]:.3f}" == "0.980 1.000"
    assert f"{theirs['noise'][-1]:.3f}" == "0.101" and ours["noise"][-1] == 0
    assert f"{ours['shift'][-1]:.3f} {theirs['noise'][-1] ** 2:.3f}" == "0.018 0.010"


def test_item_3_discrete_over_continuous_shift(schedules):
    for name, expected in (("theirs", "0.91 0.93 0.49"), ("ours", "0.89 0.92 0.47")):
        ratio = schedules[name]["ratio"]
        assert " ".join(f"{ratio[k]:.2f}" for k in (0, 25, 48)) == expected, name


def test_items_5_7_8_step_chances_warmup_and_unseen_prompts():
    # (5) 2 random steps of the first 30 and 2 of the last 20 (test_authors_sd15.py samples it)
    assert f"{2 / 30:.3f} {2 / 20:.3f} {4 / K:.3f}" == "0.067 0.100 0.080"
    # (7) the first 20 updates of the library's warm-up, in full-rate updates
    config = TrainConfig(lr=1.0, lr_schedule="constant", warmup_steps=20)
    rates = [config.learning_rate(i) for i in range(20)]
    assert rates[0] == 0 and f"{sum(rates):.1f}" == "9.5"
    # (8) N draws with replacement from N = 9798 prompts leave (1 - 1/N)^N of them unseen
    n = 9798
    assert f"{100 * (1 - 1 / n) ** n:.1f}" == "36.8"
