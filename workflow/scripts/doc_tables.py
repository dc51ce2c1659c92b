"""The results tables a doc shows, copied from the results files and refreshed from them.

    python -m workflow.scripts.doc_tables [--check] DOC.md ...

A Markdown table right below a mark ``<!-- table: PATH -->`` is PATH's table (the first one in
that file); ``<!-- table: PATH column=value ... -->`` is its header and the rows whose cells in
those columns read so. PATH is read as git holds it (staged, else committed), since the docs
describe the committed results and a run rewrites them in the working tree: after a run,
``git add results``, then this command rewrites every marked table. With ``--check`` it rewrites
nothing, names the tables that differ and exits 1. ``tests/test_readme.py`` keeps
``docs/results.md`` equal to what this prints, and every table of it marked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["MARK", "git_held", "marked_tables", "select", "refresh"]

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"<!-- table: (\S+)((?: \S+=\S+)*) -->")


def git_held(path: str, root: Path = ROOT) -> str:
    """``path`` (relative to ``root``) as git holds it: staged, else committed."""
    return subprocess.run(
        ["git", "show", f":{path}"], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def select(text: str, filters: dict[str, str]) -> list[str]:
    """The lines of the first Markdown table of ``text``: header, separator and the rows whose
    cells in the ``filters`` columns equal their values (all rows without filters)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    header, rows = lines[start : start + 2], lines[start + 2 : end]
    names = _cells(header[0])
    unknown = set(filters) - set(names)
    if unknown:
        raise KeyError(f"no column {sorted(unknown)} in the table (columns: {names})")
    cols = {names.index(k): v for k, v in filters.items()}
    kept = [r for r in rows if all(_cells(r)[i] == v for i, v in cols.items())]
    if not kept:
        raise ValueError(f"no row has {filters}")
    return header + kept


def marked_tables(text: str) -> list[tuple[int, int, str | None, dict[str, str]]]:
    """Each table of ``text`` as ``(first line, line after it, PATH, filters)`` from the mark on
    the line above; PATH is None for a table without a mark."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].startswith("|"):
            j += 1
        m = MARK.fullmatch(lines[i - 1].strip()) if i else None
        filters = dict(f.split("=", 1) for f in m.group(2).split()) if m else {}
        out.append((i, j, m.group(1) if m else None, filters))
        i = j
    return out


def refresh(text: str, read: Callable[[str], str] = git_held) -> str:
    """``text`` with every marked table replaced by what its mark selects from ``read(PATH)``."""
    lines = text.splitlines()
    for start, end, path, filters in reversed(marked_tables(text)):
        if path is not None:
            lines[start:end] = select(read(path), filters)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for doc in (Path(a) for a in argv if a != "--check"):
        text = doc.read_text()
        new = refresh(text)
        if new != text:
            stale.append(str(doc))
            if not check:
                doc.write_text(new)
    if stale:
        print(("stale: " if check else "rewrote: ") + ", ".join(stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
