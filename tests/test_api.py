"""The library's front door: am.finetune / baselines.finetune, their result record, run_dir
resume semantics, threads, and load_weights."""

import pytest
import torch
from safetensors.torch import save_file

import am
import baselines
from am.models import ResidualVelocity, TimeMLP
from am.problems import make_problem


def small(**kwargs):
    p = make_problem("gmm1d_linear", am.FlowMatchingSchedule(), 1.0)
    args = dict(
        schedule=p.schedule,
        sample_shape=(1,),
        reward_scale=1.0,
        config=am.AdjointMatchingConfig(num_steps=6),
        train=am.TrainConfig(iterations=4, batch_size=16, checkpoint_every=2),
        progress=False,
    )
    args.update(kwargs)
    return p, args


def test_defaults_are_the_recommended_settings():
    p, args = small()
    del args["config"]
    result = am.finetune(p.velocity, p.reward, **args)
    assert isinstance(result.model, ResidualVelocity)
    net = result.model.net
    assert net.net[0].in_features == 1 + 1 + 2 * 4 and net.net[0].out_features == 64
    cfg = am.AdjointMatching.recommended_config()
    assert cfg.control_variate == "antithetic" and cfg.grid_warp == 0.5
    assert am.TrainConfig().lr_schedule == "cosine"
    assert len(result.history) == 4 and result.iterations == 4 and result.start_iteration == 0
    assert result.seconds > 0 and all("reward" in h for h in result.history)


def test_reused_run_dir_resumes_with_a_message_and_resume_false_trains_anew(tmp_path, caplog):
    p, args = small(run_dir=tmp_path)
    first = am.finetune(p.velocity, p.reward, **args)
    again = am.finetune(p.velocity, p.reward, **args)
    err = caplog.text  # the notice goes through logging, not print
    assert [r.name for r in caplog.records] == ["am.api"]
    assert "is at iteration 4 of 4: finished, returning it" in err
    assert again.start_iteration == 4 and again.history == []
    x, t = torch.randn(8, 1), torch.rand(8)
    assert torch.equal(first.model(x, t), again.model(x, t))
    assert "resume=" not in err  # the message names no argument a command line lacks
    other = dict(args, train=am.TrainConfig(iterations=6, batch_size=8))
    with pytest.raises(ValueError, match="different config.*train.batch_size"):
        am.finetune(p.velocity, p.reward, **other)
    longer = dict(args, train=am.TrainConfig(iterations=6, batch_size=16))
    anew = am.finetune(p.velocity, p.reward, **dict(longer, resume=False))
    assert anew.start_iteration == 0 and anew.iterations == 6

    # a longer budget continues a run: 4 iterations, then 2 more, as 6 at once (constant lr)
    def run(iterations, run_dir=None):
        train = am.TrainConfig(iterations=iterations, batch_size=16, lr_schedule="constant")
        return am.finetune(p.velocity, p.reward, **dict(args, train=train, run_dir=run_dir))

    torch.manual_seed(1)  # the model's initialisation
    assert run(4, tmp_path / "ext").iterations == 4
    extended = run(6, tmp_path / "ext")
    torch.manual_seed(1)
    straight = run(6)
    assert extended.start_iteration == 4 and extended.iterations == 6
    torch.testing.assert_close(extended.model(x, t), straight.model(x, t), rtol=0, atol=0)
    # the counts say what they hold: 6 in all, 2 of them run by this call (those timed)
    assert extended.iterations_run == len(extended.history) == 2
    assert again.iterations_run == 0 and straight.iterations_run == straight.iterations == 6


def test_threads_are_set_while_training_and_restored(monkeypatch):
    seen = []
    before = torch.get_num_threads()
    p, args = small(train=am.TrainConfig(iterations=1, batch_size=8))

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return p.reward(x)

    am.finetune(p.velocity, Spy(), **args)
    assert set(seen) == {1} and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads"):
        am.finetune(p.velocity, p.reward, **dict(args, threads=0))


