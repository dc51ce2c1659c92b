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


def test_import_am_leaves_optional_stacks_alone():
    code = (
        "import sys, am, am.problems, am.models, am.metrics, am.vision, baselines\n"
        "heavy = {'diffusers', 'sklearn', 'transformers', 'open_clip', 'peft', 'accelerate',\n"
        "         'dreamsim', 'torchvision'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_am_leaves_the_tables_and_test_stacks_alone():
    """A plain ``pip install .`` has no scipy (dev), pandas, matplotlib, seaborn, tabulate
    (tables): the library and the ground-truth command line must not import them."""
    code = (
        "import sys, am, am.problems, am.metrics, am.vision, baselines, amcli.__main__, amcli.run\n"
        "extra = {'scipy', 'pandas', 'matplotlib', 'seaborn', 'tabulate', 'diffusers',\n"
        "         'transformers'}\n"
        "print(sorted(extra & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
