"""``python -m amcli.t2i`` end to end on a tiny pipeline written to disk: config -> fine-tune
(LoRA and full) -> sample -> score_images; and the errors before any compute."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from am.vision.clip import AestheticMLP  # noqa: E402
from am.vision.testing import tiny_clip_dir  # noqa: E402
from amcli.config import ConfigError  # noqa: E402
from amcli.t2i import load_config, main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ROOT / "data" / "prompts"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("t2i"))


def make_world(tmp: Path) -> Path:
    """A tiny SD 1.5-style pipeline saved with save_pretrained, and tiny scorer weights."""
    assert main(["make-tiny", "sd15", str(tmp / "models" / "sd15")]) == 0
    weights = tmp / "weights"
    tiny_clip_dir(weights / "clip-vit-large-patch14", seed=3)
    (weights / "aesthetic").mkdir()
    torch.manual_seed(0)
    torch.save(
        AestheticMLP(16).state_dict(), weights / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
    )
    return tmp


def write_config(world, name="run.yaml", **overrides):
    cfg = {
        "model": {"path": str(world / "models" / "sd15"), "height": 16, "width": 16},
        "lora": {"rank": 4, "alpha": 8.0},
        "reward": {"terms": {"aesthetic": 1.0}, "reward_scale": 10.0},
        "prompts": {
            "train": str(PROMPTS / "demo_train.txt"),
            "eval": str(PROMPTS / "demo_eval.txt"),
        },
        "method": {"name": "adjoint_matching", "num_steps": 4},
        "train": {"iterations": 2, "batch_size": 4, "lr": 1e-2},
        "sample": {"per_prompt": 2, "num_steps": 4, "batch_size": 8},
        "device": "cpu",
    }
    for key, value in overrides.items():
        cfg[key] = value
    path = world / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(autouse=True)
def _weights(world, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(world / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(world / "hub"))


@pytest.mark.parametrize("lora", [{"rank": 4, "alpha": 8.0}, None], ids=["lora", "full"])
def test_finetune_sample_score(world, lora, capsys, caplog):
    tag = "lora" if lora else "full"
    config = write_config(world, f"{tag}.yaml", lora=lora)
    run_dir = world / "runs" / tag
    caplog.set_level("INFO", logger="amcli")
    assert main(["finetune", str(config), "--run-dir", str(run_dir)]) == 0
    saved = run_dir / ("lora" if lora else "result/unet")
    assert saved.is_dir() and json.loads((run_dir / "result.json").read_text())["iterations"] == 2
    assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "config.yaml").is_file()
    # feedback: the bar (micro-batches, iteration, loss, reward) and where the result went
    bar = capsys.readouterr().err.split("\r")[-1]
    assert "fine-tune: 100%" in bar and "2/2 [" in bar and "iteration 2/2, loss " in bar, bar
    last = caplog.records[-1].getMessage()
    assert (
        last.startswith("done: 2 iterations in ")
        and f"{run_dir} holds {saved.relative_to(run_dir)}/" in last
    )
    out_ft, out_base = world / "samples" / tag, world / "samples" / f"{tag}-base"
    assert main(["sample", str(config), "--run-dir", str(run_dir), "--out", str(out_ft)]) == 0
    assert "sample: 100%" in capsys.readouterr().err
    assert (
        caplog.records[-1]
        .getMessage()
        .startswith(f"done: {out_ft} holds 16 images (8 prompts x 2)")
    )
    assert main(["sample", str(config), "--out", str(out_base)]) == 0
    meta = pd.read_csv(out_ft / "metadata.csv")
    assert len(meta) == 16 and meta["prompt"].nunique() == 8
    import numpy as np
    from PIL import Image

    first = lambda d: torch.tensor(np.asarray(Image.open(d / "00000.png")), dtype=torch.float32)  # noqa: E731
    assert (first(out_ft) - first(out_base)).abs().max() > 0  # the fine-tuned model differs
    from amcli.score_images import main as score

    assert score([str(out_ft), "--metrics", "clipscore,aesthetic"]) == 0
    summary = pd.read_csv(out_ft / "metrics.csv")
    assert list(summary["metric"]) == ["clipscore", "aesthetic"] and (summary["prompts"] == 8).all()


@pytest.mark.parametrize("family,size", [("sd3", 16), ("flux", 32)])
def test_flow_matching_families_from_disk(world, family, size, tmp_path):
    """SD3- and Flux-style pipelines written with save_pretrained, loaded back by the CLI,
    fine-tuned (LoRA) and sampled."""
    model = tmp_path / family
    assert main(["make-tiny", family, str(model)]) == 0
    config = write_config(
        world, f"{family}.yaml", model={"path": str(model), "height": size, "width": size},
        sample={"per_prompt": 1, "num_steps": 3, "batch_size": 8, "diffusion": "ddim:0.5"},
    )  # fmt: skip
    assert main(["finetune", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "lora" / "pytorch_lora_weights.safetensors").is_file()
    out = tmp_path / "samples"
    assert main(["sample", str(config), "--run-dir", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert len(pd.read_csv(out / "metadata.csv")) == 8


def test_errors_before_any_compute(world, tmp_path, capsys):
    missing = write_config(world, "missing.yaml", model={"path": str(tmp_path / "nowhere")})
    assert main(["finetune", str(missing), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "model_index.json" in err and str(tmp_path / "nowhere") in err
    assert not (tmp_path / "r").exists()
    no_weights = write_config(world, "noweights.yaml", reward={"terms": {"pickscore": 1.0}})
    assert main(["finetune", str(no_weights), "--run-dir", str(tmp_path / "r")]) == 2
    assert "model.safetensors" in capsys.readouterr().err
    typo = write_config(world, "typo.yaml", train={"iterations": 2, "batchsize": 4})
    assert main(["check", str(typo)]) == 2
    assert "train: unknown key(s) ['batchsize']" in capsys.readouterr().err
    assert (
        main(
            [
                "sample",
                str(write_config(world)),
                "--run-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "holds no fine-tuning result" in capsys.readouterr().err


def test_unsupported_prediction_type_is_refused(world, tmp_path, capsys):
    import shutil

    model = tmp_path / "sd15"
    shutil.copytree(world / "models" / "sd15", model)
    config_file = model / "scheduler" / "scheduler_config.json"
    scheduler = json.loads(config_file.read_text())
    scheduler["prediction_type"] = "sample"
    config_file.write_text(json.dumps(scheduler))
    config = write_config(
        world, "sample_pred.yaml", model={"path": str(model), "height": 16, "width": 16}
    )
    assert main(["finetune", str(config), "--run-dir", str(tmp_path / "r")]) == 2
    assert "prediction_type 'sample'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["sd15_authors.yaml", "paper.yaml", "t2i_tiny.yaml"])
def test_shipped_configs_parse(name, tmp_path, monkeypatch):
    """Laid out as in the repository (config/, data/prompts/ where `amcli.prompts` fetches),
    read from another working directory: the prompt files are relative to the config file."""
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / name
    path.write_text((ROOT / "config" / name).read_text())
    data = yaml.safe_load(path.read_text())
    (tmp_path / "data" / "prompts").mkdir(parents=True)
    for key in ("train", "eval"):
        (tmp_path / "config" / data["prompts"][key]).write_text("a prompt\n")
    monkeypatch.chdir(tmp_path / "data")
    cfg = load_config(str(path))
    assert cfg.method == "adjoint_matching"
    assert cfg.prompts.eval == str(
        tmp_path / "data" / "prompts" / Path(data["prompts"]["eval"]).name
    )
    if name != "t2i_tiny.yaml":
        assert cfg.reward.terms == {"imagereward": 1.0}
        # the authors drop high-loss terms; the paper's protocol does not
        assert cfg.method_config.drop_quantile == (0.9 if name == "sd15_authors.yaml" else None)
    (tmp_path / "config" / data["prompts"]["eval"]).unlink()
    with pytest.raises(ConfigError, match="prompts.eval"):
        load_config(str(path))


def test_two_processes_equal_one_process(world, tmp_path):
    """``accelerate launch`` with two CPU processes (gloo) fine-tunes the tiny pipeline's LoRA
    to exactly the weights one process reaches with the same micro-batches: each process draws
    its own noise and prompts, the gradients are averaged."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        pytest.skip("accelerate is not installed in this environment")
    train = {"iterations": 2, "batch_size": 4, "lr": 1e-2, "micro_batches": 2}
    config = write_config(world, "ddp.yaml", train=train)
    assert main(["finetune", str(config), "--run-dir", str(tmp_path / "one")]) == 0
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "amcli.t2i", "finetune",
           str(config), "--run-dir", str(tmp_path / "two")]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    one = load_file(tmp_path / "one" / "lora" / "pytorch_lora_weights.safetensors")
    two = load_file(tmp_path / "two" / "lora" / "pytorch_lora_weights.safetensors")
    assert one.keys() == two.keys() and one
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=0)
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
