"""Checks for config dataclasses whose errors name their field.

A config dataclass's ``__post_init__`` raises :class:`FieldError` carrying the field's name,
so that whoever builds it from a nested mapping (:func:`amcli.config.build_dataclass`) reports
the full dotted key (``digits.train.lr``) without reading the message.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager

__all__ = ["FieldError", "check_int", "check_number", "check_choice", "checking"]


class FieldError(ValueError):
    """``field``'s value is invalid (``field``: the name within its dataclass); ``str(error)``
    is the message, which names the field too, for a caller that builds the dataclass
    directly."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    def __reduce__(self):  # picklable across processes despite the two-argument constructor
        return type(self), (self.field, str(self))


def check_int(name: str, value, minimum: int = 1) -> None:
    """Raise :class:`FieldError` naming ``name`` unless ``value`` is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FieldError(name, f"{name} must be an integer >= {minimum}, got {value!r}")


def check_number(name: str, value, *, minimum: float | None = None, strict: bool = False) -> None:
    """Raise :class:`FieldError` naming ``name`` unless ``value`` is a number (not NaN) above
    ``minimum`` (``> minimum`` with ``strict``, else ``>=``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
        raise FieldError(name, f"{name} must be a number{bound}, got {value!r}")


def check_choice(name: str, value, choices: Collection) -> None:
    """Raise :class:`FieldError` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise FieldError(name, f"{name} must be one of {list(choices)}, got {value!r}")


@contextmanager
def checking(name: str, prefix: str = "") -> Iterator[None]:
    """Run a check that ``name`` delegates (another constructor's or function's own) and report
    its ``ValueError`` as a :class:`FieldError` of ``name`` (message: ``prefix`` + its own)."""
    try:
        yield
    except ValueError as e:  # a FieldError too: its field is not one of this dataclass's
        raise FieldError(name, f"{prefix}{e}") from None
