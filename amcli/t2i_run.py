"""What ``python -m amcli.t2i`` runs: fine-tune a pipeline's denoiser, sample from it."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import torch
import yaml

from amcli.run import atomic_write_text
from amcli.t2i_checks import ResourceError, check_finetune, check_sample
from amcli.t2i_config import schedule_options

__all__ = ["ResourceError", "make_tiny", "finetune", "sample"]


log = logging.getLogger("amcli.t2i")


def make_tiny(family: str, directory: Path) -> None:
    """Write a tiny random pipeline (``am.t2i.testing``) with ``save_pretrained``."""
    from am.t2i.testing import tiny_flux, tiny_sd3, tiny_sd15

    pipe = {"sd15": tiny_sd15, "sd3": tiny_sd3, "flux": tiny_flux}[family]()
    pipe.save_pretrained(directory)
    log.info("wrote a tiny %s pipeline to %s", family, directory)


def _device(cfg) -> torch.device:
    """``auto``: this process's device (its own GPU under ``accelerate launch``)."""
    if cfg.device == "auto":
        from am.distributed import data_parallel

        return data_parallel().device
    return torch.device(cfg.device)


def _pipeline(cfg, device):
    from am.t2i.denoisers import set_tf32
    from am.t2i.loading import ModelNotFoundError, load_pipeline

    set_tf32(cfg.model.tf32)
    try:
        return load_pipeline(cfg.model.path, cfg.model.dtype, device, variant=cfg.model.variant)
    except ModelNotFoundError as e:
        raise ResourceError(str(e)) from None


def _diffusion(spec: str, schedule):
    from am.diffusion import MemorylessDiffusion, ScaledDiffusion, make_diffusion

    if spec.startswith("ddim:"):  # DDIM's eta scales the memoryless (eta = 1) noise
        return ScaledDiffusion(MemorylessDiffusion(schedule), float(spec[5:]))
    return make_diffusion(spec if spec in ("ode", "memoryless") else float(spec), schedule)


def finetune(cfg, run_dir: Path, *, restart_if_changed: bool = False) -> Path:
    """Fine-tune, checkpointing into ``run_dir`` (resumed when it holds a checkpoint of the same
    config); the result goes to ``run_dir/lora`` (diffusers' LoRA format) or
    ``run_dir/result/<denoiser>`` (``save_pretrained``). Returns that path. Everything it needs
    is checked before any weights load (:mod:`amcli.t2i_checks`), a run directory of other
    settings is refused (:mod:`amcli.t2i_settings`; cleared and started afresh with
    ``restart_if_changed``), and a finished run returns at once."""
    import am
    from am.t2i.lora import DENOISER_OF, LoraSettings
    from am.t2i.prompts import read_prompts
    from am.t2i.setup import text_to_image
    from am.vision import MissingWeightsError, load_reward
    from baselines.registry import method_class

    plan = check_finetune(cfg, run_dir, restart_if_changed=restart_if_changed)
    if plan.finished is not None:
        log.info("%s already holds this run, finished: %s", run_dir, plan.finished)
        return plan.finished
    for note in plan.notes:
        log.info(note)
    device = _device(cfg)
    pipe = _pipeline(cfg, device)
    prompts = read_prompts(cfg.prompts.train)
    try:
        reward = load_reward(dict(cfg.reward.terms), dict(cfg.reward.weights)).to(device)
    except MissingWeightsError as e:
        raise ResourceError(str(e)) from None
    lora = None if cfg.lora is None else LoraSettings(**dataclasses.asdict(cfg.lora))
    torch.manual_seed(cfg.train.seed)  # the LoRA's initial A: the same in every run of a config
    try:
        setup = text_to_image(pipe, prompts, reward, height=cfg.model.height,
                              width=cfg.model.width, lora=lora, mu=cfg.model.mu,
                              guidance=cfg.model.distilled_guidance,
                              schedule_options=schedule_options(cfg, cfg.method_config.num_steps),
                              prompt_order=cfg.prompts.order, seed=cfg.train.seed)  # fmt: skip
    except ValueError as e:  # an unsupported scheduler, prediction type or size: before compute
        raise ResourceError(f"model {cfg.model.path}: {e}") from None
    if cfg.model.gradient_checkpointing:
        getattr(pipe, DENOISER_OF[type(pipe).__name__][0]).enable_gradient_checkpointing()
        pipe.vae.enable_gradient_checkpointing()
    run_dir.mkdir(parents=True, exist_ok=True)
    from am.distributed import data_parallel

    if data_parallel().is_main:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(_plain(cfg), sort_keys=False))
    from amcli.t2i_settings import extra_settings

    result = am.finetune(
        **setup.finetune_kwargs(), reward_scale=cfg.reward.reward_scale,
        method=method_class(cfg.method), config=cfg.method_config, train=cfg.train,
        run_dir=run_dir, settings=extra_settings(cfg), threads=1 if device.type == "cpu" else None,
    )  # fmt: skip
    from am.distributed import data_parallel

    out = run_dir / ("lora" if lora is not None else "result")
    if data_parallel().is_main:  # every process holds the same weights; one writes them
        out = setup.save(result.model, out)
        summary = {
            "iterations": result.iterations,  # in all, resumed ones included
            "iterations_run": result.iterations_run,  # by this call, the ones `seconds` timed
            "seconds": result.seconds,
            "saved": str(out),
        }
        atomic_write_text(run_dir / "result.json", json.dumps(summary, indent=1))
        kind = "LoRA in diffusers' format" if lora is not None else "the denoiser, save_pretrained"
        log.info(
            "done: %d iterations in %.0f s (%d in all); %s holds %s/ (%s), checkpoint.pt "
            "(resume or extend train.iterations), metrics.jsonl (loss and reward per iteration), "
            "settings.json, config.yaml, result.json", result.iterations_run, result.seconds,
            result.iterations, run_dir,
            out.relative_to(run_dir), kind,
        )  # fmt: skip
    return out


