"""Every subpackage imports on its own in a fresh interpreter (no import cycle depends on what
was imported first), and ``import am`` keeps the heavy optional stacks off its path."""

import subprocess
import sys

import pytest

PACKAGES = [
    "am", "am.conditions", "am.metrics", "am.methods", "am.models", "am.problems",
    "am.rewards", "am.schedules", "am.vision", "baselines", "amcli",
]  # fmt: skip


@pytest.mark.parametrize("name", PACKAGES)
def test_imports_alone(name):
    out = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def loaded(imports: str, names: set[str]) -> str:
    """Which of ``names`` a fresh interpreter holds after ``import <imports>`` (printed list)."""
    code = f"import sys, {imports}\nprint(sorted(set({sorted(names)!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_am_leaves_optional_stacks_alone():
    heavy = {"diffusers", "sklearn", "transformers", "open_clip", "peft", "accelerate",
             "dreamsim", "torchvision"}  # fmt: skip
    out = loaded("am, am.problems, am.models, am.metrics, am.vision, baselines", heavy)
    assert out == "[]"


def test_import_am_leaves_the_tables_and_test_stacks_alone():
    """A plain ``pip install .`` has no scipy (dev), pandas, matplotlib, seaborn, tabulate
    (tables): the library and the ground-truth command line must not import them."""
    extra = {"scipy", "pandas", "matplotlib", "seaborn", "tabulate", "diffusers", "transformers"}
    out = loaded(
        "am, am.problems, am.metrics, am.vision, baselines, amcli.__main__, amcli.run", extra
    )
    assert out == "[]"
