"""The denoiser adapters against the diffusers schedulers at matching timesteps."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from am.diffusion import make_diffusion  # noqa: E402
from am.schedules import DiscreteVPSchedule  # noqa: E402
from am.sde import DDPMStep, EulerMaruyama, endpoint_from_velocity, simulate  # noqa: E402
from am.t2i.denoisers import FluxVelocity, SD3Velocity, UNetVelocity  # noqa: E402
from am.t2i.schedules import ShiftedFlowMatchingSchedule, schedule_from_scheduler  # noqa: E402
from am.t2i.setup import dynamic_shift  # noqa: E402
from am.t2i.testing import tiny_flux, tiny_sd3, tiny_sd15  # noqa: E402

F64 = torch.float64


def sd15_embeds(pipe, prompts):
    embeds, _ = pipe.encode_prompt(prompts, "cpu", 1, do_classifier_free_guidance=False)
    return embeds


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_unet_endpoint_equals_scheduler_prediction(prediction_type):
    pipe = tiny_sd15(prediction_type=prediction_type)
    schedule = schedule_from_scheduler(pipe.scheduler)
    assert isinstance(schedule, DiscreteVPSchedule)
    velocity = UNetVelocity(pipe.unet, schedule, prediction_type)
    cond = {"prompt_embeds": sd15_embeds(pipe, ["a cat", "a dog"])}
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pipe.scheduler.set_timesteps(50)
    for tau in (981, 501, 21):
        t = schedule.timestep_to_time(torch.tensor(float(tau))).float()
        with torch.no_grad():
            v = velocity(z, t.expand(2), cond)
            out = pipe.unet(z, tau, encoder_hidden_states=cond["prompt_embeds"]).sample
        data = endpoint_from_velocity(schedule(t.double()), z.double(), v.double())
        reference = pipe.scheduler.step(out, tau, z).pred_original_sample
        torch.testing.assert_close(data.float(), reference, rtol=1e-4, atol=1e-4)


def test_memoryless_ddpm_step_equals_ddim_eta_one():
    """Our memoryless DDPMStep from diffusers timestep 981 to 961 is the scheduler's DDIM step
    with eta = 1 given the same standard normal."""
    pipe = tiny_sd15()
    schedule = schedule_from_scheduler(pipe.scheduler)
    velocity = UNetVelocity(pipe.unet, schedule, "epsilon").double()
    cond = {"prompt_embeds": sd15_embeds(pipe, ["a cat", "a dog"]).double()}
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    times = schedule.timestep_to_time(torch.tensor([981.0, 961.0]))
    traj = simulate(
        lambda x, t: velocity(x, t, cond), z, schedule=schedule, times=times,
        diffusion=make_diffusion("memoryless", schedule), stepper=DDPMStep(),
        generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    pipe.scheduler.set_timesteps(50)
    with torch.no_grad():
        eps = pipe.unet.double()(z, 981, encoder_hidden_states=cond["prompt_embeds"]).sample
    reference = pipe.scheduler.step(eps, 981, z, eta=1.0, variance_noise=traj.noises[0])
    # the scheduler keeps alphas_cumprod in float32: agreement to float32 precision
    torch.testing.assert_close(traj.states[1], reference.prev_sample, rtol=1e-5, atol=1e-6)
    # and the noise matters: a step with another normal is far off
    other = pipe.scheduler.step(eps, 981, z, eta=1.0, variance_noise=-traj.noises[0])
    assert (traj.states[1] - other.prev_sample).abs().max() > 1e-2


def test_sd3_velocity_and_grid_match_the_scheduler():
    """At the scheduler's timesteps the adapter's velocity is ``d sigma / du`` times the
    transformer's output; the uniform grid of the shifted schedule is the scheduler's sigma
    grid (up to its last step); and on the unshifted path (t = 1 - sigma) one Euler step
    between two of the scheduler's sigmas is exactly its step."""
    pipe = tiny_sd3(shift=3.0)
    schedule = schedule_from_scheduler(pipe.scheduler)
    assert isinstance(schedule, ShiftedFlowMatchingSchedule) and schedule.shift == 3.0
    velocity = SD3Velocity(pipe.transformer, schedule)
    plain = SD3Velocity(pipe.transformer, ShiftedFlowMatchingSchedule(1.0))
    embeds, _, pooled, _ = pipe.encode_prompt(
        ["a cat"], ["a cat"], None, do_classifier_free_guidance=False
    )
    cond = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    steps = 8
    pipe.scheduler.set_timesteps(steps)
    sigmas = pipe.scheduler.sigmas.double()
    # the scheduler's grid is the shifted image of s = linspace(1, sigma_min, K), then 0: a
    # uniform grid in our time but for the last step (sigma_min = shift(1/1000) = 0.003)
    s_min = pipe.scheduler.sigma_min
    s = torch.cat([torch.linspace(1, s_min, steps, dtype=F64), torch.zeros(1, dtype=F64)])
    torch.testing.assert_close(schedule.sigma(1 - s), sigmas, rtol=0, atol=1e-6)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for k in (0, 3, 7):
        pipe.scheduler._step_index = k
        tau = pipe.scheduler.timesteps[k]
        with torch.no_grad():
            out = pipe.transformer(
                hidden_states=z, timestep=tau.expand(1), encoder_hidden_states=embeds,
                pooled_projections=pooled, return_dict=False,
            )[0]  # fmt: skip
            u = schedule.time_of_sigma(sigmas[k : k + 1])
            v = velocity(z, u.float(), cond)
        torch.testing.assert_close(v, schedule(u).d_beta.float() * out, rtol=1e-4, atol=1e-5)
        reference = pipe.scheduler.step(out, tau, z).prev_sample
        x1 = simulate(
            lambda x, t: plain(x, t, cond), z, schedule=plain.schedule,
            times=(1 - sigmas[k : k + 2]).float(), diffusion=make_diffusion("ode", plain.schedule),
            stepper=EulerMaruyama(), keep_trajectory=False,
        )  # fmt: skip
        torch.testing.assert_close(x1, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("guidance_embeds", [True, False], ids=["dev", "schnell"])
def test_flux_step_equals_the_pipelines_step(guidance_embeds):
    """Our Flux adapter (unpacked state, packing inside) stepped between two of the scheduler's
    sigmas is the Flux pipeline's own step on packed latents; the dynamically shifted grid is
    our shifted schedule with shift = exp(mu)."""
    from diffusers import FluxPipeline

    pipe = tiny_flux(guidance_embeds=guidance_embeds)
    mu = dynamic_shift(pipe, 32, 32)
    schedule = schedule_from_scheduler(pipe.scheduler, mu=mu)
    plain = FluxVelocity(pipe.transformer, ShiftedFlowMatchingSchedule(1.0), guidance=3.5)
    embeds, pooled, text_ids = pipe.encode_prompt(["a cat"], ["a cat"], max_sequence_length=32)
    cond = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    steps = 6
    pipe.scheduler.set_timesteps(steps, mu=mu)
    sigmas = pipe.scheduler.sigmas.double()
    s_min = pipe.scheduler.sigma_min
    s = torch.cat([torch.linspace(1, s_min, steps, dtype=F64), torch.zeros(1, dtype=F64)])
    torch.testing.assert_close(schedule.sigma(1 - s), sigmas, rtol=0, atol=1e-6)
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    packed = FluxPipeline._pack_latents(z, 1, 4, 16, 16)
    img_ids = FluxPipeline._prepare_latent_image_ids(1, 8, 8, "cpu", z.dtype)
    guidance = torch.full((1,), 3.5) if guidance_embeds else None
    for k in (0, 4):
        pipe.scheduler._step_index = k
        tau = pipe.scheduler.timesteps[k]
        with torch.no_grad():
            out = pipe.transformer(
                hidden_states=packed, timestep=tau.expand(1) / 1000, guidance=guidance,
                pooled_projections=pooled, encoder_hidden_states=embeds, txt_ids=text_ids,
                img_ids=img_ids, return_dict=False,
            )[0]  # fmt: skip
        reference = FluxPipeline._unpack_latents(
            pipe.scheduler.step(out, tau, packed).prev_sample, 16, 16, 1
        )
        x1 = simulate(
            lambda x, t: plain(x, t, cond), z, schedule=plain.schedule,
            times=(1 - sigmas[k : k + 2]).float(), diffusion=make_diffusion("ode", plain.schedule),
            stepper=EulerMaruyama(), keep_trajectory=False,
        )  # fmt: skip
        torch.testing.assert_close(x1, reference, rtol=1e-4, atol=1e-5)


def test_shifted_schedule_derivatives_and_inverse():
    schedule = ShiftedFlowMatchingSchedule(3.0)
    t = torch.linspace(0.01, 0.99, 7, dtype=F64, requires_grad=True)
    sv = schedule(t)
    (d_alpha,) = torch.autograd.grad(sv.alpha.sum(), t, retain_graph=True)
    (d_beta,) = torch.autograd.grad(sv.beta.sum(), t)
    torch.testing.assert_close(d_alpha, sv.d_alpha.detach())
    torch.testing.assert_close(d_beta, sv.d_beta.detach())
    torch.testing.assert_close(schedule.time_of_sigma(sv.beta.detach()), t.detach())
    one = ShiftedFlowMatchingSchedule(1.0)(t.detach())
    torch.testing.assert_close(one.alpha, t.detach())


def test_unsupported_schedulers_are_refused():
    with pytest.raises(ValueError, match="unknown scheduler 'KarrasVeScheduler'"):
        schedule_from_scheduler({"_class_name": "KarrasVeScheduler"})
    with pytest.raises(ValueError, match="prediction_type 'sample'"):
        schedule_from_scheduler({"_class_name": "DDIMScheduler", "prediction_type": "sample"})
    with pytest.raises(ValueError, match="rescale_betas_zero_snr"):
        schedule_from_scheduler({"_class_name": "DDIMScheduler", "rescale_betas_zero_snr": True})
    with pytest.raises(ValueError, match="pass mu"):
        schedule_from_scheduler(
            {"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True}
        )
    with pytest.raises(ValueError, match="prediction_type must be"):
        UNetVelocity(torch.nn.Identity(), DiscreteVPSchedule(), "sample")
