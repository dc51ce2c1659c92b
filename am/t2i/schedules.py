"""diffusers schedulers as this library's schedules (noise at t = 0, data at t = 1).

* Stable Diffusion 1.5-style schedulers (DDPM, DDIM, PNDM, Euler, DPM-Solver ...) share one
  discrete beta schedule: :class:`am.schedules.DiscreteVPSchedule`, whose
  ``timestep_to_time`` / ``time_to_timestep`` is the one place diffusers' timesteps
  (``T - 1`` = noise) meet our time.
* Flow-matching schedulers (``FlowMatchEulerDiscreteScheduler``: SD3, SD3.5, Flux) interpolate
  ``x = (1 - sigma) data + sigma noise`` and sample on a *shifted* sigma grid
  ``sigma = shift s / (1 + (shift - 1) s)`` for ``s`` uniform in ``(1, 0]``.
  :class:`ShiftedFlowMatchingSchedule` is that path in the time ``u = 1 - s``: a uniform grid in
  ``u`` is the scheduler's grid up to its last step (diffusers spaces ``s`` from 1 to
  ``sigma_min`` = 0.003 for SD3 over ``K`` points and appends 0), so every method's rollouts spend their
  steps where the model was meant to be sampled, and the memoryless noise follows from the path
  as for any schedule.

:func:`schedule_from_scheduler` reads a scheduler (or its config dict) and refuses, before any
compute, what it cannot represent; its ``betas`` and ``final_alpha_bar`` swap in a fine-tuning
schedule as the Adjoint Matching authors' Stable Diffusion 1.5 code does (:class:`FineTuningVPSchedule`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from am.schedules import DiscreteVPSchedule, Schedule, ScheduleValues

__all__ = [
    "ShiftedFlowMatchingSchedule",
    "FineTuningVPSchedule",
    "FINAL_ALPHA_BARS",
    "schedule_from_scheduler",
    "VP_SCHEDULERS",
    "FLOW_SCHEDULERS",
    "PREDICTION_TYPES",
]

# schedulers that sample the same discrete VP (DDPM) process of their beta schedule
VP_SCHEDULERS = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "LMSDiscreteScheduler",
)
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler",)
PREDICTION_TYPES = ("epsilon", "v_prediction")
FINAL_ALPHA_BARS = ("clean", "half")


class ShiftedFlowMatchingSchedule(Schedule):
    """``alpha = 1 - sigma(u)``, ``beta = sigma(u)`` with ``sigma(u) = shift s / (1 + (shift - 1) s)``,
    ``s = 1 - u``. ``shift = 1`` is :class:`am.schedules.FlowMatchingSchedule`; SD3 uses 3."""

    name = "flow_matching_shifted"

    def __init__(self, shift: float = 1.0):
        if not (isinstance(shift, (int, float)) and shift > 0 and math.isfinite(shift)):
            raise ValueError(f"shift must be a positive number, got {shift!r}")
        self.shift = float(shift)

    def sigma(self, u: Tensor) -> Tensor:
        s = 1 - u
        return self.shift * s / (1 + (self.shift - 1) * s)

    def values(self, t: Tensor) -> ScheduleValues:
        s = 1 - t
        sigma = self.shift * s / (1 + (self.shift - 1) * s)
        d_sigma = -self.shift / (1 + (self.shift - 1) * s) ** 2  # d sigma / d u
        return ScheduleValues(t=t, alpha=1 - sigma, beta=sigma, d_alpha=-d_sigma, d_beta=d_sigma)

    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        """The inverse: ``u`` with ``sigma(u) = sigma``."""
        s = sigma / (self.shift - (self.shift - 1) * sigma)
        return 1 - s

    def __repr__(self) -> str:
        return f"ShiftedFlowMatchingSchedule(shift={self.shift})"


class FineTuningVPSchedule(DiscreteVPSchedule):
    """A :class:`am.schedules.DiscreteVPSchedule` whose last step of a ``num_steps`` grid ends
    noisy: ``abar(1) = (1 + abar(1 - 1/K)) / 2`` (the noise variance ``1 - abar`` halves on the
    last step) instead of the clean ``abar(1) = 1``. This is the Adjoint Matching authors'
    Stable Diffusion 1.5 fine-tuning scheduler (microsoft/soc-fine-tuning-sd,
    ``src/trainers/soc_trainer.py``: ``final_alpha_cumprod = (1 + alphas_cumprod[timesteps[-1]])
    / 2`` with trailing timesteps, whose last is ``T / K - 1``). Their code gives no reason;
    what it changes: the last step carries noise (a clean one has none, so a control there only
    shifts the mean, and the discrete regression target, which divides by the step's noise, is
    undefined). ``log abar`` runs linearly in ``t`` from ``t = 1 - 1/K`` to 1, so the grid's last
    two knots are exactly theirs; ``T / K`` must be an integer (the grid's last knot is then
    one of the scheduler's timesteps)."""

    name = "vp_discrete_fine_tuning"

    def __init__(self, *, num_steps: int, **kwargs):
        super().__init__(**kwargs)
        T = self.T
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        if T % num_steps:
            raise ValueError(
                f"final_alpha_bar 'half' needs num_steps dividing {T} (the last step starts on "
                f"a timestep of the scheduler), got {num_steps}"
            )
        self.num_steps = num_steps
        last = T - T // num_steps  # knot index of t = 1 - 1/K (timestep T/K - 1)
        knots = self._knots_log_abar
        end = math.log((1 + math.exp(float(knots[last]))) / 2)
        frac = torch.arange(T - last + 1, dtype=torch.float64) / (T - last)
        self._knots_log_abar = torch.cat([knots[:last], knots[last] + frac * (end - knots[last])])

    def __repr__(self) -> str:
        return f"FineTuningVPSchedule(num_steps={self.num_steps})"


def _config(scheduler: Any) -> Mapping[str, Any]:
    if isinstance(scheduler, Mapping):
        return scheduler
    config = dict(getattr(scheduler, "config", {}))
    config.setdefault("_class_name", type(scheduler).__name__)
    return config


def schedule_from_scheduler(
    scheduler: Any,
    *,
    mu: float | None = None,
    betas: tuple[float, float] | None = None,
    final_alpha_bar: str = "clean",
    num_steps: int | None = None,
) -> Schedule:
    """Our schedule for a diffusers scheduler (an instance or its ``scheduler_config.json``
    dict). ``mu``: for schedulers with ``use_dynamic_shifting`` (Flux), the resolution-dependent
    shift ``exp(mu)``. Raises ValueError naming the unsupported key.

    VP schedulers only: ``betas = (start, end)`` replaces the scheduler's ``beta_start,
    beta_end`` (its ``beta_schedule`` kept; the network still sees the same timesteps), and
    ``final_alpha_bar = "half"`` ends the ``num_steps`` grid noisy (:class:`FineTuningVPSchedule`);
    the Adjoint Matching authors fine-tune SD 1.5 with ``(0.002, 0.009)`` and ``"half"``."""
    config = _config(scheduler)
    name = config.get("_class_name", "?")
    if final_alpha_bar not in FINAL_ALPHA_BARS:
        raise ValueError(
            f"final_alpha_bar must be one of {FINAL_ALPHA_BARS}, got {final_alpha_bar!r}"
        )
    if (betas is not None or final_alpha_bar != "clean") and name not in VP_SCHEDULERS:
        raise ValueError(f"scheduler {name}: betas and final_alpha_bar apply to VP schedulers only")
    if betas is not None:
        if len(betas) != 2 or not 0 < betas[0] < betas[1] < 1:
            raise ValueError(f"betas must be [start, end] with 0 < start < end < 1, got {betas!r}")
        config = {**config, "beta_start": float(betas[0]), "beta_end": float(betas[1])}
    if name in FLOW_SCHEDULERS:
        for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                    "shift_terminal", "invert_sigmas"):  # fmt: skip
            if config.get(key):
                raise ValueError(f"scheduler {name}: {key}={config[key]!r} is not supported")
        if config.get("use_dynamic_shifting"):
            if config.get("time_shift_type", "exponential") != "exponential":
                raise ValueError(f"scheduler {name}: time_shift_type must be 'exponential'")
            if mu is None:
                raise ValueError(f"scheduler {name} uses dynamic shifting: pass mu")
            return ShiftedFlowMatchingSchedule(math.exp(mu))
        return ShiftedFlowMatchingSchedule(float(config.get("shift", 1.0)))
    if name in VP_SCHEDULERS:
        prediction = config.get("prediction_type", "epsilon")
        if prediction not in PREDICTION_TYPES:
            raise ValueError(
                f"scheduler {name}: prediction_type {prediction!r} is not supported; "
                f"one of {PREDICTION_TYPES}"
            )
        if config.get("rescale_betas_zero_snr"):
            raise ValueError(
                f"scheduler {name}: rescale_betas_zero_snr=True makes the noisiest step pure "
                "noise (alpha = 0), which DiscreteVPSchedule cannot represent"
            )
        if config.get("trained_betas") is not None:
            raise ValueError(f"scheduler {name}: trained_betas is not supported")
        beta_schedule = config.get("beta_schedule", "linear")
        if beta_schedule not in ("linear", "scaled_linear"):
            raise ValueError(
                f"scheduler {name}: beta_schedule {beta_schedule!r} is not supported; "
                "'linear' or 'scaled_linear'"
            )
        kwargs = dict(
            beta_start=float(config.get("beta_start", 0.0001)),
            beta_end=float(config.get("beta_end", 0.02)),
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
            beta_schedule=beta_schedule,
        )
        if final_alpha_bar == "half":
            return FineTuningVPSchedule(num_steps=num_steps, **kwargs)
        return DiscreteVPSchedule(**kwargs)
    raise ValueError(
        f"unknown scheduler {name!r}; supported: {', '.join(VP_SCHEDULERS + FLOW_SCHEDULERS)}"
    )


def prediction_type(scheduler: Any) -> str:
    """``epsilon`` / ``v_prediction`` for VP schedulers, ``flow`` for flow matching."""
    config = _config(scheduler)
    if config.get("_class_name") in FLOW_SCHEDULERS:
        return "flow"
    return config.get("prediction_type", "epsilon")
