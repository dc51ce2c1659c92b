"""Text-to-image fine-tuning end to end on tiny random pipelines (SD 1.5-style and SD3-style):
every registry method runs, Adjoint Matching raises an easy reward, LoRA and full fine-tunes
save and load back in diffusers' formats, the base is the adapter-free denoiser, resume is exact,
and the lean adjoint through the adapter equals autograd through the unrolled sampler."""

from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import am  # noqa: E402
import baselines  # noqa: E402
from am.adjoint import lean_adjoint, terminal_adjoint  # noqa: E402
from am.conditions import tile  # noqa: E402
from am.sde import EulerMaruyama, simulate, uniform_grid  # noqa: E402
from am.t2i.lora import LoraSettings  # noqa: E402
from am.t2i.setup import text_to_image  # noqa: E402
from am.t2i.testing import tiny_flux, tiny_sd3, tiny_sd15  # noqa: E402

PROMPTS = ["a cat", "a dog", "a red house"]
BUILDERS = {"sd15": tiny_sd15, "sd3": tiny_sd3, "flux": tiny_flux}
SIZES = {"sd15": 16, "sd3": 16, "flux": 32}
LORA = LoraSettings(rank=4, alpha=8.0)


def brightness(images, prompts):
    return images.mean(dim=(1, 2, 3))


def setup_for(name, lora=LORA, seed=0):
    size = SIZES[name]  # Flux's schedule depends on it (dynamic shifting)
    return text_to_image(
        BUILDERS[name](seed=seed), PROMPTS, brightness, height=size, width=size, lora=lora
    )


def short(method: str) -> dict:
    config = baselines.METHODS[method].recommended_config()
    fields = {f.name for f in dataclasses.fields(config)}
    out = {"num_steps": 4}
    if "group_size" in fields:
        out["group_size"] = 2
    return out


@pytest.mark.parametrize("method", sorted(baselines.METHODS))
@pytest.mark.parametrize("family", ["sd15", "sd3", "flux"])
def test_every_method_runs(method, family):
    setup = setup_for(family)
    before = {k: v.clone() for k, v in setup.model.named_parameters() if v.requires_grad}
    result = baselines.finetune(
        **setup.finetune_kwargs(), method=method, config=short(method), reward_scale=100.0,
        train=am.TrainConfig(iterations=2, batch_size=4, lr=1e-2), progress=False,
    )  # fmt: skip
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    after = dict(setup.model.named_parameters())
    assert before and all("lora" in k for k in before)  # only the adapter trains
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, f"{method} did not move the LoRA weights"


@pytest.mark.parametrize("family,lam", [("sd15", 1300.0), ("sd3", 4000.0)])
def test_adjoint_matching_raises_the_reward(family, lam):
    """lambda = 0.03 / Var_base(r): the tilt moves the mean reward by ~3 base standard
    deviations' worth of the gradient signal; checked on 64 paired samples (same noise)."""
    setup = setup_for(family)
    result = am.finetune(
        **setup.finetune_kwargs(), reward_scale=lam, config=am.AdjointMatchingConfig(num_steps=10),
        train=am.TrainConfig(iterations=20, batch_size=8, lr=1e-2), progress=False,
    )  # fmt: skip
    cond = setup.conditions(64, torch.Generator().manual_seed(5))
    diffusion = am.make_diffusion("ode", setup.schedule)

    def rewards(velocity):
        z = am.sample(
            lambda x, t: velocity(x, t, tile(cond, x.shape[0])), 64, setup.sample_shape,
            schedule=setup.schedule, num_steps=10, diffusion=diffusion,
            generator=torch.Generator().manual_seed(6),
        )  # fmt: skip
        with torch.no_grad():
            return setup.reward(z, cond)

    gain = rewards(result.model) - rewards(setup.base)
    assert gain.mean() > 3 * gain.std() / 8, (gain.mean(), gain.std())


