"""Mixed precision on tiny pipelines (CPU), the convention of diffusers' training scripts:
frozen weights in bfloat16, trainable weights and AdamW's state in float32, the network under
autocast, and the sampler state, time grid, adjoint, timestep and reward input in float32.

References: diffusers ``examples/dreambooth/train_dreambooth_lora_sd3.py`` (commit 58eb52c0,
lines 1223-1241: frozen modules to ``weight_dtype``; lines 1407-1413:
``cast_training_params(models, dtype=torch.float32)``) and
``examples/text_to_image/train_text_to_image.py`` (lines 874-886: only the frozen VAE and text
encoder go to ``weight_dtype``, the trained UNet stays float32); accelerate's ``prepare``
wraps the forward in autocast (``accelerate/accelerator.py``, ``prepare_model``).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import baselines  # noqa: E402
from am.methods import AdjointMatching, AdjointMatchingConfig  # noqa: E402
from am.methods.base import FineTuningProblem, model_dtype_device  # noqa: E402
from am.models import finetunable_copy  # noqa: E402
from am.t2i.lora import DENOISER_OF, LoraSettings  # noqa: E402
from am.t2i.setup import text_to_image  # noqa: E402
from am.t2i.testing import tiny_flux, tiny_sd3, tiny_sd15  # noqa: E402
from am.train import TrainConfig, Trainer  # noqa: E402

PROMPTS = ["a cat", "a dog"]
BUILDERS = {"sd15": tiny_sd15, "sd3": tiny_sd3, "flux": tiny_flux}
SIZES = {"sd15": 16, "sd3": 16, "flux": 32}


class ResizingScorer:
    """Mean brightness after an antialiased bicubic resize, the scorers' preprocessing
    (:mod:`am.vision.preprocess`; bicubic on bfloat16 raises on the CPU); records the dtype of
    every input."""

    def __init__(self):
        self.dtypes = []

    def __call__(self, images, prompts):
        self.dtypes.append(images.dtype)
        resized = F.interpolate(images, size=(12, 12), mode="bicubic", antialias=True)
        return resized.mean(dim=(1, 2, 3))


def trainer_for(family, dtype, *, lora, old_copy=False, lr=2e-5, steps=3):
    """A one-iteration Adjoint Matching trainer on the tiny ``family`` pipeline whose frozen
    weights are in ``dtype``; ``old_copy``: the full fine-tune's trainable copy in the frozen
    weights' dtype (the behaviour before mixed precision was fixed)."""
    pipe = BUILDERS[family](seed=0).to(dtype=dtype)
    size, scorer = SIZES[family], ResizingScorer()
    settings = LoraSettings(rank=4, alpha=4.0) if lora else None
    setup = text_to_image(pipe, PROMPTS, scorer, height=size, width=size, lora=settings)
    kw = setup.finetune_kwargs()
    model = kw.pop("model")
    if model is None:
        model = copy.deepcopy(kw["base"]).requires_grad_(True) if old_copy else None
        model = model or finetunable_copy(kw["base"])
    problem = FineTuningProblem(**kw, reward_scale=100.0)
    method = AdjointMatching(AdjointMatchingConfig(num_steps=steps), problem)
    config = TrainConfig(iterations=1, batch_size=2, lr=lr, lr_schedule="constant")
    return Trainer(method, model, config), setup, scorer


def changed_fraction(trainer) -> float:
    """Fraction of the trainable entries one optimiser step changes."""
    before = [p.detach().float().clone() for p in trainer.params]
    trainer.fit(resume=False, progress=False)
    changed = sum(
        int((p.detach().float() != b).sum()) for p, b in zip(trainer.params, before, strict=True)
    )
    return changed / sum(b.numel() for b in before)


