"""results/README.md: every committed table and figure is listed with what it shows."""

import subprocess
from pathlib import Path

from workflow.scripts.results_index import describe, index

ROOT = Path(__file__).resolve().parents[2]


def committed_results() -> list[str]:
    """Tables and figures under results/ that git tracks. The workflow also writes files there
    that git ignores (PDFs, the report), so the file system is not the list."""
    out = subprocess.run(
        ["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return sorted(
        p
        for p in out.stdout.split()
        if Path(p).suffix in {".md", ".csv", ".png", ".pdf"} and Path(p).name != "README.md"
    )


def test_every_committed_result_is_described():
    text = index(ROOT / "results", "config/config.yaml", from_git=True)
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    files = committed_results()
    assert len(rows) == len(files) > 10
    for row in rows:
        name = row.split("](")[0][3:]
        assert describe(name), f"no description for {name}"
        assert f"results/{name}" in files, f"{name} is described but not committed"
        assert row.rstrip(" |").split("|")[-1].strip(), row  # a revision
    assert (ROOT / "results" / "README.md").is_file()
