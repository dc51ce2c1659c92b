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
compute, what it cannot represent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from am.schedules import DiscreteVPSchedule, Schedule, ScheduleValues

__all__ = [
    "ShiftedFlowMatchingSchedule",
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


def _config(scheduler: Any) -> Mapping[str, Any]:
    if isinstance(scheduler, Mapping):
        return scheduler
    config = dict(getattr(scheduler, "config", {}))
    config.setdefault("_class_name", type(scheduler).__name__)
    return config


def schedule_from_scheduler(scheduler: Any, *, mu: float | None = None) -> Schedule:
    """Our schedule for a diffusers scheduler (an instance or its ``scheduler_config.json``
    dict). ``mu``: for schedulers with ``use_dynamic_shifting`` (Flux), the resolution-dependent
    shift ``exp(mu)``. Raises ValueError naming the unsupported key."""
    config = _config(scheduler)
    name = config.get("_class_name", "?")
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
        return DiscreteVPSchedule(
            beta_start=float(config.get("beta_start", 0.0001)),
            beta_end=float(config.get("beta_end", 0.02)),
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
            beta_schedule=beta_schedule,
        )
    raise ValueError(
        f"unknown scheduler {name!r}; supported: {', '.join(VP_SCHEDULERS + FLOW_SCHEDULERS)}"
    )


def prediction_type(scheduler: Any) -> str:
    """``epsilon`` / ``v_prediction`` for VP schedulers, ``flow`` for flow matching."""
    config = _config(scheduler)
    if config.get("_class_name") in FLOW_SCHEDULERS:
        return "flow"
    return config.get("prediction_type", "epsilon")
