"""A martingale control variate for the lean-adjoint regression target (unbiased, antithetic).

Why. The Adjoint Matching target ``-sigma_k a_{k+1}`` is an unbiased but noisy estimate of the
control: ``a_{k+1}`` depends on every later noise ``eps_k .. eps_{K-1}``. With multimodal data
it is heavy-tailed (README, "Findings"), and the regression needs many paths per step.

What. Let ``g_j(x) ~ E[a_j | X_j = x]`` be any estimate of the adjoint's conditional mean
(:func:`adjoint_estimate` builds one from the fine-tuned model: ``g_j = -u_theta(x, t_j) / sigma_j``,
exact at the optimum, Eq. 16-17 of the paper). Step ``j`` moves ``X_{j+1} = m_j(X_j) + s_j eps_j``
(additive noise: ``s_j`` does not depend on the state). The antithetic increment

    delta_{j+1} = ( g_{j+1}(X_{j+1}) - g_{j+1}(X_{j+1} - 2 s_j eps_j) ) / 2

is odd in ``eps_j`` (the second point is the step with ``-eps_j``), so ``E[delta_{j+1} | X_j] = 0``
exactly, whatever ``g``. The corrected backward recursion

    e_{j+1} = b_{j+1} - delta_{j+1},     b_j = J_j^T e_{j+1},     b_K = a_K

subtracts from ``a_{k+1}`` the increments ``delta_{j+1}`` transported by ``J_{k+1}^T .. J_j^T``;
the Jacobians depend on ``X_{k+1} .. X_j`` only (noise held fixed, additive), so every term has
conditional mean zero given ``X_k`` and ``E[e_{k+1} | X_k] = E[a_{k+1} | X_k]``: the regression's
fixed point is unchanged, only its noise drops (by the part of the martingale ``a`` that ``g``
explains). Cost: one forward of the fine-tuned model and of the base at the ``K`` mirrored states
(no VJP); the VJP count stays one per step.

Measured (``python benchmarks/target_variance.py``, its control-variate columns): with ``g`` from
the exact optimum the paths a step needs for a signal-to-noise ratio of 1 drop about 4x in 1-D
and 3x in 2-D (K = 40).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from am.adjoint import terminal_adjoint
from am.schedules import Schedule
from am.sde import Stepper, Trajectory, Velocity, control_coefficient

__all__ = ["AdjointEstimate", "adjoint_estimate", "antithetic_corrections"]

# g(x [N, *shape], j) -> [N, *shape]: an estimate of E[a_j | X_j = x], for j in 1..K.
AdjointEstimate = Callable[[Tensor, int], Tensor]


def adjoint_estimate(
    model: Velocity,
    base: Velocity,
    *,
    reward,
    reward_scale: float,
    schedule: Schedule,
    trajectory: Trajectory,
) -> AdjointEstimate:
    """``g_j(x) = -u_theta(x, t_j) / sigma_j = -(c_j / sigma_j) (v_theta - v_base)(x, t_j)`` for
    ``j < K`` (the optimum's identity ``u* = -sigma E[a | X]``), ``g_K = -lambda grad r`` (exact).
    A model with a ``difference(x, t)`` method returning ``v_theta - v_base`` (e.g.
    :class:`am.models.ResidualVelocity`) is asked for it directly, sparing a base forward."""
    times, sigmas, K = trajectory.times, trajectory.sigmas, trajectory.num_steps
    difference = getattr(model, "difference", None)
    if difference is None:

        def difference(x: Tensor, t: Tensor) -> Tensor:
            return model(x, t) - base(x, t)

    @torch.no_grad()
    def g(x: Tensor, j: int) -> Tensor:
        if j == K:
            return terminal_adjoint(reward, x, reward_scale)[0]
        t = times[j].expand(x.shape[0])
        coef = control_coefficient(schedule(times[j]), sigmas[j]) / sigmas[j]
        return -coef * difference(x, t)

    return g


@torch.no_grad()
def antithetic_corrections(
    estimate: AdjointEstimate,
    trajectory: Trajectory,
    *,
    schedule: Schedule,
    stepper: Stepper,
    first_step: int = 0,
) -> Tensor:
    """``delta [K+1, B, *shape]``: ``delta[j]`` (``j = first_step + 1 .. K``) as in the module
    docstring; zero elsewhere. Each ``g_j`` is called once on the batch ``[X_j; mirrored X_j]``."""
    states, times, K = trajectory.states, trajectory.times, trajectory.num_steps
    out = torch.zeros_like(states)
    B = states.shape[1]
    for k in range(first_step, K):
        scale = stepper.noise_scale(
            schedule(times[k]), schedule(times[k + 1]), trajectory.sigmas[k]
        )
        x = states[k + 1]
        if not torch.any(scale != 0):
            continue  # a deterministic step carries no noise to remove
        mirrored = x - 2 * scale * trajectory.noises[k]
        both = estimate(torch.cat([x, mirrored]), k + 1)
        out[k + 1] = 0.5 * (both[:B] - both[B:])
    return out
