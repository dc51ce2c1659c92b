"""Differentiable rollouts: backpropagation through the sampler, for the baselines that need it.

Adjoint Matching never differentiates through a rollout (:func:`am.sde.simulate` runs without a
graph). DRaFT, DRaFT-LV, the discrete adjoint method and GRPO's log-likelihoods do; they share
:func:`differentiable_rollout`, which replays the same steppers as :func:`am.sde.simulate` (so a
rollout with the same generator state gives the same path) while keeping the autograd graph on
the last ``grad_steps`` steps, optionally with gradient checkpointing per step (memory
independent of ``K`` at the price of one extra forward per step).

With ``base`` given it also accumulates the control cost of the path: the KL divergence between
the fine-tuned and the base Gaussian transitions of each step,

    C = sum_k |m_ft(X_k) - m_base(X_k)|^2 / (2 s_k^2)          (:func:`transition_kl`)

(``m``: the stepper's mean, ``s_k``: its noise scale). For Euler-Maruyama ``m_ft - m_base =
h sigma_k u_k`` and ``s_k^2 = sigma_k^2 h``, so ``C = sum_k h |u_k|^2 / 2`` with ``u_k = c_k (v_ft -
v_base)``: the paper's Eq. 7 on the grid; the same formula is the exact path KL for the DDPM
step. With ``-lambda r(X_K)`` it is the SOC objective the discrete adjoint method minimises.

:func:`rollout_velocity` is the one place where a method's rollouts get their condition and,
optionally, classifier-free guidance (the ``rollout_guidance`` of every method whose rollouts
are samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _checkpoint

from am.conditions import Condition, bind_velocity
from am.diffusion import Diffusion
from am.models.guidance import GuidedVelocity
from am.schedules import Schedule
from am.sde import EulerMaruyama, Stepper, Velocity, _check

__all__ = [
    "Rollout",
    "differentiable_rollout",
    "rollout_velocity",
    "GUIDANCE_NEEDS",
    "transition_mean",
    "transition_kl",
]


GUIDANCE_NEEDS = (
    "rollout_guidance needs a conditional problem with a null_condition "
    "(the 'no condition' of classifier-free guidance, e.g. torch.tensor([num_classes]))"
)


def rollout_velocity(
    velocity: Velocity, cond: Condition, *, guidance: float = 1.0, null_condition: Condition = None
) -> Velocity:
    """``velocity`` as a rollout samples it: ``(x [N, *shape], t [N]) -> [N, *shape]`` with the
    batch's ``cond`` bound (:func:`am.conditions.bind_velocity`) and, for ``guidance != 1``,
    classifier-free guided, ``v(x, t, null) + w (v(x, t, c) - v(x, t, null))``
    (:class:`am.models.GuidedVelocity`; ``null_condition``: the "no condition" as one row).
    ``guidance = 1`` returns the bound velocity itself (no unconditional half is computed)."""
    if guidance == 1:
        return bind_velocity(velocity, cond)
    if cond is None or null_condition is None:
        raise ValueError(GUIDANCE_NEEDS)
    return bind_velocity(GuidedVelocity(velocity, guidance, null_condition), cond)


def transition_mean(stepper: Stepper, x: Tensor, v: Tensor, *, sv, sv_next, sigma) -> Tensor:
    """Mean ``[B, *shape]`` of the Gaussian step ``X_k -> X_{k+1}`` (the step with zero noise)."""
    return stepper.step(x, v, sv=sv, sv_next=sv_next, sigma=sigma, noise=torch.zeros_like(x))


def transition_kl(mean_a: Tensor, mean_b: Tensor, scale: Tensor) -> Tensor:
    """``KL(N(mean_a, s^2 I) || N(mean_b, s^2 I)) = |mean_a - mean_b|^2 / (2 s^2)``: ``[B]``.
    Needs ``scale > 0`` (a deterministic step has no finite KL)."""
    if torch.any(scale <= 0):
        raise ValueError("transition_kl needs a stochastic step (noise scale > 0)")
    return (mean_a - mean_b).flatten(1).pow(2).sum(-1) / (2 * scale**2)


@dataclass(frozen=True)
class Rollout:
    """``final [B, *shape]``: ``X_K`` with the graph of the differentiable steps;
    ``control_cost [B]``: ``sum_k h_k |u_k|^2 / 2`` over all steps (zeros without ``base``; only
    the differentiable steps carry gradient); ``grad_steps``: how many last steps are
    differentiable."""

    final: Tensor
    control_cost: Tensor
    grad_steps: int


def differentiable_rollout(
    model: Velocity,
    x0: Tensor,
    *,
    schedule: Schedule,
    times: Tensor,
    diffusion: Diffusion,
    stepper: Stepper | None = None,
    generator: torch.Generator | None = None,
    grad_steps: int | None = None,
    base: Velocity | None = None,
    checkpoint: bool = False,
) -> Rollout:
    """Simulate ``model`` from ``x0 [B, *shape]`` along ``times [K+1]`` keeping the graph of the
    last ``grad_steps`` steps (``None``: all ``K``; DRaFT-K uses ``K``, the discrete adjoint all).

    The noise of every step is drawn from ``generator`` in the same order as
    :func:`am.sde.simulate`. ``checkpoint=True`` recomputes each differentiable step in the
    backward pass instead of storing its activations.
    """
    stepper = stepper or EulerMaruyama()
    times = times.to(dtype=x0.dtype, device=x0.device)
    _check(x0, times)
    K = times.numel() - 1
    grad_steps = K if grad_steps is None else grad_steps
    if not 0 <= grad_steps <= K:
        raise ValueError(f"grad_steps must be in [0, {K}], got {grad_steps}")
    sigmas = diffusion.on_grid(times).to(x0.dtype)
    batch = x0.shape[0]
    x = x0
    cost = x0.new_zeros(batch)

    def one_step(x: Tensor, k: int, noise: Tensor) -> tuple[Tensor, Tensor]:
        sv, sv_next = schedule(times[k]), schedule(times[k + 1])
        t = times[k].expand(batch)
        v = model(x, t)
        kw = dict(sv=sv, sv_next=sv_next, sigma=sigmas[k])
        mean = transition_mean(stepper, x, v, **kw)
        scale = stepper.noise_scale(sv, sv_next, sigmas[k])
        step_cost = x.new_zeros(batch)
        if base is not None:
            step_cost = transition_kl(mean, transition_mean(stepper, x, base(x, t), **kw), scale)
        return mean + scale * noise, step_cost

    for k in range(K):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        if k < K - grad_steps:
            with torch.no_grad():
                x, c = one_step(x, k, noise)
        elif checkpoint:
            x, c = _checkpoint(one_step, x, k, noise, use_reentrant=False)
        else:
            x, c = one_step(x, k, noise)
        cost = cost + c
    return Rollout(final=x, control_cost=cost, grad_steps=grad_steps)
