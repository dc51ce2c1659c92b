"""The workflow's config schema (workflow/schemas/config.schema.yaml) stops a wrong key or
value before any job, naming it; the shipped configs pass; the workflow lints clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import job_stats

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def dry_run(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    if not SNAKEMAKE.exists():
        pytest.skip("snakemake not installed in this environment")
    cmd = [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(config),
           "--cores", "1", "-n", "--quiet"]  # fmt: skip
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda c: c.update(grdi=c.pop("grid")), "grdi"),
        (lambda c: c["grid"].update(seeds=["zero"]), "zero"),
        (lambda c: c["grid"].update(methods="some"), "some"),
        (lambda c: c["figure2"].update(reward_scael=1.0), "reward_scael"),
    ],
    ids=["top-level typo", "seed not an integer", "methods not 'all' or a list", "nested typo"],
)
def test_schema_rejects_bad_configs_by_name(edit, needle, tmp_path):
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    edit(config)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    out = dry_run(bad, tmp_path)
    assert out.returncode != 0
    assert needle in out.stdout + out.stderr
    assert not any(tmp_path.glob("runs*"))


@pytest.mark.parametrize("name", ["config.yaml", "full.yaml", "smoke.yaml", "ablation.yaml"])
def test_shipped_configs_pass(name, tmp_path):
    out = dry_run(ROOT / "config" / name, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]


def test_lint_is_clean():
    if not SNAKEMAKE.exists():
        pytest.skip("snakemake not installed in this environment")
    out = subprocess.run([str(SNAKEMAKE), "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "good condition" in out.stdout + out.stderr, out.stdout[-3000:]


def planned_jobs(config: Path, cwd: Path) -> dict[str, int]:
    """Rule -> job count of a dry run from an empty folder (Snakemake's "Job stats" table)."""
    if not SNAKEMAKE.exists():
        pytest.skip("snakemake not installed in this environment")
    cmd = [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(config),
           "--cores", "1", "-n"]  # fmt: skip
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return job_stats(out.stdout + out.stderr)


def test_default_dry_run_plans_the_config(tmp_path):
    """The default config's dry run plans the jobs its grid implies, counted from the config by
    the workflow's own grid code and by hand: every run configured, trained and evaluated once
    (the Theorem 1 runs are grid runs), the digits grid, one figure per Theorem 1 problem."""
    from amcli.grid import all_runs, figure2_runs, long_runs, run_configs
    from baselines.registry import METHODS

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    runs = run_configs(config)
    # by hand: the Theorem 1 trio on 1-D, every registered method and variant on 2-D and 10-D
    tags = len(METHODS) + len(config["variants"])
    assert len(runs) == len(all_runs(config)) == 3 + 2 * tags
    digits = config["digits"]
    n_digits = len(digits["methods"]) * len(digits["reward_scales"]) * len(digits["seeds"])
    jobs = planned_jobs(ROOT / "config" / "config.yaml", tmp_path)
    assert jobs["run_config"] == jobs["evaluate"] == len(runs)
    assert jobs["finetune_long"] == len(long_runs(config)) == 3
    assert jobs["finetune"] + jobs["finetune_long"] == len(runs)
    assert jobs["figure2"] == len({r["problem"] for r in figure2_runs(config)}) == 3
    assert jobs["digits_run"] == n_digits == 18
    # the convergence figure: its methods also at each shorter budget
    conv = digits["convergence"]
    n_budget = len(conv["methods"]) * len(conv["iterations"]) * len(digits["reward_scales"])
    assert jobs["digits_budget"] == n_budget * len(digits["seeds"]) == 16
    assert jobs["digits_base"] == 1 + len(digits["guidance"])
    for rule in ("table", "comparison", "digits_pretrain", "digits_reference", "digits_report",
                 "digits_convergence",
                 "report_table_ground_truth", "report_table_comparison", "report_table_digits",
                 "results_index", "all"):  # fmt: skip
        assert jobs[rule] == 1, rule
    assert not any(rule.startswith("t2i") for rule in jobs)  # no text-to-image in the default


def test_t2i_gpu_config_plans_gpu_jobs(tmp_path):
    """config/t2i_gpu.yaml (the paper's protocol, no CPU experiments) plans one fine-tune and one
    sample job per method, the base's samples, a scoring job per sample folder, and asks for a
    GPU in each of them. The published prompt files are not in the repository (amcli.prompts
    fetches them): the demonstration prompts stand in for the plan."""
    paper = (ROOT / "config" / "paper.yaml").read_text()
    paper = paper.replace(
        "../data/prompts/refl_train.txt", str(ROOT / "data/prompts/demo_train.txt")
    )
    paper = paper.replace(
        "../data/prompts/imagereward_benchmark.txt", str(ROOT / "data/prompts/demo_eval.txt")
    )
    (tmp_path / "paper.yaml").write_text(paper)
    config = yaml.safe_load((ROOT / "config" / "t2i_gpu.yaml").read_text())
    config["t2i"]["config"] = str(tmp_path / "paper.yaml")
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(config))
    methods = len(config["t2i"]["methods"])
    jobs = planned_jobs(tmp_path / "gpu.yaml", tmp_path)
    assert jobs["t2i_finetune"] == jobs["t2i_sample"] == methods
    assert jobs["t2i_sample_base"] == 1 and jobs["score_images"] == methods + 1
    assert not {"run_config", "digits_run", "table"} & set(jobs)
    cmd = [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--configfile",
           str(tmp_path / "gpu.yaml"), "--cores", "1", "-n", "-p"]  # fmt: skip
    plan = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True).stdout
    for rule in ("t2i_finetune", "t2i_sample", "score_images"):
        block = plan.split(f"rule {rule}:")[1].split("\n\n")[0]
        assert "gpu=1" in block, (rule, block)
    assert "--device cuda" in plan.split("rule score_images:")[1]