def test_bf16_full_finetune_keeps_every_update():
    """One AdamW step at the paper's lr 2e-5 on a tiny SD3 transformer: with bfloat16 frozen
    weights it changes as many entries as with float32 ones; a bfloat16 trainable copy (the
    old behaviour) rounds most updates away (5.6 % changed)."""
    f32 = changed_fraction(trainer_for("sd3", torch.float32, lora=False)[0])
    bf16_trainer = trainer_for("sd3", torch.bfloat16, lora=False)[0]
    assert {p.dtype for p in bf16_trainer.params} == {torch.float32}
    bf16 = changed_fraction(bf16_trainer)
    old = changed_fraction(trainer_for("sd3", torch.bfloat16, lora=False, old_copy=True)[0])
    assert f32 > 0.9
    assert abs(bf16 - f32) < 0.01, (bf16, f32)
    assert old < 0.5 * f32, (old, f32)
    states = [s for s in bf16_trainer.optimizer.state.values()]
    assert states and {s[k].dtype for s in states for k in ("exp_avg", "exp_avg_sq")} == {
        torch.float32
    }


def test_bf16_lora_step_changes_as_many_entries_as_float32():
    """The same step with a LoRA adapter on bfloat16 frozen weights and on float32 ones: the
    adapter (float32 either way) changes the same fraction of its entries."""
    f32 = changed_fraction(trainer_for("sd3", torch.float32, lora=True)[0])
    bf16 = changed_fraction(trainer_for("sd3", torch.bfloat16, lora=True)[0])
    assert f32 > 0.3 and abs(bf16 - f32) < 0.01, (bf16, f32)


@pytest.mark.parametrize("family", ["sd15", "sd3", "flux"])
def test_bf16_lora_state_grid_timestep_and_reward_input_are_float32(family):
    """A bfloat16 LoRA step on the CPU: the sampler state, the time grid and the adjoint
    (the model's and the base's inputs), the network's timestep and the scorer's input are
    float32; the frozen weights stay bfloat16, the adapter and AdamW's state are float32."""
    trainer, setup, scorer = trainer_for(family, torch.bfloat16, lora=True)
    velocity = trainer.model
    network = getattr(setup.pipe, DENOISER_OF[type(setup.pipe).__name__][0])
    seen, timesteps = [], []
    velocity.register_forward_pre_hook(lambda m, args: seen.append(args[:2]))

    def record_timestep(module, args, kwargs):
        timesteps.append(args[1] if len(args) > 1 else kwargs["timestep"])

    network.register_forward_pre_hook(record_timestep, with_kwargs=True)
    assert model_dtype_device(velocity)[0] == torch.float32
    trainer.fit(resume=False, progress=False)
    assert seen and {x.dtype for x, _ in seen} == {torch.float32}
    assert {t.dtype for _, t in seen} == {torch.float32}
    assert any(x.requires_grad for x, _ in seen)  # the adjoint's VJPs ran on float32 states
    assert timesteps and {t.dtype for t in timesteps} == {torch.float32}
    assert scorer.dtypes and set(scorer.dtypes) == {torch.float32}
    frozen = {p.dtype for p in network.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16}
    assert {p.dtype for p in trainer.params} == {torch.float32}
    states = trainer.optimizer.state.values()
    assert {s["exp_avg"].dtype for s in states} == {torch.float32}
    if family == "sd15":  # diffusers' timestep exactly (999 in bfloat16 would be 1000)
        t = torch.cat([t.expand(len(ts)) for (_, t), ts in zip(seen, timesteps, strict=True)])
        expected = setup.schedule.time_to_timestep(t.double()).float()
        assert torch.equal(torch.cat(timesteps), expected)
        assert (expected.bfloat16().float() - expected).abs().max() >= 1


@pytest.mark.parametrize("method", sorted(baselines.METHODS))
def test_every_method_takes_a_bf16_lora_step(method):
    """Every registered method, one step on bfloat16 SD 1.5 weights with a float32 LoRA: a
    finite loss, the adapter moves and stays float32, the scorer sees float32 images."""
    import am

    scorer = ResizingScorer()
    pipe = tiny_sd15(seed=0).to(dtype=torch.bfloat16)
    setup = text_to_image(pipe, PROMPTS, scorer, height=16, width=16, lora=LoraSettings())
    before = [p.detach().clone() for p in setup.model.parameters() if p.requires_grad]
    fields = {f.name for f in dataclasses.fields(baselines.METHODS[method].config_class)}
    config = {"num_steps": 3, **({"group_size": 2} if "group_size" in fields else {})}
    result = baselines.finetune(
        **setup.finetune_kwargs(), method=method, config=config, reward_scale=10.0,
        train=am.TrainConfig(iterations=1, batch_size=2, lr=1e-3), progress=False,
    )  # fmt: skip
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))
    after = [p for p in setup.model.parameters() if p.requires_grad]
    assert {p.dtype for p in after} == {torch.float32}
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert set(scorer.dtypes) == {torch.float32}


