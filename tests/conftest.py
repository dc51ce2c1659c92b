import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


ROOT = Path(__file__).resolve().parents[1]


def snakemake_command(*args: str) -> list[str]:
    """The project's Snakefile under this interpreter's snakemake (skips where it is missing)."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "snakemake").exists():
        pytest.skip("snakemake not installed in this environment")
    return [str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), *args]


def snakemake_env() -> dict:
    import os

    bin_dir = Path(sys.executable).parent
    return {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def smoke_workflow(tmp_path_factory) -> Path:
    """The smoke config's whole workflow, run once per session in a temporary folder (results in
    ``results/``): the end-to-end checks and the report test read it."""
    import subprocess

    cmd = snakemake_command(
        "--configfile",
        str(ROOT / "config" / "smoke.yaml"),
        "--config",
        "results_dir=results",
        "--cores",
        "2",
        "-q",
    )
    folder = tmp_path_factory.mktemp("smoke")
    out = subprocess.run(cmd, cwd=folder, env=snakemake_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return folder


def job_stats(text: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's "Job stats" table in a dry run's output ({} if none)."""
    if "Job stats:" not in text:
        return {}
    counts = {}
    for line in text.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts
