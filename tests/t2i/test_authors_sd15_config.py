"""The Adjoint Matching authors' Stable Diffusion 1.5 run: the options of
config/sd15_authors.yaml that are settings rather than formulas (no clipping, their budget,
their warm-up, TF32), each against their code (microsoft/soc-fine-tuning-sd at 489f904; file
and line cited at each), and the CLI passing every option on. The formulas (schedule, step,
loss, prompt order) are in test_authors_sd15.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("diffusers")

import test_t2i_cli  # noqa: E402

from am.t2i.schedules import schedule_from_scheduler  # noqa: E402
from am.t2i.testing import tiny_sd15  # noqa: E402
from am.train_config import TrainConfig  # noqa: E402

# the CLI tests' tiny pipeline saved to disk and tiny scorer weights (their fixtures)
world, _weights, write_config = test_t2i_cli.world, test_t2i_cli._weights, test_t2i_cli.write_config

ROOT = Path(__file__).resolve().parents[2]


def authors_yaml() -> dict:
    return yaml.safe_load((ROOT / "config" / "sd15_authors.yaml").read_text())


def test_items_4_6_no_clipping_and_their_budget():
    """(4) configs/multi_prompt.yaml: gradient_clip 0.0 (Lightning: no clipping); (6)
    max_epochs 10 over prompt_files/refl_data.json's 10000 prompts = 100k rollouts."""
    train = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in authors_yaml()["train"].items()})  # fmt: skip
    assert train.grad_clip is None
    assert train.iterations * train.batch_size == 10 * 10_000


def test_item_7_warmup_is_their_lambdalr():
    """(7) src/trainers/soc_trainer.py lines 177-187: LambdaLR(step < 20: step / 20), stepped
    once per optimizer step; the lr of each of the first 30 updates, read off torch's scheduler."""
    warmup_steps, lr = 20, 3e-6

    def lr_lambda(current_step):
        if current_step < warmup_steps:
            return float(current_step) / float(max(1, warmup_steps))
        return 1.0

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lr_lambda)
    theirs = []
    for _ in range(30):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    config = TrainConfig(lr=lr, lr_schedule="constant", warmup_steps=warmup_steps)
    ours = [config.learning_rate(i) for i in range(30)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    assert authors_yaml()["train"]["warmup_steps"] == 20


def test_item_10_tf32_as_their_train_script():
    """(10) src/train.py lines 27-30: both TF32 flags on when use_tf32."""
    from am.t2i.denoisers import set_tf32

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        set_tf32(authors_yaml()["model"]["tf32"])
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_the_cli_passes_every_option_on(world, monkeypatch):
    """config -> fine-tune and sample: the schedule, prompt order and method options of
    sd15_authors.yaml reach the problem (a tiny pipeline from disk, 10 steps)."""
    import am.t2i.setup as setup_module
    from am.t2i.schedules import FineTuningVPSchedule
    from amcli.t2i import main

    seen = []
    for name in ("text_to_image", "denoiser_velocity"):
        real = getattr(setup_module, name)

        def spy(*args, _real=real, **kwargs):
            seen.append(kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(setup_module, name, spy)
    theirs = authors_yaml()
    method = theirs["method"] | {"num_steps": 10, "prompt_dropout": 0.2}
    train = theirs["train"] | {"iterations": 2, "batch_size": 4, "micro_batches": 2,
                               "checkpoint_every": 0}  # fmt: skip
    config = write_config(world, "authors.yaml", method=method, train=train,
                          sample={"per_prompt": 1, "num_steps": 10, "batch_size": 9})  # fmt: skip
    data = yaml.safe_load(config.read_text())
    data["model"] |= {k: theirs["model"][k] for k in ("betas", "final_alpha_bar")}
    data["prompts"]["order"] = "epochs"
    config.write_text(yaml.safe_dump(data))
    run_dir = world / "runs" / "authors"
    assert main(["finetune", str(config), "--run-dir", str(run_dir)]) == 0
    assert main(["sample", str(config), "--out", str(world / "samples" / "authors")]) == 0
    options = dict(betas=(0.002, 0.009), final_alpha_bar="half", num_steps=10)
    assert seen[0]["schedule_options"] == options and seen[0]["prompt_order"] == "epochs"
    assert [s["schedule_options"] for s in seen[1:]] == [options, options]  # training, sampling
    schedule = schedule_from_scheduler(tiny_sd15().scheduler, **options)
    assert isinstance(schedule, FineTuningVPSchedule)


@pytest.mark.parametrize(
    "change,key",
    [
        ({"model": {"betas": [0.009, 0.002]}}, "model.betas"),
        ({"model": {"final_alpha_bar": "noisy"}}, "model.final_alpha_bar"),
        ({"method": {"num_steps": 30}}, "method.num_steps"),
        ({"model": {"final_alpha_bar": "clean"}}, "method.target"),
        ({"prompts": {"order": "shuffled"}}, "prompts.order"),
        ({"method": {"steps": {"mode": "halves"}}}, "method.steps"),
        ({"method": {"prompt_dropout": 1.5}}, "method.prompt_dropout"),
        ({"train": {"warmup_steps": -1}}, "train.warmup_steps"),
    ],
)
def test_bad_authors_options_name_their_key(world, change, key):
    """Each option's mistake is one error naming its key, before anything loads."""
    from amcli.config import ConfigError
    from amcli.t2i import parse_t2i_config

    data = yaml.safe_load(write_config(world, "bad.yaml").read_text())
    theirs = authors_yaml()
    data["model"] |= {k: theirs["model"][k] for k in ("betas", "final_alpha_bar")}
    data["method"] = theirs["method"]
    for section, values in change.items():
        data[section] = data[section] | values
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_t2i_config(data)
