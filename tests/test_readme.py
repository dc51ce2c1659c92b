"""The README and docs/library.md as a reader runs them: every Python block as printed, the
README's library example against the noise floor, every shell command of the README checked
(dry runs), the README's results tables equal to what the results tables regenerate, and the
tables of docs/results.md equal to the committed results files."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_readme_example_is_the_examples_file_and_lands_on_the_floor(tmp_path, capfd):
    code = blocks(README, "python")[0]
    assert code == (ROOT / "examples" / "quickstart.py").read_text()
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 (the README as printed)
    printed = capfd.readouterr().out
    # what the README says it printed has the same form as what it prints now
    shown = README.split("It printed", 1)[1].split("```", 2)[1].strip()
    pattern = r"\d+ s; sliced_w1 to the exact tilt [\d.]+ \(noise floor [\d.]+, [\d.]+x; base model [\d.]+\)"
    assert re.fullmatch(pattern, shown), shown
    assert re.search(pattern, printed), printed
    d = scope["problem"].distance_to_target(scope["x"])
    # the base is ~15 floors away; the fine-tuned model within 1.5 floors (measured: 0.9-1.2)
    assert d.base_distance > 10 * d.noise_floor
    assert d.distance < 1.5 * d.noise_floor, d


def test_library_page_runs_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the page writes runs/ring
    scope: dict = {}
    for i, code in enumerate(blocks((ROOT / "docs" / "library.md").read_text(), "python")):
        exec(compile(code, f"docs/library.md block {i}", "exec"), scope)  # noqa: S102
    assert (tmp_path / "runs" / "ring" / "checkpoint.pt").exists()
    # the fine-tuned model moved towards the reward; DRaFT collapsed the spread
    assert scope["result"].history[-1]["reward"] > scope["result"].history[0]["reward"] + 1
    assert scope["x"].std(0).sum() < 0.5 * scope["x_base"].std(0).sum()


def test_readme_shell_commands_are_valid():
    """Each command of a bash block: the scripts exist; Snakemake commands plan without error
    (a dry run, as the long jobs cannot run in a test)."""
    commands = [
        line.split("#")[0].strip()
        for block in blocks(README, "bash")
        for line in block.splitlines()
        if line.split("#")[0].strip()
    ]
    assert "bash scripts/test.sh" in commands
    for cmd in commands:
        argv = shlex.split(cmd)
        if argv[:2] == ["bash", "scripts/reproduce.sh"]:
            out = subprocess.run(
                ["snakemake", "-n", "--cores", "1", *argv[2:]],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            assert out.returncode == 0, out.stderr[-2000:]
        elif argv[0] == "bash":
            assert (ROOT / argv[1]).is_file(), cmd
        elif "pip" in cmd:
            assert "--index-url https://download.pytorch.org/whl/cpu" in cmd
        else:
            pytest.fail(f"the README shows a command this test does not check: {cmd}")


def test_readme_tables_are_the_regenerated_summary(tmp_path):
    """The README's tables are the summary of the results as git holds them (staged, else
    committed): a run of the main job rewrites results/ in the working tree, on another machine
    with other floating-point rounding, and that must not make the tests fail."""
    from workflow.scripts.summary import summary

    for name in ("ground_truth.csv", "comparison.csv", "digits/table.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        staged = subprocess.run(
            ["git", "show", f":results/{name}"], cwd=ROOT, capture_output=True, check=True
        )
        (tmp_path / name).write_bytes(staged.stdout)
    for table in summary(tmp_path).strip().split("\n\n"):
        assert table in README, (
            "README tables are stale: stage the regenerated results (git add results) and "
            "paste `python -m workflow.scripts.summary`"
        )


def test_results_page_tables_are_the_committed_ones():
    """docs/results.md shows the committed tables, never hand-edited ones: every table is marked
    with the file it comes from and equals what that mark selects from it as git holds it."""
    from workflow.scripts.doc_tables import marked_tables, refresh

    text = (ROOT / "docs" / "results.md").read_text()
    tables = marked_tables(text)
    assert len(tables) >= 4
    unmarked = [text.splitlines()[start] for start, _, path, _ in tables if path is None]
    assert not unmarked, (
        f"tables of docs/results.md without a <!-- table: PATH --> mark: {unmarked}"
    )
    assert refresh(text) == text, (
        "docs/results.md shows tables that are not the committed ones: "
        "python -m workflow.scripts.doc_tables docs/results.md"
    )


def test_doc_tables_catch_an_edit_and_restore_it():
    """A changed number, a dropped row and a reordered row are caught, and refresh restores the
    file's rows; a filter selects rows by their cells; an unmarked table is reported."""
    from workflow.scripts.doc_tables import marked_tables, refresh, select

    head = "| p | lam | d |\n|---|--:|--:|\n"
    source = f"intro\n\n{head}| a | 1 | 0.5 |\n| a | 2 | 0.7 |\n| b | 1 | 0.9 |\n"
    files = {"r.md": source}
    doc = f"<!-- table: r.md p=a -->\n{head}| a | 1 | 0.5 |\n| a | 2 | 0.7 |\n"
    assert refresh(doc, files.get) == doc
    for edited in (
        doc.replace("0.5", "0.6"),
        doc.replace("| a | 2 | 0.7 |\n", ""),
        doc.replace("| a | 1 | 0.5 |\n| a | 2 | 0.7 |", "| a | 2 | 0.7 |\n| a | 1 | 0.5 |"),
    ):
        assert refresh(edited, files.get) == doc
    assert select(source, {"p": "b", "lam": "1"})[2:] == ["| b | 1 | 0.9 |"]
    with pytest.raises(KeyError):
        select(source, {"problem": "a"})
    (_, _, path, filters), (_, _, none, _) = marked_tables(doc + "\ntext\n\n| x |\n")
    assert (path, filters, none) == ("r.md", {"p": "a"}, None)


def test_no_file_points_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    bad = [
        f
        for f in tracked
        if f.endswith((".py", ".md", ".yaml", ".smk", ".sh"))
        and f != "tests/test_readme.py"
        and re.search(r"DESIGN\.md|\.\./shared|reference[ /]000", (ROOT / f).read_text())
    ]
    assert not bad, bad