@pytest.mark.parametrize("family", ["sd15", "sd3", "flux"])
def test_lora_round_trip_through_load_lora_weights(family, tmp_path):
    setup = setup_for(family)
    am.finetune(
        **setup.finetune_kwargs(), reward_scale=100.0, config=am.AdjointMatchingConfig(num_steps=4),
        train=am.TrainConfig(iterations=2, batch_size=4, lr=1e-2), progress=False,
    )  # fmt: skip
    setup.save(setup.model, tmp_path / "lora")
    fresh = BUILDERS[family](seed=0)
    fresh.load_lora_weights(tmp_path / "lora")
    z = torch.randn(2, *setup.sample_shape, generator=torch.Generator().manual_seed(0))
    cond = setup.conditions(2, torch.Generator().manual_seed(1))
    t = torch.full((2,), 0.4)
    from am.t2i.setup import denoiser_velocity

    with torch.no_grad():
        trained = setup.model(z, t, cond)
        size = {"height": SIZES[family], "width": SIZES[family]}
        loaded = denoiser_velocity(fresh, **size)(z, t, cond)
        base = setup.base(z, t, cond)
        original = denoiser_velocity(BUILDERS[family](seed=0), **size)(z, t, cond)
    torch.testing.assert_close(loaded, trained)
    torch.testing.assert_close(base, original)  # the base is the adapter-free denoiser
    assert (trained - base).abs().max() > 1e-6  # and training moved the model away from it


def test_full_fine_tune_saves_with_save_pretrained(tmp_path):
    from diffusers import UNet2DConditionModel

    setup = setup_for("sd15", lora=None)
    result = am.finetune(
        **setup.finetune_kwargs(), reward_scale=100.0, config=am.AdjointMatchingConfig(num_steps=4),
        train=am.TrainConfig(iterations=2, batch_size=4, lr=1e-3), progress=False,
    )  # fmt: skip
    path = setup.save(result.model, tmp_path / "full")
    unet = UNet2DConditionModel.from_pretrained(path).eval()
    z = torch.randn(2, *setup.sample_shape, generator=torch.Generator().manual_seed(0))
    cond = setup.conditions(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        tau = torch.full((2,), 500.0)
        ours = result.model.unet(z, tau, encoder_hidden_states=cond["prompt_embeds"]).sample
        loaded = unet(z, tau, encoder_hidden_states=cond["prompt_embeds"]).sample
        base = setup.base.unet(z, tau, encoder_hidden_states=cond["prompt_embeds"]).sample
    torch.testing.assert_close(loaded, ours)
    assert (ours - base).abs().max() > 1e-6  # the frozen copy stayed where it was


def test_resume_equals_an_uninterrupted_run(tmp_path):
    from am.methods import AdjointMatching
    from am.methods.base import FineTuningProblem
    from am.train import Trainer

    def trainer(run_dir):
        setup = setup_for("sd15")
        kwargs = setup.finetune_kwargs()
        model = kwargs.pop("model")
        problem = FineTuningProblem(**kwargs, reward_scale=100.0)
        method = AdjointMatching(am.AdjointMatchingConfig(num_steps=4), problem)
        train = am.TrainConfig(iterations=3, batch_size=4, lr=1e-2, checkpoint_every=1)
        return Trainer(method, model, train, run_dir), model

    def lora(model):
        return {k: v.detach().clone() for k, v in model.named_parameters() if "lora" in k}

    straight, m1 = trainer(tmp_path / "a")
    straight.fit(progress=False)
    interrupted, _ = trainer(tmp_path / "b")
    interrupted.fit(progress=False, until=2)
    # the checkpoint holds the adapters (and buffers), not the frozen denoiser
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    buffers = {k for k, _ in m1.named_buffers()}
    trained = [k for k in state if k not in buffers]
    assert trained and all("lora_" in k for k in trained)
    assert sum(v.numel() for v in state.values()) < 0.2 * sum(
        v.numel() for v in m1.state_dict().values()
    )
    torch.manual_seed(123)  # the resumed process starts from another global RNG state
    resumed, m2 = trainer(tmp_path / "b")
    resumed.fit(progress=False)
    assert resumed.iteration == 3
    a, b = lora(m1), lora(m2)
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)


