"""Timing helpers shared by the benchmarks: interleaved rounds, medians and best-of."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(variants: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Time each variant once per round, in turn, so load from neighbours hits all of them alike. Seconds."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    """(median, best) of a list of seconds."""
    return statistics.median(times), min(times)