def test_model_dtype_device_is_the_state_dtype():
    """The most precise floating parameter, never below float32: a LoRA-like module whose first
    parameter is a frozen bfloat16 weight gets a float32 state; float64 stays float64."""
    lora_like = torch.nn.Sequential(torch.nn.Linear(2, 2).bfloat16(), torch.nn.Linear(2, 2))
    assert model_dtype_device(lora_like) == (torch.float32, torch.device("cpu"))
    assert model_dtype_device(torch.nn.Linear(2, 2).bfloat16())[0] == torch.float32
    assert model_dtype_device(torch.nn.Linear(2, 2).double())[0] == torch.float64
    assert model_dtype_device(torch.nn.Identity())[0] == torch.get_default_dtype()


@pytest.mark.parametrize("lora", [{"rank": 4, "alpha": 4.0}, None], ids=["lora", "full"])
def test_cli_bf16_finetune_on_cpu_with_a_real_scorer(tmp_path, monkeypatch, lora):
    """``model.dtype: bfloat16`` through ``python -m amcli.t2i finetune`` and ``sample`` on the
    CPU, scored by the aesthetic predictor (its bicubic resize raised on bfloat16 images
    before); a full fine-tune is saved in float32, as diffusers' ``train_text_to_image.py``
    saves its UNet."""
    import yaml

    from am.vision.testing import write_tiny_weights
    from amcli.t2i import main

    monkeypatch.setenv("AM_WEIGHTS", str(write_tiny_weights(tmp_path / "weights")))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["make-tiny", "sd15", str(tmp_path / "sd15")]) == 0
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n")
    config = {
        "model": {"path": str(tmp_path / "sd15"), "dtype": "bfloat16", "height": 16, "width": 16},
        "lora": lora,
        "reward": {"terms": {"aesthetic": 1.0}, "reward_scale": 10.0},
        "prompts": {"train": str(prompts), "eval": str(prompts)},
        "method": {"name": "adjoint_matching", "num_steps": 3},
        "train": {"iterations": 1, "batch_size": 2, "lr": 1e-3},
        "sample": {"per_prompt": 1, "num_steps": 2, "batch_size": 2},
        "device": "cpu",
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["finetune", str(path), "--run-dir", str(tmp_path / "run")]) == 0
    out = tmp_path / "samples"
    assert main(["sample", str(path), "--run-dir", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 2
    if lora is None:
        from safetensors.torch import load_file

        saved = load_file(
            tmp_path / "run" / "result" / "unet" / "diffusion_pytorch_model.safetensors"
        )
        assert {t.dtype for t in saved.values()} == {torch.float32}


def test_tf32_switch_sets_both_backends_and_the_config_key_is_typed(tmp_path):
    """``model.tf32`` (default false) switches TF32 for cuBLAS matmuls and cuDNN convolutions
    together, as the authors' ``src/train.py`` lines 27-30 (microsoft/soc-fine-tuning-sd)."""
    from am.t2i.denoisers import set_tf32
    from amcli.config import ConfigError
    from amcli.t2i import parse_t2i_config

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        set_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        set_tf32(False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        with pytest.raises(ValueError, match="tf32"):
            set_tf32("yes")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    (tmp_path / "p.txt").write_text("a cat\n")
    data = {
        "model": {"path": "m"},
        "prompts": {"train": str(tmp_path / "p.txt"), "eval": str(tmp_path / "p.txt")},
        "train": {"iterations": 1, "batch_size": 1, "lr": 1e-5},
    }
    assert parse_t2i_config(data).model.tf32 is False
    data["model"]["tf32"] = "yes"
    with pytest.raises(ConfigError, match="model.tf32"):
        parse_t2i_config(data)
