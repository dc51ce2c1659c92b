"""results/README.md: every committed table and figure is listed with what it shows."""

from pathlib import Path

from workflow.scripts.results_index import describe, index

ROOT = Path(__file__).resolve().parents[2]


def test_every_committed_result_is_described():
    text = index(ROOT / "results", "config/config.yaml", from_git=True)
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    files = sorted(
        p
        for p in (ROOT / "results").rglob("*")
        if p.suffix in {".md", ".csv", ".png", ".pdf"} and p.name != "README.md"
    )
    assert len(rows) == len(files) > 10
    for row in rows:
        name = row.split("](")[0][3:]
        assert describe(name), f"no description for {name}"
        assert row.rstrip(" |").split("|")[-1].strip(), row  # a revision
    assert (ROOT / "results" / "README.md").is_file()
