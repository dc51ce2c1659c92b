"""Optional dependencies: a missing one is an error that names the extra which installs it
(pyproject.toml lists the extras by use), not a bare ``No module named ...``."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """``import module``, or a ``ModuleNotFoundError`` saying that ``purpose`` needs it and
    ``pip install 'adjoint-matching[<extra>]'`` installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"{purpose} needs {module.split('.')[0]}, which the {extra!r} extra installs: "
            f"pip install 'adjoint-matching[{extra}]' (in a checkout: pip install -e '.[{extra}]')",
            name=e.name,
        ) from e
