"""How the command lines show notices: the library reports through ``logging`` (one module
logger each, ``logging.getLogger(__name__)``) and configures nothing, as a library should; each
``python -m amcli...`` entry point calls :func:`log_to_stderr` so that its user still sees them.
stdout stays the command's own output (a table, a path, JSON), so it can be piped."""

from __future__ import annotations

import logging

__all__ = ["PACKAGES", "log_to_stderr"]

# the loggers whose notices a command shows: every module logger lives under one of these
PACKAGES = ("am", "amcli", "baselines")


def log_to_stderr(level: int = logging.INFO) -> None:
    """Show the notices of :data:`PACKAGES` at ``level`` and above as plain lines on stderr.
    A caller that configured logging already (an application, pytest) keeps its handlers:
    ``basicConfig`` adds one only to a root logger that has none."""
    logging.basicConfig(format="%(message)s")
    for name in PACKAGES:
        logging.getLogger(name).setLevel(level)
