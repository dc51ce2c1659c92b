"""The generic trainer: exact resume, NaN handling, lambda = 0 leaves the base in place."""

import pytest
import torch

from am.loss import StepSubset
from am.methods import AdjointMatching, AdjointMatchingConfig, FineTuningProblem
from am.models import ResidualVelocity, TimeMLP
from am.problems.benchmarks import make_problem
from am.schedules import FlowMatchingSchedule
from am.train import NonFiniteError, TrainConfig, Trainer


def build(reward_scale=1.0, reward=None, seed=0, drop_quantile=None, **train):
    torch.manual_seed(seed)
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), reward_scale)
    base = gt.velocity
    model = ResidualVelocity(base, TimeMLP(1, 16, 2, time_features=4, zero_init=True))
    prob = FineTuningProblem(
        base=base,
        reward=reward or gt.reward,
        schedule=gt.schedule,
        sample_shape=(1,),
        reward_scale=reward_scale,
    )
    method = AdjointMatching(
        AdjointMatchingConfig(
            num_steps=6,
            steps=StepSubset("paper", num_random=2, num_last=2),
            drop_quantile=drop_quantile,
        ),
        prob,
    )
    cfg = TrainConfig(**{"iterations": 6, "batch_size": 16, "ema_decay": 0.9, **train})
    return model, method, cfg


def params(model):
    return torch.cat([p.detach().flatten() for p in model.net.parameters()])


@pytest.mark.parametrize("drop_quantile", [None, 0.8])
def test_resume_equals_uninterrupted(tmp_path, drop_quantile):
    """Also with the authors' loss dropping, whose running threshold is in the checkpoint."""
    model, method, cfg = build(lr_schedule="cosine", drop_quantile=drop_quantile)
    straight = Trainer(method, model, cfg, tmp_path / "a")
    straight.fit(progress=False)

    # interrupted after 3 iterations (checkpoint every iteration), then a fresh process resumes
    m2, method2, cfg2 = build(
        seed=0, lr_schedule="cosine", checkpoint_every=1, drop_quantile=drop_quantile
    )
    Trainer(method2, m2, cfg2, tmp_path / "b").fit(progress=False, until=3)
    # a kill after iteration 4 was logged but before its checkpoint: the resume drops that line
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 4, "loss": 0.0}\n')
    torch.manual_seed(999)  # the resumed process starts from a different global RNG state
    m3, method3, _ = build(
        seed=7, lr_schedule="cosine", checkpoint_every=1, drop_quantile=drop_quantile
    )
    tr = Trainer(method3, m3, cfg2, tmp_path / "b")
    tr.fit(progress=False)
    assert method3.state_dict() == method.state_dict()
    if drop_quantile is not None:
        assert method.drop.updates == 6
        assert any(
            r["dropped_fraction"] > 0 for r in map(eval, open(tmp_path / "a" / "metrics.jsonl"))
        )
    assert tr.iteration == 6
    torch.testing.assert_close(params(m3), params(model), rtol=0, atol=0)
    for e_resumed, e_straight in zip(tr.ema, straight.ema, strict=True):
        torch.testing.assert_close(e_resumed, e_straight, rtol=0, atol=0)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [int(eval(line)["iteration"]) for line in lines] == [1, 2, 3, 4, 5, 6]


