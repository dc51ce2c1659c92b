import fnmatch
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
sys.path.insert(0, str(ROOT))


# The two tiers. `bash scripts/test.sh` runs the fast tier (a few minutes on 2 cores): every
# capability keeps at least one test there. `bash scripts/test.sh --all` (= `pytest --all`) also
# runs the slow tier: what needs a subprocess, a cluster, a browser or more than about 20 s. The
# slow tier is defined here and only here: a test is slow if it uses the session's smoke
# workflow, or if it matches a pattern below (file, test-name glob; the reason beside it).
SLOW = {
    ("workflow/test_slurm.py", "*"): "a real Slurm cluster",
    ("workflow/test_report.py", "*"): "the smoke workflow's report, rendered in Chromium",
    ("workflow/test_rerun.py", "*"): "replans the finished smoke workflow",
    ("workflow/test_schema.py", "*"): "Snakemake dry-runs and lint in subprocesses",
    ("test_end_to_end.py", "*"): "training runs and the smoke workflow",
    ("test_distributed.py", "*"): "accelerate launch with two processes",
    ("t2i/test_t2i_cli.py", "test_two_processes_equal_one_process"): "accelerate launch",
    ("rehearse/test_protocol.py", "test_gpu_script_protocol_runs_end_to_end_on_tiny_models"): (
        "Snakemake in subprocesses, about 80 s"
    ),
    ("vision/test_workflow_images.py", "*"): "a Snakemake run in a subprocess",
    ("test_imports.py", "*"): "fresh interpreters in subprocesses",
    ("test_plain_install.py", "*"): "pip install into a fresh venv, then the README's training run",
    ("test_tiers.py", "test_the_tiers_partition_the_suite"): "collects the suite three times",
    ("test_readme.py", "test_readme_example_is_the_examples_file_and_lands_on_the_floor"): (
        "the README example's training run"
    ),
    ("test_readme.py", "test_library_page_runs_as_printed"): "every docs/library.md snippet",
    ("test_conditions.py", "test_conditional_adjoint_matching_lands_on_every_class_target"): (
        "training to convergence"
    ),
    # the text-to-image method matrix: every method on SD 1.5 stays fast, SD3 and Flux keep
    # Adjoint Matching
    ("t2i/test_t2i_finetune.py", "test_every_method_runs[[]sd3-*"): "method matrix, SD3",
    ("t2i/test_t2i_finetune.py", "test_every_method_runs[[]flux-*"): "method matrix, Flux",
}
# what the fast tier keeps of a pattern above
FAST_EXCEPTIONS = {
    ("t2i/test_t2i_finetune.py", "test_every_method_runs[sd3-adjoint_matching]"),
    ("t2i/test_t2i_finetune.py", "test_every_method_runs[flux-adjoint_matching]"),
}


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", help="run the slow tier too (tests/conftest.py)")


def is_slow(item) -> bool:
    """Whether ``item`` belongs to the slow tier (``SLOW`` above, or the smoke workflow)."""
    if "smoke_workflow" in getattr(item, "fixturenames", ()):
        return True
    path = Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix()
    if (path, item.name) in FAST_EXCEPTIONS:
        return False
    return any(p == path and fnmatch.fnmatchcase(item.name, n) for p, n in SLOW)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--all"):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


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
