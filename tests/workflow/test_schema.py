"""The workflow's config schema (workflow/schemas/config.schema.yaml) stops a wrong key or
value before any job, naming it; the shipped configs pass; the workflow lints clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


@pytest.mark.parametrize("name", ["config.yaml", "quick.yaml", "smoke.yaml"])
def test_shipped_configs_pass(name, tmp_path):
    out = dry_run(ROOT / "config" / name, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]


def test_lint_is_clean():
    if not SNAKEMAKE.exists():
        pytest.skip("snakemake not installed in this environment")
    out = subprocess.run([str(SNAKEMAKE), "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "good condition" in out.stdout + out.stderr, out.stdout[-3000:]
