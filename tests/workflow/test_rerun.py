"""After a config change the workflow plans only what the change touches (a dry run in the
folder of a finished smoke workflow): a method's new setting reruns that method's runs on the
exact problems and nothing else there; the digits benchmark reruns as a whole."""

from __future__ import annotations

import subprocess

import yaml

from tests.conftest import ROOT, job_stats, snakemake_command, snakemake_env


def _plan(folder, config: dict | None = None) -> dict[str, int]:
    """Rule -> planned job count (the smoke config itself when ``config`` is None)."""
    path = ROOT / "config" / "smoke.yaml"
    if config is not None:
        path = folder / "edited.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))  # key order is part of params
    cmd = snakemake_command(
        "--configfile", str(path), "--config", "results_dir=results", "--cores", "1", "-n"
    )
    out = subprocess.run(cmd, cwd=folder, env=snakemake_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return job_stats(out.stdout + out.stderr)


def test_a_finished_workflow_plans_nothing(smoke_workflow):
    assert _plan(smoke_workflow) == {}


def test_a_config_change_reruns_only_what_it_touches(smoke_workflow):
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config["digits"]["reward_scales"].append(3.0)
    config["methods"]["draft"]["num_steps"] = 6
    jobs = _plan(smoke_workflow, config)
    methods = len(config["digits"]["methods"])
    # digits: the benchmark's settings live in one file (digits.yaml) that every digits job
    # reads, so any change to them reruns the whole benchmark (pretraining is cached on disk),
    # including the new scale's runs
    assert jobs.get("digits_run") == methods * len(config["digits"]["reward_scales"])
    # the grid: DRaFT's runs (two problems at lambda 1) and the comparison, not Theorem 1
    assert jobs.get("finetune", 0) + jobs.get("finetune_long", 0) == 2
    assert jobs.get("evaluate") == 2
    assert "table" not in jobs and "figure2" not in jobs
    assert not any(rule.startswith("t2i") for rule in jobs)
