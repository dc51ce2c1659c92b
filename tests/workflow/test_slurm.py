"""The smoke workflow through snakemake-executor-plugin-slurm and the shipped Slurm profile, on a
real single-node Slurm cluster that the test starts and stops (tests/workflow/slurm_cluster.py).
Skips, saying why, where Slurm cannot run (not root, packages missing; CI installs them)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import SlurmCluster, SlurmUnavailable  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_workflow_on_a_real_slurm_cluster(tmp_path):
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed")
    try:
        cluster = SlurmCluster(tmp_path / "slurm")
    except SlurmUnavailable as e:
        pytest.skip(f"no Slurm here: {e}")
    bin_dir = Path(sys.executable).parent
    work = tmp_path / "work"
    work.mkdir()
    with cluster:
        env = {**cluster.env, "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        cmd = [str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
               "--configfile", str(ROOT / "config" / "smoke.yaml"),
               "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"),
               "--jobs", "4", "--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", "1", "--quiet"]  # fmt: skip
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
        jobs = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j"], env=cluster.env,
                              capture_output=True, text=True).stdout.split()  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(jobs) >= 10, jobs  # every rule ran as a Slurm job (MinJobAge keeps them listed)
    table = pd.read_csv(work / "results_smoke" / "comparison.csv")
    assert len(table) > 0 and (work / "results_smoke" / "digits" / "table.md").stat().st_size > 0
    assert not Path("/etc/slurm/slurm.conf").is_symlink()  # the cluster cleaned up after itself
