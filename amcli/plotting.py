"""Shared looks of the workflow's figures: one colour and one marker per method, fixed across
every panel and figure (a method is recognisable at a glance, and one legend serves all panels).

Matplotlib and seaborn are imported inside the functions: ``import amcli`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MARKERS", "method_styles", "legend_handles"]

# filled markers that stay distinguishable at 5 pt
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "p", "h", "*", "d", "H", "8")


def method_styles(methods: Sequence[str]) -> dict[str, dict]:
    """``{method: {"color": rgb, "marker": str}}`` for ``methods`` in the given order (the
    registry's, then variants): the same method gets the same style in every panel. Colours:
    ``tab10``, or evenly spaced ``husl`` hues when there are more than ten methods."""
    import seaborn as sns

    methods = list(dict.fromkeys(methods))
    palette = sns.color_palette("tab10" if len(methods) <= 10 else "husl", len(methods))
    return {
        m: {"color": palette[i], "marker": MARKERS[i % len(MARKERS)]} for i, m in enumerate(methods)
    }


def legend_handles(styles: dict[str, dict], *, markersize: float = 6) -> list:
    """One legend entry per method of :func:`method_styles`, in its order."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], ls="", label=m, markersize=markersize, **s) for m, s in styles.items()]
