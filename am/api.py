"""The small high-level API: wrap a base velocity model and a reward, fine-tune, sample.

model = am.finetune(base, reward, schedule=schedule, sample_shape=(1,), reward_scale=1.0)
x = am.sample(model, 10_000, (1,), schedule=schedule, num_steps=100,
              diffusion=am.make_diffusion("ode", schedule))
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from am.methods import AdjointMatching, AdjointMatchingConfig, FineTuningProblem
from am.models import ResidualVelocity, TimeMLP, finetunable_copy
from am.schedules import Schedule
from am.train import TrainConfig, Trainer

__all__ = ["finetune"]


def finetune(
    base: nn.Module,
    reward,
    *,
    schedule: Schedule,
    sample_shape: tuple[int, ...],
    reward_scale: float,
    model: nn.Module | None = None,
    method: AdjointMatchingConfig | None = None,
    train: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> nn.Module:
    """Fine-tune ``base`` towards ``p_base(x) exp(reward_scale * reward(x))`` with Adjoint Matching.

    ``base``: velocity model ``(x [B, *sample_shape], t [B]) -> [B, *sample_shape]`` (frozen here);
    ``model``: the network to train; default a trainable copy of ``base``, or for a base without
    parameters (an exact velocity) ``base + zero-initialised MLP`` (vector samples only).
    ``run_dir`` enables checkpoints, resume and a metrics log. Returns the fine-tuned velocity
    model (EMA weights if ``train.ema_decay`` is set): sample it with any diffusion, ODE included.
    """
    base.requires_grad_(False)
    if model is None:
        if any(True for _ in base.parameters()):
            model = finetunable_copy(base)
        elif len(sample_shape) == 1:
            model = ResidualVelocity(base, TimeMLP(sample_shape[0], zero_init=True))
        else:
            raise ValueError("pass `model` for a parameter-free base with non-vector samples")
    problem = FineTuningProblem(
        base=base,
        reward=reward,
        schedule=schedule,
        sample_shape=tuple(sample_shape),
        reward_scale=reward_scale,
    )
    trainer = Trainer(
        AdjointMatching(method or AdjointMatchingConfig(), problem),
        model,
        train or TrainConfig(),
        run_dir,
    )
    trainer.fit(progress=progress)
    trainer.load_ema_into_model()
    return model
