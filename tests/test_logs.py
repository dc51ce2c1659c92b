"""Notices go through ``logging``: the library never prints, and the command lines show what
its module loggers report on stderr, keeping stdout for their own output."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_library_never_prints():
    """am/ and baselines/ report through module loggers (``logging.getLogger(__name__)``) so an
    application decides where notices go; tqdm's bars are the only other output."""
    printing = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in ("am", "baselines")
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
    ]
    assert printing == []


def run(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (logging's configuration is per process)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )


def test_a_command_shows_the_notices_on_stderr_only():
    code = (
        "import logging\n"
        "from amcli.logs import log_to_stderr\n"
        "log_to_stderr()\n"
        "for name in ('am.api', 'amcli.run', 'baselines.draft'):\n"
        "    logging.getLogger(name).info('notice from %s', name)\n"
        "logging.getLogger('am.api').debug('not shown')\n"
        "logging.getLogger('other').info('not ours, not shown')\n"
    )
    out = run(code)
    assert out.stdout == ""
    assert out.stderr.splitlines() == [
        "notice from am.api",
        "notice from amcli.run",
        "notice from baselines.draft",
    ]


def test_a_caller_that_configured_logging_keeps_its_handlers():
    code = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, format='app: %(name)s %(message)s')\n"
        "from amcli.logs import log_to_stderr\n"
        "log_to_stderr()\n"
        "logging.getLogger('am.api').warning('resumed')\n"
    )
    out = run(code)
    assert out.stdout == "app: am.api resumed\n" and out.stderr == ""
