"""The configuration of Adjoint Matching (:class:`am.methods.adjoint_matching.AdjointMatching`),
validated on construction: every option, its default (the paper's) and what it does."""

from __future__ import annotations

from dataclasses import dataclass, field

from am.diffusion import Diffusion
from am.fields import FieldError, check_choice, check_int, check_number, checking
from am.loss import WEIGHTINGS, QuantileDrop, StepSubset
from am.sde import make_stepper, warped_grid

__all__ = ["AdjointMatchingConfig", "CONTROL_VARIATES", "TARGETS"]

CONTROL_VARIATES = ("none", "antithetic")
TARGETS = ("continuous", "discrete")


@dataclass(frozen=True)
class AdjointMatchingConfig:
    """``num_steps``: K of the rollout grid; ``stepper``: ``euler_maruyama`` | ``ddpm``;
    ``diffusion``: ``"memoryless"``, a constant ``> 0`` or an :class:`am.diffusion.Diffusion`
    (as :func:`am.sample` takes it); ``adjoint``: ``lean`` | ``full``;
    ``steps``: which steps enter the loss; ``clip_multiplier``: per-term clip at
    ``clip_multiplier * lambda^2`` (paper: 1.6; ``None`` = off); ``weighting``: ``uniform`` |
    ``drift`` | ``adjoint``; ``control_variate``: ``none`` (the paper) | ``antithetic``
    (:mod:`am.control_variate`); ``grid_warp``: the rollout grid, :func:`am.sde.warped_grid`
    (0 = uniform, the paper; ``> 0`` spends the K steps mid-way). On a non-uniform grid each
    loss term is weighted by ``h_k / mean(h)`` so that the loss stays an estimate of the time
    integral (the weight moves no fixed point). ``rollout_guidance``: classifier-free guidance
    weight ``w`` of the fine-tuned model in the rollouts only, as the authors' Stable Diffusion
    code does (``w = 7.5`` there): the lean adjoint and the regression stay unguided and
    conditional; ``1`` = no guidance, the setting the paper's theory covers. With ``w != 1`` the
    rollouts do not follow the model being regressed, so the fixed point is no longer the
    tilt of ``p_base``; needs a conditional problem with a ``null_condition``.
    ``drop_quantile``: drop the loss terms above a running quantile of the batch's residual
    norms, as the authors' Stable Diffusion code does (0.9 there; ``None`` = off, the paper);
    ``drop_ema_decay``: that running average's decay (:class:`am.loss.QuantileDrop`). Dropping
    moves the fixed point (the largest residuals are the tilt's rare, high-reward paths).
    ``target``: ``continuous`` regresses ``u = c_k (v_theta - v_base)`` (the continuous-time
    control, :func:`am.sde.control_coefficient`) on ``-sigma(t_k) a_{k+o}``; ``discrete``
    regresses the step's mean difference over its noise scale, ``(m_theta - m_base) / s_k``
    (``m`` the mean of ``X_{k+1}``, ``s_k`` its standard deviation), on ``-s_k a_{k+o}``: the
    authors' Stable Diffusion code (``src/trainers/am_trainer.py``, with the DDPM step's
    ``o = 0``). The two agree to first order in the step (docs/text_to_image.md measures how far
    apart their fixed points are at K = 50); with ``o = 0`` neither is the discrete problem's
    exact optimum, which pairs step ``k`` with ``a_{k+1}`` (docs/maths.md, section 5). Needs
    noise on every step.
    ``prompt_dropout``: with this probability per batch of rollouts (one draw), the regression
    runs both the fine-tuned model and the base on the ``null_condition`` instead of the
    rollouts' conditions, against the same (conditional) targets, as the authors' code does
    (0.2 in its config; 0 in the run behind its README's table); rollouts and adjoints stay
    conditional. It trains the unconditional branch that guided rollouts use."""

    num_steps: int = 40
    stepper: str = "euler_maruyama"
    diffusion: str | float | Diffusion = "memoryless"
    adjoint: str = "lean"
    steps: StepSubset = field(default_factory=StepSubset)
    clip_multiplier: float | None = None
    weighting: str = "uniform"
    control_variate: str = "none"
    grid_warp: float = 0.0
    rollout_guidance: float = 1.0
    drop_quantile: float | None = None
    drop_ema_decay: float = 0.9
    target: str = "continuous"
    prompt_dropout: float = 0.0

    def __post_init__(self):
        check_int("num_steps", self.num_steps)
        with checking("stepper"):
            make_stepper(self.stepper)  # raises, naming valid steppers
        if isinstance(self.diffusion, Diffusion):  # an object, as am.sample takes it
            if self.stepper == "ddpm" and not self.diffusion.memoryless:
                raise FieldError(
                    "stepper", "stepper 'ddpm' is memoryless by construction: use a memoryless "
                    f"diffusion, got {self.diffusion!r}",
                )  # fmt: skip
        elif self.diffusion != "memoryless":
            if isinstance(self.diffusion, bool) or not isinstance(self.diffusion, (int, float)):
                raise FieldError(
                    "diffusion",
                    "diffusion must be 'memoryless', a number > 0 or an am.diffusion.Diffusion, "
                    f"got {self.diffusion!r}",
                )
            if not self.diffusion > 0:
                raise FieldError(
                    "diffusion",
                    "diffusion must be > 0 to fine-tune (sigma = 0 has no control), "
                    f"got {self.diffusion}",
                )
            if self.stepper == "ddpm":
                raise FieldError(
                    "stepper",
                    "stepper 'ddpm' is memoryless by construction: use diffusion 'memoryless'",
                )
        check_choice("adjoint", self.adjoint, ("lean", "full"))
        check_choice("weighting", self.weighting, sorted(WEIGHTINGS))
        check_choice("control_variate", self.control_variate, CONTROL_VARIATES)
        if self.clip_multiplier is not None and not self.clip_multiplier > 0:
            raise FieldError(
                "clip_multiplier",
                f"clip_multiplier must be > 0 or null, got {self.clip_multiplier!r}",
            )
        with checking("grid_warp", "grid_warp: "):
            warped_grid(1, self.grid_warp)  # the grid's own check, one place
        check_number("rollout_guidance", self.rollout_guidance, minimum=0.0)
        if self.drop_quantile is not None:
            with checking("drop_quantile"):  # its own checks, one place
                QuantileDrop(self.drop_quantile, self.drop_ema_decay)
        check_choice("target", self.target, TARGETS)
        p = self.prompt_dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise FieldError(
                "prompt_dropout", f"prompt_dropout must be a number in [0, 1], got {p!r}"
            )
        if not isinstance(self.steps, StepSubset):
            raise FieldError(
                "steps", f"steps must be a StepSubset, got {type(self.steps).__name__}"
            )
