"""Adjoint Matching (Domingo-Enrich, Drozdzal, Karrer, Chen; ICLR 2025, arXiv 2409.08861).

Objective: the memoryless SOC problem ``min_u E[ int |u|^2/2 dt - lambda r(X_1) ]`` (the paper's Eqs. 7-8) whose
solution samples ``p_base exp(lambda r)`` (Eq. 18), solved by regressing the control on the lean
adjoint (Section 4): each iteration simulates the current model with the memoryless SDE, runs the lean
adjoint backwards through the frozen base (one VJP per step), and regresses
``u_theta(X_k) = c_k (v_theta - v_base)`` on ``-sigma_k a_{k+o}`` on a subset of steps.

``control_variate="antithetic"`` subtracts from the adjoint an exactly zero-mean martingale built
from the model's own control (:mod:`am.control_variate`): same fixed point, less noise.

``adjoint="full"`` swaps in the full adjoint with the ``u`` terms (basic Adjoint Matching, whose
gradient equals the continuous adjoint method's, Eqs. 21-22). ``diffusion`` other than
``"memoryless"`` is the Theorem 1 ablation: a valid SOC problem whose solution is biased.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from am.adjoint import full_adjoint, lean_adjoint, terminal_adjoint
from am.conditions import Condition, bind_velocity, take
from am.control_variate import AntitheticCorrections
from am.diffusion import make_diffusion
from am.loss import WEIGHTINGS, QuantileDrop, adjoint_matching_loss
from am.methods.adjoint_matching_config import CONTROL_VARIATES, TARGETS, AdjointMatchingConfig
from am.methods.base import FineTuningProblem, LossOutput, Method, model_dtype_device
from am.models.guidance import GuidedVelocity
from am.sde import control_coefficient, make_stepper, simulate, warped_grid

__all__ = [
    "AdjointMatchingConfig",
    "AdjointMatching",
    "CONTROL_VARIATES",
    "TARGETS",
    "StoredRollouts",
]


@dataclass(frozen=True)
class StoredRollouts:
    """What the regression needs from one batch of rollouts, on the ``M`` chosen steps:
    ``states``, ``base_velocity`` (``v_base(X_k)``, from the adjoint pass) and ``target``
    (``-sigma_k a_k``) ``[M, B, *shape]``; ``times``, ``sigmas``, ``weights`` ``[M]``; the rows'
    ``cond`` and the rollouts' ``rewards [B]`` (for the log). Its footprint is three
    ``[M, B, *shape]`` tensors. ``control_scale [M]``: ``u = control_scale (v_theta - v_base)``
    for the discrete target (``None``: the continuous ``c_k``); ``null_prompt``: this batch's
    regression runs on the null condition (prompt dropout)."""

    states: Tensor
    base_velocity: Tensor
    target: Tensor
    times: Tensor
    sigmas: Tensor
    weights: Tensor
    cond: Condition
    rewards: Tensor
    control_scale: Tensor | None = None
    null_prompt: bool = False

    @property
    def batch_size(self) -> int:
        return self.states.shape[1]

    def rows(self, index: Tensor) -> StoredRollouts:
        """The stored rollouts ``index`` (a minibatch; every step of each)."""
        return StoredRollouts(
            states=self.states[:, index],
            base_velocity=self.base_velocity[:, index],
            target=self.target[:, index],
            times=self.times,
            sigmas=self.sigmas,
            weights=self.weights,
            cond=take(self.cond, index),
            rewards=self.rewards[index],
            control_scale=self.control_scale,
            null_prompt=self.null_prompt,
        )

    def state_dict(self) -> dict:
        """Plain tensors for a checkpoint (``torch.load(weights_only=True)`` reads them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class AdjointMatching(Method):
    """Adjoint Matching with the lean adjoint (or the full adjoint, ``adjoint="full"``)."""

    name = "adjoint_matching"
    config_class = AdjointMatchingConfig
    no_reuse_reason = None  # regresses onto stored targets: collect() once, regress() often
    stored_class = StoredRollouts

    @classmethod
    def recommended_config(cls):
        """The config's defaults are the paper's; this adds the antithetic control variate (same
        fixed point, a less noisy target) and the warped grid ``grid_warp=0.5`` (the K steps
        spent mid-way: in 1-D the K = 40 grid's fixed point moves to the K = 80 uniform grid's;
        in 2-D no change measured), both measured in ``docs/implementation.md``."""
        return cls.config_class(control_variate="antithetic", grid_warp=0.5)

    def __init__(self, config: AdjointMatchingConfig, problem: FineTuningProblem):
        super().__init__(config, problem)
        self.stepper = make_stepper(config.stepper)
        self.diffusion = make_diffusion(config.diffusion, problem.schedule)
        if config.rollout_guidance != 1 and (
            problem.conditions is None or problem.null_condition is None
        ):
            raise ValueError(
                "rollout_guidance needs a conditional problem with a null_condition "
                "(the 'no condition' of classifier-free guidance, e.g. torch.tensor([num_classes]))"
            )
        if config.prompt_dropout > 0 and problem.null_condition is None:
            raise ValueError("prompt_dropout needs a conditional problem with a null_condition")
        if config.target == "discrete":  # it divides by each step's noise: refuse a silent step
            times = warped_grid(config.num_steps, config.grid_warp, dtype=torch.float64)
            noise = self.stepper.on_grid(
                problem.schedule, times, self.diffusion.on_grid(times).double()
            ).noise
            if not torch.all(noise > 0):
                k = int(torch.nonzero(~(noise > 0))[0])
                raise ValueError(
                    f"target 'discrete' needs noise on every step; step {k} of the "
                    f"{config.num_steps}-step grid has none (a clean last step: end the schedule "
                    "noisy, final_alpha_bar 'half')"
                )
        self.drop = (
            None
            if config.drop_quantile is None
            else QuantileDrop(config.drop_quantile, config.drop_ema_decay)
        )

    def end_step(self, parallel) -> None:
        if self.drop is not None:
            self.drop.commit(parallel)

    def state_dict(self) -> dict:
        return {} if self.drop is None else {"drop": self.drop.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.drop is not None and "drop" in state:
            self.drop.load_state_dict(state["drop"])

    def loss(self, model: nn.Module, *, batch_size: int, generator: torch.Generator) -> LossOutput:
        return self.regress(model, self.collect(model, batch_size=batch_size, generator=generator))

    def collect(
        self, model: nn.Module, *, batch_size: int, generator: torch.Generator
    ) -> StoredRollouts:
        """Steps 1-2 of an iteration: rollouts of the current model and their lean adjoints,
        reduced to what the regression needs on the chosen steps (:class:`StoredRollouts`).
        A stored target is that of the control that simulated the path: regressing on it
        after the model has moved (``TrainConfig.updates_per_rollout > 1``) changes the
        optimisation's path, not the fixed point the iteration converges to."""
        cfg, prob = self.config, self.problem
        dtype, device = model_dtype_device(model)
        times = warped_grid(cfg.num_steps, cfg.grid_warp, dtype=dtype, device=device)
        # The batch's conditions bound to the model, base and reward (themselves if none).
        c = prob.condition(model, batch_size=batch_size, generator=generator)
        x0 = torch.randn(
            (batch_size, *prob.sample_shape), generator=generator, dtype=dtype, device=device
        )
        guided = cfg.rollout_guidance != 1
        rollout_model = c.model
        if guided:  # CFG in the rollouts only; the adjoint and the regression stay unguided
            w, null = cfg.rollout_guidance, prob.null_condition
            rollout_model = bind_velocity(GuidedVelocity(model, w, null), c.cond)

        # 1. Rollout of the current model, frozen (no graph).
        traj = simulate(
            rollout_model,
            x0,
            schedule=prob.schedule,
            times=times,
            diffusion=self.diffusion,
            stepper=self.stepper,
            generator=generator,
            # the control variate reuses them, unless they are the guided ones
            keep_velocities=cfg.control_variate == "antithetic" and not guided,
        )
        # 2. Adjoint backwards from a_K = -lambda grad r(X_K), down to the first step used.
        terminal, rewards = terminal_adjoint(c.reward, traj.final, prob.reward_scale)
        steps = cfg.steps.select(cfg.num_steps, generator).to(device)
        first = int(steps.min())
        kwargs = dict(
            schedule=prob.schedule, stepper=self.stepper, terminal=terminal, first_step=first
        )
        if cfg.control_variate == "antithetic":  # made during the adjoint pass (its v_base)
            kwargs["corrections"] = AntitheticCorrections(
                c.model,
                c.base,
                reward=c.reward,
                reward_scale=prob.reward_scale,
                schedule=prob.schedule,
                stepper=self.stepper,
                trajectory=traj,
                first_step=first,
            )
        if cfg.adjoint == "lean":
            adj = lean_adjoint(c.base, traj, **kwargs)
        else:
            adj = full_adjoint(c.base, c.model, traj, **kwargs)

        x = traj.states[steps]  # [M, B, *shape]
        sigma = traj.sigmas[steps]
        scale, control_scale = sigma, None
        if cfg.target == "discrete":  # the step's own noise s_k and mean coefficient c_v
            coefs = self.stepper.on_grid(prob.schedule, times, traj.sigmas)
            scale = coefs.noise[steps]
            control_scale = coefs.v[steps] / scale
        target = -scale.reshape(-1, *([1] * (x.dim() - 1))) * adj.target_adjoint(
            steps, self.stepper.target_adjoint_offset
        )
        weights = WEIGHTINGS[cfg.weighting](sigma)
        if cfg.grid_warp != 0:  # h_k of the integral of the loss; 1 on the uniform grid
            h = times[1:] - times[:-1]
            weights = weights * h[steps] / h.mean()
        return StoredRollouts(
            states=x,
            base_velocity=adj.base_velocity[steps],
            target=target,
            times=times[steps],
            sigmas=sigma,
            weights=weights,
            cond=c.cond,
            rewards=rewards.detach(),
            control_scale=control_scale,
            # drawn last, and only with dropout on: other runs keep their random stream
            null_prompt=cfg.prompt_dropout > 0
            and bool(
                torch.rand((), generator=generator, device=generator.device) < cfg.prompt_dropout
            ),
        )

    def regress(self, model: nn.Module, stored: StoredRollouts) -> LossOutput:
        """Step 3: the regression of ``u_theta = c (v_theta - v_base)`` onto the stored targets,
        one batched forward of the fine-tuned model over the stored steps and rows."""
        cfg, prob = self.config, self.problem
        x, t = stored.states, stored.times
        B = x.shape[1]
        cond, v_base = stored.cond, stored.base_velocity
        if stored.null_prompt:  # both models on the null condition, the targets unchanged
            cond = prob.null_condition
            with torch.no_grad():
                v_base = bind_velocity(prob.base, cond)(
                    x.flatten(0, 1), t.repeat_interleave(B)
                ).reshape(x.shape)
        bound = bind_velocity(model, cond)
        v_ft = bound(x.flatten(0, 1), t.repeat_interleave(B)).reshape(x.shape)
        sv = prob.schedule(t).broadcast_to(x)
        if stored.control_scale is None:
            coefficient = control_coefficient(sv, stored.sigmas.reshape(sv.t.shape))
        else:
            coefficient = stored.control_scale.reshape(sv.t.shape)
        control = coefficient * (v_ft - v_base)
        clip = None if cfg.clip_multiplier is None else cfg.clip_multiplier * prob.reward_scale**2
        out = adjoint_matching_loss(
            control, target=stored.target, weights=stored.weights, clip=clip, drop=self.drop
        )
        metrics = {
            "loss": float(out.loss.detach()),
            "reward": float(stored.rewards.mean()),
            "clipped_fraction": out.clipped_fraction,
            **({} if self.drop is None else {"dropped_fraction": out.dropped_fraction}),
            "control_norm": float(control.detach().flatten(2).norm(dim=-1).mean()),
        }
        return LossOutput(loss=out.loss, metrics=metrics)
