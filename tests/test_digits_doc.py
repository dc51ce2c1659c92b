"""docs/digits.md shows the digits results as git holds them: its embedded tables are the
committed ``results/digits/*.md`` and ``results_full/digits/*.md``, and every number in the
prose of its Results section is one of those tables' (or of the printed output it quotes), so
the page is regenerated with the results, never edited by hand."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "digits.md").read_text()
TABLES = (
    "results/digits/table.md",
    "results/digits/convergence.md",
    "results_full/digits/table.md",
    "results_full/digits/convergence.md",
)


def committed(path: str) -> str:
    """The file as git holds it (staged, else committed): a workflow run on another machine
    rewrites results/ in the working tree with other last digits."""
    out = subprocess.run(["git", "show", f":{path}"], cwd=ROOT, capture_output=True, check=True)
    return out.stdout.decode()


@pytest.mark.parametrize("path", TABLES)
def test_doc_embeds_the_committed_table(path):
    match = re.search(rf"<!-- {re.escape(path)} -->\n(.*?)<!-- end -->", DOC, re.S)
    assert match, f"docs/digits.md does not embed {path}"
    assert match.group(1) == committed(path), (
        f"docs/digits.md shows a stale {path}: paste the committed file between its markers"
    )


def test_every_number_of_the_results_prose_is_in_the_tables():
    section = DOC[DOC.index("## Results") : DOC.index("## Choices made here")]
    section = re.sub(r"<!-- results(_full)?/.*?<!-- end -->", "", section, flags=re.S)
    quoted = "".join(re.findall(r"```.*?```", section, flags=re.S))
    prose = re.sub(r"```.*?```", "", section, flags=re.S)
    sources = "".join(committed(p) for p in TABLES) + quoted
    numbers = re.findall(r"\d+\.\d+", prose)
    assert len(numbers) > 10
    missing = [n for n in numbers if n not in sources]
    assert not missing, f"numbers in docs/digits.md's Results that no table shows: {missing}"
