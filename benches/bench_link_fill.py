"""Filling a long link with a shallow queue: 100 ms round trip, a 100 MB/s bottleneck with a
drop-tail queue of 50 ms or 10 ms (tests/impair; the kernel here has no netem), no loss.

For every congestion controller offered, a blob is fetched in plain mode and in FEC mode
(alternating which goes first), each through a fresh relay and fresh nodes. Figures per mode,
medians of the rounds with min-max:
- utilisation: the rate at which verified bytes landed from a quarter of the blob on (slow
  start is over by then) to the last progress report, over the bottleneck rate;
- whole: the blob over the fetch's whole time (connect, slow start and the end included),
  over the bottleneck rate;
- wire/byte: every UDP payload both peers sent, as the relay received it, over the blob;
- drops: the share of packets towards the fetcher that the bottleneck's queue dropped.

Environment: I6P_FILL_BYTES (default 128 MiB), I6P_BENCH_ROUNDS (default 3), I6P_FILL_CC
(default "cubic,bbr,bounded,newreno"), I6P_FILL_QUEUE_MS (default "50,10"). Nothing is
asserted; figures are printed and saved (pytest-benchmark extra_info).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from i6p import Identity, Node, Ticket

from tests.impair_relay import ImpairRelay

from .conftest import summary

SIZE = int(os.environ.get("I6P_FILL_BYTES", str(128 << 20)))
ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))
CONTROLLERS = os.environ.get("I6P_FILL_CC", "cubic,bbr,bounded,newreno").split(",")
QUEUES_MS = [float(x) for x in os.environ.get("I6P_FILL_QUEUE_MS", "50,10").split(",")]
RATE = 100e6
ONE_WAY_MS = 50.0
MODES = ("plain", "fec")


async def _fetch_once(src: Path, mode: str, cc: str, queue_ms: float) -> dict[str, float]:
    """One fetch of ``src`` through a fresh bottleneck: its figures (see the module's doc)."""
    provider = await Node.bind(Identity.generate(), "[::1]:0", congestion=cc)
    fetcher = await Node.bind(Identity.generate(), "[::1]:0", congestion=cc)
    samples: list[tuple[float, int]] = []
    try:
        blob = await provider.add_path(src)
        with tempfile.TemporaryDirectory() as tmp:
            async with ImpairRelay(
                f"[::1]:{provider.port}",
                delay_ms=ONE_WAY_MS,
                rate=RATE,
                queue_bytes=int(RATE * queue_ms / 1000),
                max_seconds=300,
            ) as relay:
                ticket = Ticket(provider.peer_id, [relay.addr], blob.hash, blob.size)
                start = time.perf_counter()
                result = await fetcher.fetch(
                    ticket,
                    Path(tmp) / "dest",
                    mode=mode,  # type: ignore[arg-type]
                    progress=lambda done, _total: samples.append((time.perf_counter(), done)),
                )
                seconds = time.perf_counter() - start
            assert result.size == SIZE and result.hash == blob.hash
    finally:
        await fetcher.close()
        await provider.close()
    after = [(t, d) for t, d in samples if d >= SIZE // 4]
    (t0, d0), (t1, d1) = (after[0], after[-1]) if len(after) >= 2 else ((start, 0), (start, 0))
    steady = (d1 - d0) / (t1 - t0) if t1 > t0 and d1 - d0 >= SIZE // 4 else SIZE / seconds
    up, down = relay.stats["up"], relay.stats["down"]
    return {
        "utilisation": steady / RATE,
        "whole": SIZE / seconds / RATE,
        "wire": (up["received_bytes"] + down["received_bytes"]) / SIZE,
        "drops": down["dropped_queue"] / max(1, down["received_packets"]),
    }


def _line(label: str, runs: list[dict[str, float]]) -> str:
    def med(key: str, fmt: str) -> str:
        values = [r[key] for r in runs]
        return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"

    return (
        f"  {label:6} utilisation {med('utilisation', '.0%')}  whole {med('whole', '.0%')}"
        f"  wire/byte {med('wire', '.3f')}  drops {med('drops', '.1%')}"
    )


@pytest.mark.parametrize("queue_ms", QUEUES_MS, ids=[f"queue{x:g}ms" for x in QUEUES_MS])
@pytest.mark.parametrize("cc", CONTROLLERS)
def test_fill_a_long_link_with_a_shallow_queue(benchmark: Any, cc: str, queue_ms: float) -> None:
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "blob"
            src.write_bytes(os.urandom(SIZE))
            for round_ in range(ROUNDS):
                for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                    runs[mode].append(asyncio.run(_fetch_once(src, mode, cc, queue_ms)))

    benchmark.pedantic(run, rounds=1)
    print(
        f"\n{cc}: {SIZE >> 20} MiB, 100 ms RTT, 100 MB/s, {queue_ms:g} ms queue, no loss,"
        f" {ROUNDS} rounds:"
    )
    for mode in MODES:
        print(_line(mode, runs[mode]))
        for key in ("utilisation", "whole", "wire", "drops"):
            benchmark.extra_info[f"{mode}_{key}"] = summary([r[key] for r in runs[mode]])
    benchmark.extra_info.update(bytes=SIZE, cc=cc, queue_ms=queue_ms, rate=RATE)
