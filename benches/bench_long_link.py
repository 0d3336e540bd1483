"""A long, fat link: 100 ms round trip and a 200 MB/s bottleneck with no loss, emulated by the
Rust impairment relay (tests/impair; the kernel here has no netem).

One stream moves data from a node to its peer through the relay, entirely in the engine, and
the rate is taken once slow start is over (from SETTLE seconds on). Auto-tuned windows are
measured next to quinn's default windows, which cap one stream at 1.25 MB per round trip; with
CUBIC and with BBR. Nothing is asserted; figures are printed and saved.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from typing import Any

from i6p import Identity, Node
from i6p._core import testing

from tests.impair_relay import ImpairRelay

from .conftest import summary

RATE = 200e6  # bytes per second through the bottleneck
ONE_WAY_MS = 50.0  # 100 ms round trip
SETTLE = 3.0  # seconds: slow start and window growth are over by then
ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))


def _steady_rate(samples: list[tuple[float, int]]) -> float:
    """Bytes per second from SETTLE seconds after the first write to the last byte."""
    after = [(t, b) for t, b in samples if t >= SETTLE]
    if len(after) < 2:
        return float("nan")
    (t0, b0), (t1, b1) = after[0], after[-1]
    return (b1 - b0) / (t1 - t0)


async def _one(window: str, congestion: str, streams: int, total: int) -> float:
    sender = await Node.bind(Identity.generate(), "[::1]:0", window=window, congestion=congestion)
    receiver = await Node.bind(Identity.generate(), "[::1]:0", window=window, congestion=congestion)
    try:
        relay = ImpairRelay(
            f"[::1]:{receiver.port}",
            delay_ms=ONE_WAY_MS,
            rate=RATE,
            queue_bytes=int(RATE * 0.05),
            max_seconds=120,
        )
        async with relay:
            ours, theirs = await asyncio.gather(
                sender.connect(receiver.peer_id, relay.addr), receiver.accept()
            )
            samples = await testing.bench_session_stream(ours._core, theirs._core, total, streams)
            await ours.close()
        return _steady_rate(samples)
    finally:
        await sender.close()
        await receiver.close()


def test_long_link_windows(benchmark: Any) -> None:
    # (windows, congestion, streams, bytes), sized so each runs for about 6-8 s. A stream's
    # window is capped (MAX_STREAM_WINDOW), so a link this long is filled with several
    # streams, as a fetch does. quinn's defaults cap one stream at 12.5 MB/s here and a
    # connection at 100 MB/s (its 10 MB send window).
    cases = [
        ("auto", "cubic", 16, 1400 << 20),
        ("auto", "bbr", 16, 1400 << 20),
        ("quinn", "cubic", 16, 700 << 20),
        ("quinn", "cubic", 1, 96 << 20),
    ]
    results: dict[str, list[float]] = {f"{w}/{c}/{n}": [] for w, c, n, _ in cases}

    def one_round() -> None:
        for window, congestion, streams, total in cases:
            rate = asyncio.run(_one(window, congestion, streams, total))
            results[f"{window}/{congestion}/{streams}"].append(rate)

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(
        rate_limit_bytes_per_s=RATE,
        rtt_ms=2 * ONE_WAY_MS,
        **{f"{k}_bytes_per_s": summary(v) for k, v in results.items()},
    )
    print(f"\n100 ms RTT, {RATE / 1e6:.0f} MB/s bottleneck, rate after {SETTLE:.0f} s:")
    for key, values in results.items():
        med = statistics.median(values)
        print(
            f"  windows/congestion/streams {key:16}: {med / 1e6:7.1f} MB/s "
            f"[{min(values) / 1e6:.1f}-{max(values) / 1e6:.1f}] = {med / RATE:.0%} of the limit"
        )
