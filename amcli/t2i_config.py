"""The text-to-image run config (:class:`T2IConfig`, YAML at the edge), validated before any
weights load: keys and types, the method and its config, the scorers, the prompt files, the
dtype, the sampler and the schedule options (``python -m amcli.t2i check CONFIG`` prints it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from am.train import TrainConfig
from amcli.config import ConfigError, build_dataclass, split_method
from amcli.t2i_checks import read_yaml, require_train

__all__ = [
    "ModelSpec", "LoraSpec", "RewardSpec", "PromptSpec", "SampleSpec", "T2IConfig",
    "parse_t2i_config", "load_config", "schedule_options",
]  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """``path``: a directory saved with ``save_pretrained`` or a Hub id in the local cache;
    ``variant``: read its ``*.<variant>.safetensors`` files (``fp16``); ``dtype`` of the frozen
    weights; image ``height``/``width``; ``mu``: Flux-style dynamic shift (default: from the
    image size); ``distilled_guidance``: Flux-dev's guidance input;
    ``tf32``: TF32 matmuls and convolutions on a GPU (``am.t2i.denoisers.set_tf32``;
    false: full float32);
    ``gradient_checkpointing`` of the denoiser and the VAE decoder. SD 1.5-style schedulers:
    ``betas: [start, end]`` swaps in a fine-tuning beta range (null: the checkpoint's) and
    ``final_alpha_bar: half`` ends the grid noisy instead of ``clean`` (the Adjoint Matching
    authors' SD 1.5 run: ``[0.002, 0.009]`` and ``half``; :mod:`am.t2i.schedules`); both apply to
    fine-tuning and sampling."""

    path: str = ""
    variant: str | None = None
    dtype: str = "float32"
    height: int = 512
    width: int = 512
    mu: float | None = None
    distilled_guidance: float = 3.5
    # recomputes the same activations (tested equal): not part of a run's recorded settings
    gradient_checkpointing: bool = field(default=False, metadata={"recorded": False})
    tf32: bool = False
    betas: tuple[float, float] | None = None
    final_alpha_bar: str = "clean"


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 16
    alpha: float = 16.0
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    dropout: float = 0.0


@dataclass(frozen=True)
class RewardSpec:
    """``terms``: ``{scorer: weight}`` (``am.vision.SCORERS``); ``reward_scale``: lambda;
    ``weights``: ``{scorer: directory}`` where a scorer's files are not in ``$AM_WEIGHTS``."""

    terms: dict = field(default_factory=lambda: {"imagereward": 1.0})
    reward_scale: float = 1.0
    # where the files are; a run records their digests instead (amcli.t2i_settings)
    weights: dict = field(default_factory=dict, metadata={"recorded": False})


@dataclass(frozen=True)
class PromptSpec:
    """Prompt files, one prompt per line: ``train`` (fine-tuning) and ``eval`` (sampling);
    ``order`` of the training prompts: ``uniform`` (with replacement) or ``epochs`` (without
    replacement, a new shuffle each epoch; :class:`am.t2i.prompts.PromptSampler`)."""

    # the training prompts are recorded by content (a digest), the evaluation ones not at all
    train: str = field(default="", metadata={"recorded": False})
    eval: str = field(default="", metadata={"recorded": False})
    order: str = "uniform"


@dataclass(frozen=True)
class SampleSpec:
    """``per_prompt`` images of each eval prompt, ``num_steps``, ``diffusion`` (``ode``,
    ``memoryless``, ``ddim:<eta>`` = Euler-Maruyama with eta times the memoryless noise, not
    DDIM's update, or a constant), ``guidance`` (classifier-free, 1 = off), ``batch_size``,
    ``seed``; ``scheduler``: null (this suite's sampler, with ``diffusion``) or the pipeline's
    own, ``pipe(...)`` itself: ``pipeline``, ``ddim``, ``ddim:<eta>``, ``ddpm`` or
    ``flow_match_euler`` (:mod:`am.t2i.sampling`)."""

    per_prompt: int = 10
    num_steps: int = 40
    diffusion: str = "ode"
    guidance: float = 1.0
    batch_size: int = 8
    seed: int = 0
    scheduler: str | None = None


@dataclass(frozen=True)
class T2IConfig:
    _internal_fields = ("method_config",)

    model: ModelSpec = field(default_factory=ModelSpec)
    lora: LoraSpec | None = field(default_factory=LoraSpec)
    reward: RewardSpec = field(default_factory=RewardSpec)
    prompts: PromptSpec = field(default_factory=PromptSpec)
    method: str = "adjoint_matching"
    method_config: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleSpec = field(default_factory=SampleSpec)
    device: str = "auto"


def parse_t2i_config(data: dict, base_dir: Path | None = None) -> T2IConfig:
    """A validated :class:`T2IConfig`: keys and types, the method and its config, the scorer
    names, the prompt files (relative to ``base_dir``, default the working directory; returned
    absolute), the dtype, and a ``train`` section that sets its budget."""
    from am.t2i.loading import DTYPES
    from am.t2i.prompts import read_prompts
    from am.vision import SCORERS

    name, method_config, rest = split_method(data)
    cfg = build_dataclass(T2IConfig, rest)
    require_train(rest.get("train"))  # after the key check: a typo is named as such
    if not cfg.model.path:
        raise ConfigError("model.path: name a model directory or a Hub id")
    if cfg.model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype: one of {sorted(DTYPES)}, got {cfg.model.dtype!r}")
    unknown = sorted(set(cfg.reward.terms) - set(SCORERS))
    if unknown or not cfg.reward.terms:
        raise ConfigError(f"reward.terms: unknown scorer(s) {unknown}; known: {list(SCORERS)}")
    files = {}
    for key in ("train", "eval"):
        value = getattr(cfg.prompts, key)
        path = Path(value) if base_dir is None or Path(value).is_absolute() else base_dir / value
        if not value or not path.is_file():
            raise ConfigError(f"prompts.{key}: prompt file {value!r} not found ({path.resolve()})")
        try:  # an empty or undecodable file fails here, not after the model has loaded
            read_prompts(path)
        except ValueError as e:
            raise ConfigError(f"prompts.{key}: {e}") from None
        files[key] = str(path.resolve())
    cfg = dataclasses.replace(cfg, prompts=dataclasses.replace(cfg.prompts, **files))
    _diffusion_spec(cfg.sample.diffusion, "sample.diffusion")
    _scheduler_spec(cfg.sample)
    _schedule_spec(cfg, method_config)
    return dataclasses.replace(cfg, method=name, method_config=method_config)


def _schedule_spec(cfg: T2IConfig, method_config) -> None:
    """``model.betas``, ``model.final_alpha_bar`` and ``prompts.order``, before any load."""
    from am.t2i.prompts import PROMPT_ORDERS
    from am.t2i.schedules import FINAL_ALPHA_BARS

    if cfg.prompts.order not in PROMPT_ORDERS:
        raise ConfigError(f"prompts.order: one of {list(PROMPT_ORDERS)}, got {cfg.prompts.order!r}")
    betas, final = cfg.model.betas, cfg.model.final_alpha_bar
    if betas is not None and not 0 < betas[0] < betas[1] < 1:
        raise ConfigError(f"model.betas: [start, end] with 0 < start < end < 1, got {list(betas)}")
    if final not in FINAL_ALPHA_BARS:
        raise ConfigError(f"model.final_alpha_bar: one of {list(FINAL_ALPHA_BARS)}, got {final!r}")
    if final == "half":
        if getattr(method_config, "grid_warp", 0):  # the noisy end assumes the uniform last step
            raise ConfigError("method.grid_warp: must be 0 with model.final_alpha_bar: half")
        for key, steps in (("method.num_steps", getattr(method_config, "num_steps", None)),
                           ("sample.num_steps", cfg.sample.num_steps)):  # fmt: skip
            if not isinstance(steps, int) or 1000 % steps:
                raise ConfigError(
                    f"{key}: final_alpha_bar 'half' needs a step count dividing the scheduler's "
                    f"1000 timesteps, got {steps!r}"
                )
    target = getattr(method_config, "target", None)
    stepper = getattr(method_config, "stepper", None)
    if target == "discrete" and stepper == "ddpm" and final != "half":
        raise ConfigError(  # the DDPM step into a clean end has no noise to divide by
            "method.target: 'discrete' divides by each step's noise, and the last DDPM step into "
            "a clean end has none: set model.final_alpha_bar: half"
        )


def schedule_options(cfg: T2IConfig, num_steps: int) -> dict:
    """The schedule options of :func:`am.t2i.setup.denoiser_velocity` for a ``num_steps`` grid."""
    return dict(betas=cfg.model.betas, final_alpha_bar=cfg.model.final_alpha_bar,
                num_steps=num_steps)  # fmt: skip


def _scheduler_spec(s: SampleSpec) -> None:
    """``sample.scheduler``: a pipeline sampler's name; it sets its own noise (``diffusion``
    stays ``ode``) and guides only above 1."""
    if s.scheduler is None:
        return
    from am.t2i.sampling import parse_sampler

    try:
        parse_sampler(s.scheduler)
    except ValueError as e:
        raise ConfigError(f"sample.scheduler: {e}") from None
    if s.diffusion != "ode":
        raise ConfigError(
            f"sample.diffusion: {s.diffusion!r} is for this suite's sampler; with "
            "sample.scheduler set, leave it 'ode' (ddim:<eta> sets DDIM's noise)"
        )
    if s.guidance != 1 and not s.guidance > 1:
        raise ConfigError(f"sample.guidance: the pipelines guide above 1 only, got {s.guidance}")


def _diffusion_spec(spec: str, key: str):
    if spec in ("ode", "memoryless"):
        return spec
    try:
        if spec.startswith("ddim:"):
            return ("ddim", float(spec[5:]))
        return float(spec)
    except ValueError:
        raise ConfigError(
            f"{key}: 'ode', 'memoryless', 'ddim:<eta>' or a number, got {spec!r}"
        ) from None


def load_config(path: str) -> T2IConfig:
    """The :class:`T2IConfig` of a YAML file; its prompt files are relative to its folder."""
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"config file not found: {p.resolve()}")
    return parse_t2i_config(read_yaml(p) or {}, base_dir=p.resolve().parent)
