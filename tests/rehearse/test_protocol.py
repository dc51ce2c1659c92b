"""``python -m amcli.t2i rehearse protocol``: the configs it writes are the workflow's (checked
as the workflow checks them, fast), and the whole protocol runs on tiny models through the
workflow's rules, through the GPU script's ``--tiny --protocol`` path (slow: Snakemake in
subprocesses)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amcli.rehearse.protocol import EVAL_PROMPTS, GPU_CONFIG, METHOD, _sizes, configs
from amcli.t2i_config import parse_t2i_config
from amcli.t2i_runs import t2i_run_config

ROOT = Path(__file__).resolve().parents[2]


def _run_config(tmp_path, workflow, run):
    """The method's run config as the workflow's t2i rules build and check it."""
    (tmp_path / "eval_prompts.txt").write_text("\n".join(EVAL_PROMPTS) + "\n")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    data = t2i_run_config(workflow["t2i"], METHOD, root=ROOT)
    return parse_t2i_config(data)


@pytest.mark.parametrize("family", ["sd15", "sd35m"])
@pytest.mark.parametrize("steps", [4, 40])
def test_configs_are_the_gpu_configs_reduced(tmp_path, family, steps):
    run, workflow = configs(tmp_path, tmp_path / "models", family, size=256, steps=steps,
                            iterations=2)  # fmt: skip
    gpu = yaml.safe_load(GPU_CONFIG.read_text())
    assert workflow["image_metrics"] == gpu["image_metrics"]
    assert workflow["t2i"]["config"] == str(tmp_path / "run.yaml")
    cfg = _run_config(tmp_path, workflow, run)
    assert cfg.model.path == str(tmp_path / "models" / family)
    assert (cfg.model.height, cfg.model.width, cfg.model.dtype) == (256, 256, "bfloat16")
    assert cfg.model.gradient_checkpointing and cfg.lora.rank == 4
    assert cfg.model.variant == ("fp16" if family == "sd15" else None)
    assert (cfg.train.iterations, cfg.train.batch_size) == (2, 1)
    assert cfg.reward.terms == {"imagereward": 1.0}
    assert cfg.method_config.num_steps == steps and cfg.sample.num_steps == steps
    assert run["method"] == {"name": METHOD, **workflow["t2i"]["methods"][METHOD]}
    share = max(1, steps // 4)  # the paper's 10 random + the last 10 of 40 steps
    assert (cfg.method_config.steps.num_random, cfg.method_config.steps.num_last) == (share, share)
    assert cfg.method_config.clip_multiplier == gpu["t2i"]["methods"][METHOD]["clip_multiplier"]


def test_tiny_scale_leaves_out_the_scorers_no_command_line_loads(tmp_path):
    run, workflow = configs(tmp_path, tmp_path, "sd15", size=16, steps=4, iterations=2,
                            checkpointing=False, scale="tiny")  # fmt: skip
    assert workflow["image_metrics"] == ["clipscore", "pickscore", "aesthetic"]
    cfg = _run_config(tmp_path, workflow, run)
    assert cfg.reward.terms == {"clipscore": 1.0} and not cfg.model.gradient_checkpointing


def test_sizes_for_all_or_per_family():
    assert _sizes(["256"], ["sd15", "sd35m"]) == {"sd15": 256, "sd35m": 256}
    assert _sizes(["sd15=512", "sd35m=1024"], ["sd15", "sd35m"]) == {"sd15": 512, "sd35m": 1024}
    with pytest.raises(SystemExit, match="no size for sd35m"):
        _sizes(["sd15=512"], ["sd15", "sd35m"])


def test_gpu_script_protocol_runs_end_to_end_on_tiny_models(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "FAMILIES": "sd15", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = ["bash", "benchmarks/gpu_rehearsal.sh", "--tiny", "--protocol"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stages = (tmp_path / "protocol" / "protocol.md").read_text()
    for stage in ("write", "finetune", "sample", "sample_base", "score", "table"):
        assert f"| sd15 | {stage} |" in stages
    assert "| scorers | write |" in stages
    assert all(line.endswith("| 0 |") for line in stages.splitlines()[2:]), stages
    table = (tmp_path / "protocol" / "sd15" / "results" / "t2i" / "table.md").read_text()
    assert "| base " in table and f"| {METHOD} " in table and "pickscore" in table
    # the fine-tuned model's samples came from its LoRA, loaded back by diffusers
    run = tmp_path / "protocol" / "sd15" / "runs" / "t2i" / METHOD
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert len(list((run / "samples").glob("*.png"))) == 4


def test_write_with_no_family_writes_the_scorers_alone(tmp_path):
    import json

    from amcli.t2i import main

    assert main(["rehearse", "write", "--out", str(tmp_path), "--families", "--scale", "tiny",
                 "--scorers"]) == 0  # fmt: skip
    record = json.loads((tmp_path / "rehearsal.json").read_text())
    assert record["pipelines"] == {} and record["scorers"]["scale"] == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rehearsal.json", "scorers"]
