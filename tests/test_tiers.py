"""The two test tiers (tests/conftest.py): the fast tier holds no slow test, the slow tier is
declared in one place, and the two tiers partition the suite."""

import subprocess
import sys
from pathlib import Path

from conftest import SLOW, TESTS

# test modules that have no fast test, and why: each needs a subprocess, a cluster or a browser
ONLY_SLOW = {
    "test_distributed.py": "accelerate launch",
    "test_end_to_end.py": "training runs and the smoke workflow",
    "test_imports.py": "fresh interpreters",
    "test_plain_install.py": "a fresh venv and a training run",
    "vision/test_workflow_images.py": "a Snakemake run",
    "workflow/test_slurm.py": "a Slurm cluster",
    "workflow/test_report.py": "the smoke workflow and Chromium",
    "workflow/test_rerun.py": "the smoke workflow",
    "workflow/test_schema.py": "Snakemake subprocesses",
}


def test_the_fast_tier_holds_no_slow_test(request):
    if request.config.getoption("--all"):
        return
    slow = [i.nodeid for i in request.session.items if i.get_closest_marker("slow")]
    assert not slow


def test_the_slow_tier_is_declared_only_in_conftest():
    needle = "mark." + "slow"  # spelled so that this file does not match itself
    for path in TESTS.rglob("*.py"):
        if path.name != "conftest.py":
            assert needle not in path.read_text(), f"{path}: declare slow tests in conftest"


def collect(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider", *args],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return {line for line in out.stdout.splitlines() if "::" in line}


def test_the_tiers_partition_the_suite():
    fast, everything, slow = collect(), collect("--all"), collect("--all", "-m", "slow")
    assert fast and slow and not fast & slow
    assert fast | slow == everything
    for path, name in SLOW:  # no pattern outlives its tests
        assert any(t.startswith(f"tests/{path}::") for t in slow), (path, name)
    modules = {t.split("::")[0].removeprefix("tests/") for t in everything}
    with_fast = {t.split("::")[0].removeprefix("tests/") for t in fast}
    assert modules - with_fast == set(ONLY_SLOW), "every capability keeps a fast test"
    assert all((TESTS / m).is_file() for m in ONLY_SLOW)
    assert Path(TESTS / "conftest.py").is_file()
