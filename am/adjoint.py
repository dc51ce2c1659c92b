"""Adjoint states along a simulated trajectory (discrete, exact for the stepper used).

Lean adjoint (the paper's Section 4; docs/maths.md section 5): ``da~/dt = -(grad_x b_base)^T a~``, ``a~(1) = -lambda grad r(X_1)``. Its
discrete form is the vector-Jacobian product of the *frozen base's* step map, noise held fixed:

    a_K = -lambda grad r(X_K),     a_k = J_k^T a_{k+1},   J_k = d step_base(X_k) / d X_k

One VJP per step; each step builds its own small graph (w.r.t. ``X_k`` only) and frees it, so
memory holds the trajectory and the adjoints, never a graph across steps. The base velocity at
each visited state is returned as well so the loss can reuse it (no second base forward).

Full adjoint (the paper's Eq. 20, "basic Adjoint Matching" / continuous adjoint): the VJP of the *controlled*
step map (the fine-tuned model's step) plus the running cost ``h |u|^2 / 2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from am.schedules import Schedule
from am.sde import StepCoefficients, Stepper, Trajectory, Velocity, control_coefficient

__all__ = ["AdjointResult", "terminal_adjoint", "lean_adjoint", "full_adjoint"]


@dataclass(frozen=True)
class AdjointResult:
    """``adjoints [K+1, B, *shape]`` (``adjoints[k] = a_k``; rows below ``first_step`` are zero),
    ``base_velocity [K, B, *shape]`` (``v_base(X_k, t_k)``, rows below ``first_step`` zero),
    ``first_step``: the smallest ``k`` whose VJP was computed; ``corrections [K+1, B, *shape]`` or
    ``None``: the control variate's increments (:mod:`am.control_variate`), already propagated:
    then ``adjoints[k] = J_k^T (adjoints[k+1] - corrections[k+1])``."""

    adjoints: Tensor
    base_velocity: Tensor
    first_step: int
    corrections: Tensor | None = None

    def target_adjoint(self, steps: Tensor, offset: int) -> Tensor:
        """The adjoint the regression at ``steps [M]`` uses, ``[M, B, *shape]``: ``a_{k+1}`` minus
        its own step's correction (``offset = 1``, whose noise ``eps_k`` comes after ``X_k``), or
        ``a_k`` (``offset = 0``). Either way its conditional mean given ``X_k`` is unchanged."""
        a = self.adjoints[steps + offset]
        if self.corrections is not None and offset == 1:
            a = a - self.corrections[steps + 1]
        return a


def terminal_adjoint(reward, x1: Tensor, reward_scale: float) -> tuple[Tensor, Tensor]:
    """``a_K = -lambda grad r(X_K)`` and the rewards ``r(X_K) [B]`` (one forward + backward)."""
    with torch.enable_grad():
        x = x1.detach().requires_grad_(True)
        r = reward(x)
        if r.shape != x.shape[:1]:
            raise ValueError(
                f"reward must return shape [B]={tuple(x.shape[:1])}, got {tuple(r.shape)}"
            )
        (g,) = torch.autograd.grad(r.sum(), x)
    return -reward_scale * g, r.detach()


@dataclass(frozen=True)
class _Step:
    """What a step's VJP needs: index ``k``, the step's coefficients (the noise term is
    constant in ``X_k`` and left out of the map), ``t_k`` expanded to the batch, and ``h``."""

    k: int
    coef: StepCoefficients
    t: Tensor
    h: Tensor


# A step's map for the VJP: x -> (X_{k+1}, extra scalar cost or None, base velocity at x).
StepMap = Callable[[Tensor, _Step], tuple[Tensor, Tensor | None, Tensor]]

# Control-variate increments: all of them up front ``[K+1, B, *shape]``, or made on demand,
# ``(j, v_base(X_j) or None at j = K) -> delta_j [B, *shape]`` (am.control_variate), so that
# they can reuse the base velocity the VJP of step j has just computed.
Corrections = Tensor | Callable[[int, Tensor | None], Tensor]


def _backward(
    step_map: StepMap,
    trajectory: Trajectory,
    schedule: Schedule,
    stepper: Stepper,
    terminal: Tensor,
    first_step: int,
    corrections: Corrections | None = None,
) -> AdjointResult:
    """``a_k = d/dX_k [ <step_map(X_k), a_{k+1} - delta_{k+1}> + extra(X_k) ]`` from
    ``a_K = terminal`` down to ``first_step`` (``delta = corrections``, or none); one small graph
    per step, w.r.t. ``X_k`` only, freed right after."""
    K = trajectory.num_steps
    if not 0 <= first_step <= K:
        raise ValueError(f"first_step must be in [0, {K}], got {first_step}")
    states, times = trajectory.states, trajectory.times
    adjoints = torch.zeros_like(states)
    base_v = torch.zeros_like(trajectory.noises)
    make_delta = None
    if callable(corrections):
        make_delta, corrections = corrections, torch.zeros_like(states)
    elif corrections is not None and corrections.shape != states.shape:
        raise ValueError(
            f"corrections must have the states' shape {tuple(states.shape)}, "
            f"got {tuple(corrections.shape)}"
        )
    adjoints[K] = a = terminal
    # every step's coefficients in one vectorised call (no per-step schedule evaluation)
    coefs = stepper.on_grid(schedule, times, trajectory.sigmas).unbind()
    for k in range(K - 1, first_step - 1, -1):
        if make_delta is not None:  # v_base(X_{k+1}) is the previous VJP's (none at X_K)
            corrections[k + 1] = make_delta(k + 1, base_v[k + 1] if k + 1 < K else None)
        if corrections is not None:
            a = a - corrections[k + 1]
        step = _Step(
            k=k, coef=coefs[k], t=times[k].expand(states.shape[1]), h=times[k + 1] - times[k]
        )
        with torch.enable_grad():
            x = states[k].detach().requires_grad_(True)
            out, extra, v_base = step_map(x, step)
            total = (out * a).sum() if extra is None else (out * a).sum() + extra
            (a,) = torch.autograd.grad(total, x)
        adjoints[k], base_v[k] = a, v_base.detach()
    return AdjointResult(adjoints, base_v, first_step, corrections)


def lean_adjoint(
    base: Velocity,
    trajectory: Trajectory,
    *,
    schedule: Schedule,
    stepper: Stepper,
    terminal: Tensor,
    first_step: int = 0,
    corrections: Corrections | None = None,
) -> AdjointResult:
    """Lean adjoint by exact VJPs of the base step map, from ``a_K = terminal [B, *shape]`` back to
    ``a_{first_step}`` (steps below ``first_step`` are not needed by the loss and are skipped).
    ``corrections``: control-variate increments (:mod:`am.control_variate`): a tensor
    ``[K+1, B, *shape]``, a callable ``(j, v_base(X_j)) -> delta_j`` (made during the pass, reusing
    its base velocities), or ``None``."""

    def base_step(x: Tensor, s: _Step):
        v = base(x, s.t)
        return s.coef.mean(x, v), None, v

    return _backward(base_step, trajectory, schedule, stepper, terminal, first_step, corrections)


def full_adjoint(
    base: Velocity,
    model: Velocity,
    trajectory: Trajectory,
    *,
    schedule: Schedule,
    stepper: Stepper,
    terminal: Tensor,
    first_step: int = 0,
    corrections: Corrections | None = None,
) -> AdjointResult:
    """Full (basic) adjoint: ``a_k = J_k^{ft T} a_{k+1} + h grad_x |u(X_k)|^2 / 2`` where ``J^ft`` is
    the fine-tuned model's step Jacobian and ``u = c (v_ft - v_base)`` (see
    :func:`am.sde.control_coefficient`). Its regression target gives the continuous-adjoint
    gradient (the paper's Eqs. 21-22). Gradients are taken w.r.t. states only, never parameters."""

    times = trajectory.times
    c_u = control_coefficient(schedule(times[:-1]), trajectory.sigmas)  # [K], u = c (v_ft - v_b)

    def controlled_step(x: Tensor, s: _Step):
        v_ft, v_b = model(x, s.t), base(x, s.t)
        u = c_u[s.k] * (v_ft - v_b)
        return s.coef.mean(x, v_ft), 0.5 * s.h * (u**2).sum(), v_b

    return _backward(
        controlled_step, trajectory, schedule, stepper, terminal, first_step, corrections
    )