def test_methods_by_name_with_dict_configs():
    p, args = small()
    del args["config"]
    out = baselines.finetune(p.velocity, p.reward, method="draft", config={"num_steps": 5}, **args)
    assert out.iterations == 4
    with pytest.raises(ValueError, match="unknown draft config key.*num_step"):
        baselines.finetune(p.velocity, p.reward, method="draft", config={"num_step": 5}, **args)
    with pytest.raises(ValueError, match="unknown method 'drafty'"):
        baselines.finetune(p.velocity, p.reward, method="drafty", **args)
    with pytest.raises(TypeError, match="as config="):
        am.finetune(p.velocity, p.reward, **dict(args, method=am.AdjointMatchingConfig()))


def test_load_weights_from_checkpoint_with_ema_and_from_safetensors(tmp_path):
    p, args = small(
        run_dir=tmp_path, train=am.TrainConfig(iterations=4, batch_size=16, ema_decay=0.5)
    )
    result = am.finetune(p.velocity, p.reward, **args)  # returns the EMA weights

    def fresh():
        return ResidualVelocity(p.velocity, TimeMLP(1, zero_init=True))

    x, t = torch.randn(8, 1), torch.rand(8)
    loaded = am.load_weights(fresh(), tmp_path / "checkpoint.pt")
    assert torch.equal(loaded(x, t), result.model(x, t))
    raw = am.load_weights(fresh(), tmp_path / "checkpoint.pt", ema=False)
    assert not torch.equal(raw(x, t), result.model(x, t))
    save_file(result.model.state_dict(), tmp_path / "model.safetensors")
    assert torch.equal(am.load_weights(fresh(), tmp_path / "model.safetensors")(x, t), loaded(x, t))
    with pytest.raises(FileNotFoundError, match="no weights"):
        am.load_weights(fresh(), tmp_path / "missing.pt")


def test_distance_to_target_reports_the_floor():
    p = make_problem("gmm2d_overlap_quadratic", am.FlowMatchingSchedule(), 1.0)
    g = torch.Generator().manual_seed(0)
    exact = p.distance_to_target(p.target.sample(2000, generator=g))
    base = p.distance_to_target(p.base.sample(2000, generator=g))
    assert exact.metric == "sliced_w1"
    assert exact.distance < 1.5 * exact.noise_floor < base.distance
    assert "noise floor" in str(exact)
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        p.distance_to_target(torch.zeros(5, 3))


def test_a_plain_callable_base_and_a_wrong_method_leave_the_base_alone():
    """A velocity that is a plain function fine-tunes (the default model adds a network to
    it); a method that is not a Method class is refused before the base is touched."""
    p, args = small()
    exact = p.velocity

    def velocity(x, t):  # not an nn.Module
        return exact(x, t)

    result = am.finetune(velocity, p.reward, **args)
    assert isinstance(result.model, ResidualVelocity) and len(result.history) == 4
    net = TimeMLP(1, zero_init=True)
    with pytest.raises(TypeError, match="method must be a Method class"):
        am.finetune(net, p.reward, method="draft", **args)
    assert all(q.requires_grad for q in net.parameters())


@pytest.mark.parametrize(
    "method, by_name, by_object",
    [
        ("adjoint_matching", "memoryless", "memoryless"),
        ("draft", 0.0, "ode"),
        ("refl", 0.3, 0.3),
    ],
)
def test_a_diffusion_by_object_trains_as_by_name(method, by_name, by_object, tmp_path):
    """``am.finetune`` takes a method's diffusion as ``am.sample`` does: by name, number or
    :class:`am.diffusion.Diffusion` object; the object trains the same weights as its name,
    and a run directory records which one it was."""
    p, args = small()
    del args["config"]
    weights = []
    for name, spec in (("name", by_name), ("object", am.make_diffusion(by_object, p.schedule))):
        torch.manual_seed(0)
        result = baselines.finetune(
            p.velocity, p.reward, method=method, config={"num_steps": 4, "diffusion": spec},
            run_dir=tmp_path / name, **args,
        )  # fmt: skip
        weights.append(torch.cat([q.detach().flatten() for q in result.model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    recorded = (tmp_path / "object" / "settings.json").read_text()
    assert type(am.make_diffusion(by_object, p.schedule)).__name__ in recorded


def test_a_diffusion_that_is_neither_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="diffusion must be 'memoryless', a number > 0 or an"):
        am.AdjointMatchingConfig(diffusion="sde")
    with pytest.raises(ValueError, match="stepper 'ddpm' is memoryless by construction"):
        am.AdjointMatchingConfig(stepper="ddpm", diffusion=am.diffusion.ConstantDiffusion(1.0))
