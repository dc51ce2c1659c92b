"""Timing shared by the benchmarks: interleaved rounds, ratios within a round.

This machine's speed drifts by up to 1.5x within a run; figures timed in separate blocks then
give ratios that move by up to 2x from run to run. Timing every figure once per round, all of
them in turn, and taking each ratio within a round cancels the drift.
"""

from __future__ import annotations

import statistics
import time


def interleaved(fns: dict, rounds: int, *, warmup: bool = True) -> dict[str, list[float]]:
    """Seconds of each ``fns[name]()``, timed once per round, all of them in turn in every round
    (after one warm-up call each, unless ``warmup`` is off because the caller made it): a drift
    of the machine's speed hits every measurement of a round alike, so ratios are taken within a
    round and their median over the rounds reported."""
    for fn in fns.values() if warmup else ():
        fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def paired(f, s: dict[str, list[float]]) -> tuple[float, float, float]:
    """``f`` of one round's timings (a dict of floats), over the rounds: (median, min, max)."""
    vals = [f({k: v[r] for k, v in s.items()}) for r in range(len(next(iter(s.values()))))]
    return statistics.median(vals), min(vals), max(vals)
