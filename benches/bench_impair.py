"""Capacity of the impairment relay (tests/impair) on its own, without QUIC: how fast
``i6p-impair bench`` pushes datagrams through an in-process relay, with no impairment and with
50 ms of one-way delay. A measurement only; the tests that use the relay need it to be well
above the rates they drive through it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from typing import Any

import pytest

from tests.impair_relay import impair_binary

from .conftest import BENCH_BYTES, summary

ROUNDS = 5


def bench_once(delay_ms: float) -> dict[str, Any]:
    """One ``i6p-impair bench`` run: its JSON line."""
    out = subprocess.run(
        [
            str(impair_binary()),
            "bench",
            "--bytes",
            str(BENCH_BYTES),
            "--delay-ms",
            str(delay_ms),
            "--seed",
            "1",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("delay_ms", [0, 50])
def test_relay_capacity(benchmark: Any, delay_ms: float) -> None:
    runs: list[dict[str, Any]] = []
    benchmark.pedantic(lambda: runs.append(bench_once(delay_ms)), rounds=ROUNDS, iterations=1)
    rates = [float(r["bytes_per_second"]) for r in runs]
    dropped = [int(r["packets_dropped"]) for r in runs]
    benchmark.extra_info.update(
        bytes=BENCH_BYTES,
        delay_ms=delay_ms,
        bytes_per_s=summary(rates),
        packets_dropped=dropped,
    )
    print(
        f"\nrelay, {BENCH_BYTES >> 20} MiB in 1200-byte datagrams, {delay_ms} ms one-way delay: "
        f"median {statistics.median(rates) / 1e6:.0f} MB/s "
        f"[{min(rates) / 1e6:.0f}-{max(rates) / 1e6:.0f}], "
        f"datagrams dropped per run {dropped}"
    )
