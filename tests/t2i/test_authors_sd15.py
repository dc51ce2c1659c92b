"""The Adjoint Matching authors' Stable Diffusion 1.5 run, difference by difference: each option
that config/sd15_authors.yaml sets against a literal transcription of their code
(microsoft/soc-fine-tuning-sd at 489f904; file and line cited at each transcription), on a tiny
SD 1.5 pipeline in float64 so that agreement is to rounding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

import am.methods.adjoint_matching as am_module  # noqa: E402
from am.loss import StepSubset  # noqa: E402
from am.methods.adjoint_matching import AdjointMatching, AdjointMatchingConfig  # noqa: E402
from am.methods.base import FineTuningProblem  # noqa: E402
from am.sde import DDPMStep, uniform_grid  # noqa: E402
from am.t2i.denoisers import UNetVelocity  # noqa: E402
from am.t2i.prompts import PromptSampler, encode_prompts  # noqa: E402
from am.t2i.schedules import schedule_from_scheduler  # noqa: E402
from am.t2i.testing import tiny_sd15  # noqa: E402
from am.train_config import DRAW_POSITION, DrawPosition, TrainConfig  # noqa: E402

K = 50
AUTHORS = dict(betas=(0.002, 0.009), final_alpha_bar="half", num_steps=K)
PROMPTS = ["a cat", "a dog", "a red house"]


def theirs_scheduler(pipe):
    """src/trainers/soc_trainer.py lines 70-94: their DDIM scheduler with beta_start/end replaced,
    'trailing' spacing, and final_alpha_cumprod = (1 + alphas_cumprod[timesteps[-1]]) / 2."""
    from diffusers import DDIMScheduler

    mutable = dict(pipe.scheduler.config)
    mutable["beta_start"], mutable["beta_end"] = 0.002, 0.009
    sched = DDIMScheduler.from_config(mutable)
    sched.config.timestep_spacing = "trailing"
    sched.set_timesteps(K)
    # diffusers' scaled_linear betas (schedulers/scheduling_ddim.py) in float64: theirs run in
    # float32, which moves alpha-bar by at most a few 1e-7 (checked here)
    betas = torch.linspace(0.002**0.5, 0.009**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    torch.testing.assert_close(sched.alphas_cumprod.double(), alphas_cumprod, rtol=2e-6, atol=0)
    sched.alphas_cumprod = alphas_cumprod
    sched.final_alpha_cumprod = (1 + sched.alphas_cumprod[sched.timesteps[-1]]) / 2
    return sched


def their_step(sched, eps, eps_init, timestep, sample, eta=1.0):
    """src/SOC_DDIM_scheduler.py lines 166-253 (epsilon prediction, no clipping): the step's
    mean ``prev_sample`` (variance_noise = 0), ``prev_sample_diff`` and ``std_dev_t``."""
    ac = sched.alphas_cumprod
    prev_timestep = timestep - sched.config.num_train_timesteps // sched.num_inference_steps
    alpha_prod_t = ac[timestep]
    alpha_prod_t_prev = ac[prev_timestep] if prev_timestep >= 0 else sched.final_alpha_cumprod
    alpha_prod_t_prev = torch.as_tensor(alpha_prod_t_prev, dtype=torch.float64)
    beta_prod_t = 1 - alpha_prod_t

    def mean(e):
        pred_original_sample = (sample - beta_prod_t ** (0.5) * e) / alpha_prod_t ** (0.5)
        return alpha_prod_t_prev ** (0.5) * pred_original_sample + direction * e

    variance = ((1 - alpha_prod_t_prev) / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
    std_dev_t = eta * variance ** (0.5)
    sign = torch.sign(1 - alpha_prod_t_prev - std_dev_t**2)
    direction = sign * (sign * (1 - alpha_prod_t_prev - std_dev_t**2)) ** (0.5)
    prev = mean(eps)
    diff = None if eps_init is None else prev - mean(eps_init)
    return prev, diff, std_dev_t


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd15(seed=0).to(torch.float64)


def eps_of(unet, x, timestep, embeds):
    with torch.no_grad():
        return unet(x, torch.as_tensor(float(timestep), dtype=torch.float64),
                    encoder_hidden_states=embeds).sample  # fmt: skip


def test_items_1_2_schedule_and_noisy_last_step_equal_their_ddim_eta1_step(pipe):
    """(1) betas 0.002-0.009, (2) final alpha-bar (1 + alpha-bar_19) / 2: our DDPM step on the
    fine-tuning schedule is their SOCDDIMScheduler step, every one of the 50, the last included."""
    schedule = schedule_from_scheduler(pipe.scheduler, **AUTHORS)
    sched = theirs_scheduler(pipe)
    times = uniform_grid(K, dtype=torch.float64)
    assert sched.timesteps.tolist() == [999 - 20 * k for k in range(K)]  # trailing: 999 .. 19
    abar = schedule(times).alpha ** 2
    torch.testing.assert_close(abar[:-1], sched.alphas_cumprod[sched.timesteps], rtol=1e-12, atol=0)
    torch.testing.assert_close(abar[-1], sched.final_alpha_cumprod, rtol=1e-12, atol=0)
    assert round(float(sched.alphas_cumprod[499]), 2) == 0.19  # the checkpoint's: 0.28
    velocity = UNetVelocity(pipe.unet, schedule, "epsilon")
    coefs = DDPMStep().on_grid(schedule, times, torch.ones(K, dtype=torch.float64)).unbind()
    embeds = encode_prompts(pipe, ["a cat", "a dog"])["prompt_embeds"]
    g = torch.Generator().manual_seed(0)
    for k in (0, 1, 25, 48, 49):
        x = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
        noise = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
        with torch.no_grad():
            v = velocity(x, times[k].expand(2), {"prompt_embeds": embeds})
        ours = coefs[k].apply(x, v, noise)
        tau = int(sched.timesteps[k])
        mean, _, std = their_step(sched, eps_of(pipe.unet, x, tau, embeds), None, tau, x)
        torch.testing.assert_close(ours, mean + std * noise, rtol=0, atol=1e-9)
        assert std > 0.01  # every step noisy, the last too (ours by default: clean)


def brightness(images, prompts):
    return images.mean(dim=(1, 2, 3))


def problem_and_models(pipe, *, scale=100.0):
    from am.t2i.setup import text_to_image

    setup = text_to_image(pipe, PROMPTS, brightness, height=16, width=16,
                          schedule_options=AUTHORS)  # fmt: skip
    base = setup.base
    unet_ft = copy.deepcopy(pipe.unet)
    with torch.no_grad():  # a fine-tuned model away from the base
        unet_ft.conv_out.weight.add_(0.05 * torch.randn_like(unet_ft.conv_out.weight))
    model = UNetVelocity(unet_ft, base.schedule, "epsilon")
    problem = FineTuningProblem(
        base=base, reward=setup.reward, schedule=base.schedule, sample_shape=setup.sample_shape,
        reward_scale=scale, conditions=setup.conditions, null_condition=setup.null_condition,
    )  # fmt: skip
    return problem, model, unet_ft, setup


def record_adjoint(monkeypatch):
    seen = {}

    def recording(base, traj, **kwargs):
        seen["traj"], seen["adj"] = traj, real(base, traj, **kwargs)
        return seen["adj"]

    real = am_module.lean_adjoint
    monkeypatch.setattr(am_module, "lean_adjoint", recording)
    return seen


@pytest.mark.parametrize("dropout", [0.0, 1.0])
def test_items_3_9_discrete_target_and_prompt_dropout_equal_their_loss(pipe, monkeypatch, dropout):
    """(3) The regression of (m_ft - m_base) / s_k on -s_k a_k and (9) prompt dropout: our
    adjoint and loss equal src/trainers/am_trainer.py's compute_adjoints (lines 155-170, with
    grad_inner_product lines 64-108) and compute_loss (lines 320-323, 367), with their
    evaluate_controls (src/trainers/soc_trainer.py lines 308-324: the null prompt for both
    models when the coin falls, noise_pred_init recomputed, the target unchanged)."""
    problem, model, unet_ft, setup = problem_and_models(pipe)
    steps = StepSubset(mode="split", num_steps=4, early_fraction=0.6)
    config = AdjointMatchingConfig(num_steps=K, stepper="ddpm", target="discrete", steps=steps,
                                   prompt_dropout=dropout)  # fmt: skip
    method = AdjointMatching(config, problem)
    seen = record_adjoint(monkeypatch)
    stored = method.collect(model, batch_size=2, generator=torch.Generator().manual_seed(3))
    assert stored.null_prompt == (dropout == 1.0)
    loss = method.regress(model, stored).loss
    traj, sched = seen["traj"], theirs_scheduler(pipe)
    embeds = stored.cond["prompt_embeds"]
    # their adjoint: a_K = -lambda grad r, then a += grad <step_mean(x) - x, a> (eta 1, no noise)
    x_final = traj.states[-1].clone().requires_grad_(True)
    reward = setup.reward(x_final, stored.cond).sum()
    a = -100.0 * torch.autograd.grad(reward, x_final)[0]
    adjoints = {K: a.clone()}
    for k in range(K - 1, steps_of(stored)[0] - 1, -1):
        tau = int(sched.timesteps[k])
        x = traj.states[k].clone().requires_grad_(True)
        eps = pipe.unet(x, torch.tensor(float(tau), dtype=torch.float64),
                        encoder_hidden_states=embeds).sample  # fmt: skip
        prev, _, _ = their_step(sched, eps, None, tau, x)
        a = a + torch.autograd.grad(torch.sum((prev - x) * a), x)[0]
        adjoints[k] = a.detach().clone()
    # their loss on the chosen steps (per_sample_threshold_quantile < 0: a plain mean)
    # their negative_prompt_embeds (src/trainers/soc_trainer.py lines 123-135: encode_prompt with
    # classifier-free guidance on and no negative prompt)
    negative = pipe.encode_prompt(["a cat", "a dog"], "cpu", 1, True)[1]
    prompt = negative if dropout else embeds
    evals = []
    for i, k in enumerate(steps_of(stored)):
        tau, x = int(sched.timesteps[k]), stored.states[i]
        _, diff, std = their_step(sched, eps_of(unet_ft, x, tau, prompt),
                                  eps_of(pipe.unet, x, tau, prompt), tau, x)  # fmt: skip
        torch.testing.assert_close(stored.target[i], -std * adjoints[k], rtol=1e-7, atol=1e-9)
        evals.append(torch.sum((diff / std + adjoints[k] * std) ** 2, dim=[1, 2, 3]))
    theirs = torch.mean(torch.stack(evals))
    torch.testing.assert_close(loss.detach(), theirs, rtol=1e-7, atol=0)


def steps_of(stored):
    """The chosen step indices, from their times on the uniform 50-step grid."""
    return [int(round(float(t) * K)) for t in stored.times]


def test_item_3_refuses_a_clean_last_step(pipe):
    problem, _, _, _ = problem_and_models(pipe)
    clean = schedule_from_scheduler(pipe.scheduler, betas=(0.002, 0.009))
    problem = FineTuningProblem(**{**problem.__dict__, "schedule": clean})
    with pytest.raises(ValueError, match="step 49 of the 50-step grid has none"):
        AdjointMatching(AdjointMatchingConfig(num_steps=K, stepper="ddpm", target="discrete"),
                        problem)  # fmt: skip


def their_sample_time_indices(num_timesteps, num_timesteps_to_load, rng):
    """src/trainers/am_trainer.py lines 204-224 (np.random as a Generator)."""
    middle_timestep = round(num_timesteps * 0.6)
    indices_t_1 = rng.choice(np.arange(0, middle_timestep), num_timesteps_to_load // 2,
                             replace=False)  # fmt: skip
    indices_t_2 = rng.choice(np.arange(middle_timestep, num_timesteps),
                             num_timesteps_to_load - num_timesteps_to_load // 2, replace=False)  # fmt: skip
    return np.sort(np.concatenate((indices_t_1, indices_t_2)))


def test_item_5_split_steps_follow_their_distribution():
    """(5) 2 of the first 60 % and 2 of the rest: the same support, split point and, over 4000
    draws each, the same per-step frequency (2/30 early, 2/20 late) within 4 standard errors."""
    subset, n = StepSubset(mode="split", num_steps=4, early_fraction=0.6), 4000
    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    ours = np.stack([subset.select(K, g).numpy() for _ in range(n)])
    theirs = np.stack([their_sample_time_indices(K, 4, rng) for _ in range(n)])
    for draws in (ours, theirs):
        assert ((draws < 30).sum(1) == 2).all() and (np.diff(draws, axis=1) > 0).all()
    f_ours, f_theirs = (np.bincount(d.ravel(), minlength=K) / n for d in (ours, theirs))
    expected = np.r_[np.full(30, 2 / 30), np.full(20, 2 / 20)]
    se = np.sqrt(expected * (1 - expected) / n)
    assert (np.abs(f_ours - expected) < 4 * se).all() and (
        np.abs(f_theirs - expected) < 4 * se
    ).all()


def test_item_8_prompt_epochs_without_replacement(pipe):
    """(8) Their shuffled DataLoader (src/prompt_datamodule.py lines 32-39) visits every prompt
    once per epoch: ours too, whatever the micro-batch size, and the same rows for the same
    place in the run in any order of drawing (resume, several processes)."""
    prompts = [f"prompt {i}" for i in range(7)]
    sampler = PromptSampler(pipe, prompts, order="epochs", seed=3)

    def stream(n, count, order=None):
        out = {}
        for i in order or range(count):
            token = DRAW_POSITION.set(DrawPosition(i))
            try:
                out[i] = sampler.indices(n, torch.Generator()).tolist()
            finally:
                DRAW_POSITION.reset(token)
        return [p for i in sorted(out) for p in out[i]]

    flat = stream(3, 7)  # 21 prompts: three epochs of 7
    for e in range(3):
        assert sorted(flat[7 * e : 7 * e + 7]) == list(range(7))
    assert flat[:7] != flat[7:14]  # a new shuffle each epoch
    assert stream(3, 7, order=[6, 2, 0, 4, 1, 5, 3]) == flat
    assert stream(1, 21) == flat  # the stream does not depend on the micro-batch size
    with pytest.raises(RuntimeError, match="draw position"):
        sampler.indices(3, torch.Generator())


def test_item_8_trainer_sets_the_draw_position(pipe, monkeypatch):
    """Through the trainer: 2 iterations x 2 micro-batches of 2 prompts walk the 3 prompts'
    epochs in order."""
    import am

    problem, _, _, setup = problem_and_models(pipe)
    sampler = PromptSampler(pipe, PROMPTS, order="epochs", seed=0)
    drawn = []
    real = sampler.indices
    monkeypatch.setattr(sampler, "indices", lambda n, g: drawn.append(real(n, g)) or drawn[-1])
    kwargs = setup.finetune_kwargs() | {"conditions": sampler}
    am.finetune(**kwargs, reward_scale=1.0, config=AdjointMatchingConfig(num_steps=2),
                train=TrainConfig(iterations=2, batch_size=4, micro_batches=2, lr=1e-3),
                progress=False)  # fmt: skip
    flat = torch.cat(drawn).tolist()
    assert sorted(flat[:3]) == [0, 1, 2] and sorted(flat[3:6]) == [0, 1, 2]


def test_their_evaluation_is_the_pipeline_with_ddim_and_the_authors_options(pipe):
    """Their evaluation, DDIM eta 0 on their fine-tuning scheduler (trailing timesteps, betas
    0.002-0.009, the noisy end), is ``sample.scheduler: ddim`` with ``model.betas`` and
    ``model.final_alpha_bar: half``: the pipeline's latents equal a loop of their step."""
    import copy

    from am.t2i.sampling import PipelineSampler, use_scheduler

    ours = copy.copy(pipe)  # the scheduler is swapped on this shallow copy only
    use_scheduler(ours, PipelineSampler("ddim"), betas=AUTHORS["betas"], final_alpha_bar="half")
    embeds = encode_prompts(pipe, ["a cat"])["prompt_embeds"]
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)).double()
    with torch.no_grad():
        out = ours(prompt_embeds=embeds, latents=latents, num_inference_steps=K, guidance_scale=1,
                   height=16, width=16, output_type="latent").images  # fmt: skip
    sched, x = theirs_scheduler(pipe), latents
    for tau in sched.timesteps.tolist():
        x = their_step(sched, eps_of(pipe.unet, x, tau, embeds), None, tau, x, eta=0.0)[0]
    # diffusers' alpha-bars are float32 (as theirs), the transcription's float64: 1e-7 relative
    torch.testing.assert_close(out, x, rtol=1e-6, atol=1e-5)
    # without the noisy end the last step lands elsewhere
    plain = copy.copy(pipe)
    use_scheduler(plain, PipelineSampler("ddim"), betas=AUTHORS["betas"])
    with torch.no_grad():
        clean = plain(prompt_embeds=embeds, latents=latents, num_inference_steps=K,
                      guidance_scale=1, height=16, width=16, output_type="latent").images  # fmt: skip
    assert (clean - x).abs().max() > 1e-3
