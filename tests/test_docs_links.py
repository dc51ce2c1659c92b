"""Every relative link of the user docs (README, CHANGELOG, docs/*.md, the package READMEs) points
at a file that exists and, with an anchor, at a heading of that file; and no doc's prose pins a
claim to a commit hash (a release name or a command says where a number comes from); and every
config file a doc names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "baselines" / "README.md"]
    + list((ROOT / "docs").glob("*.md"))
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code (links there are examples)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, a repeated
    heading numbered from -1."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    bad = []
    for target in LINK.findall(prose(doc.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            bad.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            bad.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not bad, bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_commit_hashes_in_prose(doc):
    words = re.findall(r"\b[0-9a-f]{7,40}\b", prose(doc.read_text()))
    hashes = [w for w in words if re.search(r"[a-f]", w) and re.search(r"[0-9]", w)]
    assert not hashes, hashes


@pytest.mark.parametrize(
    "doc",
    [d for d in DOCS if d.name != "CHANGELOG.md"],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_named_configs_exist(doc):
    """A config file a user doc names (``config/NAME.yaml``, in prose or in a command) exists; the
    CHANGELOG may name removed ones."""
    names = set(re.findall(r"(?<![\w/])config/[\w.-]+\.yaml", doc.read_text()))
    missing = sorted(n for n in names if not (ROOT / n).is_file())
    assert not missing, missing


def test_anchor_slugs_follow_github():
    doc = ROOT / "docs" / "implementation.md"
    assert {"why-no-clipping-and-a-guard", "why-the-warped-grid"} <= anchors(doc)
