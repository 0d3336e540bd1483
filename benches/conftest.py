"""Benchmarks run on purpose (``make bench``), never in the default test run.

Sizes can be shrunk for a quick look with I6P_BENCH_BYTES (default 1 GiB).
"""

from __future__ import annotations

import os
import statistics

BENCH_BYTES = int(os.environ.get("I6P_BENCH_BYTES", str(1 << 30)))


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of a list of measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": float(len(values)),
    }
