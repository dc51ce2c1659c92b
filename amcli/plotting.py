"""Shared looks of the workflow's figures: one colour and one marker per method, fixed across
every panel and figure (a method is recognisable at a glance, and one legend serves all panels).

Matplotlib and seaborn (the ``tables`` extra) are imported inside the functions: ``import amcli``
stays light, and a missing one says which extra installs it.
"""

from __future__ import annotations

from collections.abc import Sequence

from am.extras import require

__all__ = ["MARKERS", "method_styles", "legend_handles"]

# filled markers that stay distinguishable at 5 pt
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "p", "h", "*", "d", "H", "8")


def method_styles(methods: Sequence[str]) -> dict[str, dict]:
    """``{method: {"color": rgb, "marker": str}}`` for ``methods`` in the given order (the
    registry's, then variants): the same method gets the same style in every panel. Colours:
    ``tab10``, or evenly spaced ``husl`` hues when there are more than ten methods."""
    sns = require("seaborn", extra="tables", purpose="the workflow's figures")
    methods = list(dict.fromkeys(methods))
    palette = sns.color_palette("tab10" if len(methods) <= 10 else "husl", len(methods))
    return {
        m: {"color": palette[i], "marker": MARKERS[i % len(MARKERS)]} for i, m in enumerate(methods)
    }


def legend_handles(styles: dict[str, dict], *, markersize: float = 6) -> list:
    """One legend entry per method of :func:`method_styles`, in its order."""
    lines = require("matplotlib.lines", extra="tables", purpose="the workflow's figures")
    return [
        lines.Line2D([], [], ls="", label=m, markersize=markersize, **s) for m, s in styles.items()
    ]