def test_restart_without_checkpoint_drops_the_stale_log(tmp_path):
    # an attempt killed before its first checkpoint (checkpoint_every 0 = only at the end)
    # left log lines; the rerun starts from iteration 0 and its log must not repeat iterations
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "metrics.jsonl").write_text(
        "".join(f'{{"iteration": {i}, "loss": 0.0}}\n' for i in (1, 2, 3))
    )
    model, method, cfg = build(checkpoint_every=0)
    Trainer(method, model, cfg, tmp_path).fit(progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [int(eval(line)["iteration"]) for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(eval(line)["loss"] != 0.0 for line in lines)


def test_resume_changes_result_if_rng_not_restored(tmp_path):
    # the check above can fail: a different seed gives different parameters
    a, ma, ca = build()
    b, mb, cb = build(seed=0)
    Trainer(ma, a, ca).fit(progress=False)
    Trainer(mb, b, TrainConfig(**{**cb.__dict__, "seed": 1})).fit(progress=False)
    assert not torch.equal(params(a), params(b))


def test_nan_stops_with_message_and_keeps_checkpoint(tmp_path):
    calls = {"n": 0}
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)

    def flaky_reward(x):
        calls["n"] += 1
        r = gt.reward(x)
        return r * float("nan") if calls["n"] > 3 else r

    model, method, cfg = build(reward=flaky_reward, checkpoint_every=1)
    tr = Trainer(method, model, cfg, tmp_path)
    with pytest.raises(NonFiniteError, match="iteration 4.*last good checkpoint"):
        tr.fit(progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 3
    assert torch.isfinite(torch.cat([v.flatten() for v in state["model"].values()])).all()


def test_zero_reward_scale_leaves_base_in_place():
    model, method, cfg = build(reward_scale=0.0)
    before = params(model)
    out = method.loss(model, batch_size=32, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert out.loss.item() == 0.0
    assert all(p.grad is None or torch.all(p.grad == 0) for p in model.net.parameters())
    Trainer(method, model, cfg).fit(progress=False)
    torch.testing.assert_close(params(model), before, rtol=0, atol=0)


def test_loss_gradient_only_reaches_finetuned_parameters():
    model, method, _ = build()
    model.net.net[-1].weight.data.normal_()  # move away from the base so the loss is non-zero
    out = method.loss(model, batch_size=8, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert out.loss.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())
    assert all(b.grad is None for b in model.base.buffers())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iterations": -1}, "train.iterations"),
        ({"batch_size": 0}, "train.batch_size"),
        ({"lr": float("nan")}, "train.lr"),
        ({"lr_schedule": "step"}, "train.lr_schedule"),
        ({"ema_decay": 1.5}, "train.ema_decay"),
    ],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_method_config():
    with pytest.raises(ValueError, match="num_steps"):
        AdjointMatchingConfig(num_steps=-3)
    with pytest.raises(ValueError, match="stepper.*valid"):
        AdjointMatchingConfig(stepper="heun")
    with pytest.raises(ValueError, match="diffusion"):
        AdjointMatchingConfig(diffusion=0.0)
    with pytest.raises(ValueError, match="ddpm"):
        AdjointMatchingConfig(stepper="ddpm", diffusion=0.5)
    with pytest.raises(ValueError, match="grid_warp"):
        AdjointMatchingConfig(grid_warp=-1.5)
    with pytest.raises(ValueError, match="reward_scale"):
        gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
        FineTuningProblem(
            base=gt.velocity,
            reward=gt.reward,
            schedule=gt.schedule,
            sample_shape=(1,),
            reward_scale="1",
        )


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    model, method, cfg = build(checkpoint_every=1)
    Trainer(method, model, cfg, tmp_path).fit(progress=False, until=2)
    m2, method2, cfg2 = build(checkpoint_every=1, lr=5e-4)
    with pytest.raises(ValueError, match="different config.*train.lr"):
        Trainer(method2, m2, cfg2, tmp_path).fit(progress=False)


def test_ema_is_the_warmed_up_average_of_the_iterates():
    # the EMA after n updates, recomputed from the recorded iterates with the warm-up decay
    # min(d, (1 + k) / (10 + k)): the zero-initialised start keeps no weight d ** n in it
    model, method, cfg = build(ema_decay=0.999, iterations=5)
    tr = Trainer(method, model, cfg)
    expected = params(model).clone()
    for k in range(cfg.iterations):
        tr.step()
        decay = min(0.999, (1 + k) / (10 + k))
        expected = decay * expected + (1 - decay) * params(model)
    ema = torch.cat([e.flatten() for e in tr.ema])
    torch.testing.assert_close(ema, expected, rtol=1e-6, atol=1e-7)
    # the exported weights are the EMA's
    tr.load_ema_into_model()
    torch.testing.assert_close(params(model), ema, rtol=0, atol=0)