def test_lean_adjoint_through_the_adapter_equals_autograd():
    """float64, tiny SD 1.5-style UNet on its discrete VP schedule, memoryless Euler-Maruyama:
    the lean adjoint equals the gradient of lambda r(X_K) through the unrolled sampler."""
    setup = setup_for("sd15", lora=None)
    base = setup.base.double()
    decoder = setup.reward.decoder.double()
    cond = {
        k: v.double() if v.is_floating_point() else v
        for k, v in setup.conditions(2, torch.Generator().manual_seed(0)).items()
    }
    velocity = lambda x, t: base(x, t, tile(cond, x.shape[0]))  # noqa: E731
    reward = lambda z: decoder(z).mean(dim=(1, 2, 3))  # noqa: E731
    schedule, stepper, K, lam = setup.schedule, EulerMaruyama(), 4, 30.0
    diffusion = am.make_diffusion("memoryless", schedule)
    x0 = torch.randn(
        2, *setup.sample_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    times = uniform_grid(K, dtype=torch.float64) * 0.98  # away from t = 1 (timestep -1)
    traj = simulate(velocity, x0, schedule=schedule, times=times, diffusion=diffusion,
                    stepper=stepper, generator=torch.Generator().manual_seed(2))  # fmt: skip
    terminal, _ = terminal_adjoint(reward, traj.final, lam)
    adj = lean_adjoint(velocity, traj, schedule=schedule, stepper=stepper, terminal=terminal)
    for k in (0, 2, K):
        x = traj.states[k].clone().requires_grad_(True)
        y = x
        for j in range(k, K):
            sv, sv_next = schedule(traj.times[j]), schedule(traj.times[j + 1])
            v = velocity(y, traj.times[j].expand(2))
            y = stepper.step(
                y, v, sv=sv, sv_next=sv_next, sigma=traj.sigmas[j], noise=traj.noises[j]
            )
        (grad,) = torch.autograd.grad(-lam * reward(y).sum(), x)
        torch.testing.assert_close(adj.adjoints[k], grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("family", ["sd15", "sd3"])
def test_gradient_checkpointing_changes_nothing_but_memory(family):
    """The same loss and gradient with gradient checkpointing of the denoiser and the VAE
    decoder (the reward's backward goes through the decoder)."""
    from am.methods import AdjointMatching
    from am.methods.base import FineTuningProblem

    def loss_and_grads(checkpointing):
        setup = setup_for(family)
        if checkpointing:
            getattr(
                setup.pipe, "unet" if family == "sd15" else "transformer"
            ).enable_gradient_checkpointing()
            setup.pipe.vae.enable_gradient_checkpointing()
        kwargs = setup.finetune_kwargs()
        model = kwargs.pop("model")
        method = AdjointMatching(
            am.AdjointMatchingConfig(num_steps=4), FineTuningProblem(**kwargs, reward_scale=50.0)
        )
        out = method.loss(model, batch_size=2, generator=torch.Generator().manual_seed(0))
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    (loss0, grads0), (loss1, grads1) = loss_and_grads(False), loss_and_grads(True)
    torch.testing.assert_close(loss1, loss0)
    for g0, g1 in zip(grads0, grads1, strict=True):
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("family", ["sd15", "sd3", "flux"])
def test_classifier_free_guidance_in_the_rollouts(family):
    """AM with ``rollout_guidance`` (the authors' SD setting): the empty prompt's condition
    rides along with every family's prompt dict."""
    setup = setup_for(family)
    result = am.finetune(
        **setup.finetune_kwargs(), reward_scale=100.0,
        config=am.AdjointMatchingConfig(num_steps=4, rollout_guidance=3.0),
        train=am.TrainConfig(iterations=2, batch_size=4, lr=1e-2), progress=False,
    )  # fmt: skip
    assert len(result.history) == 2 and all(
        torch.isfinite(torch.tensor(h["loss"])) for h in result.history
    )
    assert set(setup.null_condition) == set(setup.conditions(1, torch.Generator().manual_seed(0)))