def _plain(cfg) -> dict:
    out = dataclasses.asdict(cfg)
    out["method"] = {"name": cfg.method, **dataclasses.asdict(cfg.method_config)}
    out.pop("method_config")
    return json.loads(json.dumps(out, default=str))


def _load_result(pipe, run_dir: Path) -> None:
    from am.t2i.lora import DENOISER_OF

    attribute, _ = DENOISER_OF[type(pipe).__name__]
    if (run_dir / "lora").is_dir():
        pipe.load_lora_weights(run_dir / "lora")
    elif (run_dir / "result" / attribute).is_dir():
        module = getattr(pipe, attribute)
        loaded = type(module).from_pretrained(run_dir / "result" / attribute, dtype=module.dtype)
        pipe.register_modules(**{attribute: loaded.to(module.device).eval().requires_grad_(False)})
    else:
        raise ResourceError(
            f"{run_dir} holds no fine-tuning result (looked for {run_dir / 'lora'} and "
            f"{run_dir / 'result' / attribute}): run `python -m amcli.t2i finetune` first"
        )


def sample(cfg, *, run_dir: Path | None, out: Path, prompts_file: str | None = None) -> Path:
    """``cfg.sample.per_prompt`` images of every prompt of ``prompts_file`` (default the
    config's eval prompts) from the base (``run_dir=None``) or the fine-tuned model, as PNGs in
    ``out`` with a ``metadata.csv`` (``file_name``, ``prompt``, ``index``: the image of its prompt)."""
    from tqdm.auto import tqdm

    import am
    from am.conditions import tile
    from am.models import GuidedVelocity
    from am.t2i.prompts import encode_prompts, null_condition, read_prompts
    from am.t2i.reward import LatentDecoder
    from am.t2i.sampling import parse_sampler, pipeline_images, use_scheduler
    from am.t2i.setup import denoiser_velocity

    check_sample(cfg, run_dir, prompts_file)
    device = _device(cfg)
    pipe = _pipeline(cfg, device)
    if run_dir is not None:
        _load_result(pipe, run_dir)
    prompts = read_prompts(prompts_file or cfg.prompts.eval)
    s = cfg.sample
    sampler = None if s.scheduler is None else parse_sampler(s.scheduler)
    if sampler is not None:  # the pipeline's own scheduler: the images are pipe(...)'s
        try:
            use_scheduler(
                pipe, sampler, betas=cfg.model.betas, final_alpha_bar=cfg.model.final_alpha_bar
            )
        except ValueError as e:
            raise ResourceError(f"model {cfg.model.path}: {e}") from None
    try:
        velocity = denoiser_velocity(
            pipe, mu=cfg.model.mu, height=cfg.model.height, width=cfg.model.width,
            guidance=cfg.model.distilled_guidance,
            schedule_options=schedule_options(cfg, s.num_steps),
        )  # fmt: skip
    except ValueError as e:
        raise ResourceError(f"model {cfg.model.path}: {e}") from None
    schedule = velocity.schedule
    if s.guidance != 1.0:
        velocity = GuidedVelocity(velocity, s.guidance, null_condition(pipe, device))
    decoder = LatentDecoder(pipe.vae)
    factor = pipe.vae_scale_factor
    shape = (pipe.vae.config.latent_channels, cfg.model.height // factor, cfg.model.width // factor)
    jobs = [(p, k) for p in prompts for k in range(s.per_prompt)]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    generator = torch.Generator(device).manual_seed(s.seed)
    bar = tqdm(total=len(jobs), unit="image", desc="sample", mininterval=1.0)
    for start in range(0, len(jobs), s.batch_size):
        batch = jobs[start : start + s.batch_size]
        if sampler is not None:
            images = pipeline_images(
                pipe, [p for p, _ in batch], sampler=sampler, num_steps=s.num_steps,
                guidance=s.guidance, height=cfg.model.height, width=cfg.model.width,
                generator=generator, distilled_guidance=cfg.model.distilled_guidance,
            )  # fmt: skip
        else:
            cond = encode_prompts(pipe, [p for p, _ in batch], device)
            with torch.no_grad():
                z = am.sample(
                    lambda x, t, c=cond: velocity(x, t, tile(c, x.shape[0])), len(batch), shape,
                    schedule=schedule, num_steps=s.num_steps, generator=generator, device=device,
                    diffusion=_diffusion(s.diffusion, schedule), dtype=torch.float32,
                )  # fmt: skip
                images = decoder(z).clamp(0, 1)
        for i, ((prompt, k), image) in enumerate(zip(batch, images, strict=True)):
            name = f"{start + i:05d}.png"
            array = (image.permute(1, 2, 0).float().cpu().numpy() * 255).round().astype("uint8")
            from PIL import Image

            Image.fromarray(array).save(out / name)
            rows.append({"file_name": name, "prompt": prompt, "index": k})
        bar.update(len(batch))
    bar.close()
    atomic_write_text(out / "metadata.csv", pd.DataFrame(rows).to_csv(index=False))
    log.info(
        "done: %s holds %d images (%d prompts x %d) and metadata.csv; score them with "
        "python -m amcli.score_images %s", out, len(rows), len(prompts), s.per_prompt, out,
    )  # fmt: skip
    return out
