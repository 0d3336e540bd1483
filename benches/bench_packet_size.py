"""Large packets over ::1 (issue 17, item 1): a verified fetch through the Python API with the
node's default packet bound (loopback's MTU: 65,488-byte payloads), next to bare quinn at
QUIC's usual 1,452 bytes and bare quinn allowed the same large packets, and the same fetch at
1,452 bytes, all in one run, medians of I6P_BENCH_ROUNDS (default 3) rounds.

Run: I6P_BENCH_BYTES=$((512<<20)) .venv/bin/python -m pytest benches/bench_packet_size.py -s
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from i6p._core import testing
from i6p.bench import scratch_dir

from .bench_transfer import DEFAULT_PAYLOAD, _fetch_between_processes, _fill, _spread
from .conftest import BENCH_BYTES, summary

ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))
MiB = 1 << 20


async def _rounds(rounds: int) -> dict[str, list[float]]:
    r: dict[str, list[float]] = {
        k: [] for k in ("quinn_1452", "quinn_large", "fetch_large", "fetch_1452")
    }
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        src, dest = Path(tmp) / "src", Path(tmp) / "dest"
        _fill(src, BENCH_BYTES)
        for _ in range(rounds):
            for key, payload in (("quinn_1452", DEFAULT_PAYLOAD), ("quinn_large", None)):
                seconds = await testing.bench_raw_quinn(BENCH_BYTES, max_udp_payload=payload)
                r[key].append(BENCH_BYTES / seconds)
            for key, payload in (("fetch_large", None), ("fetch_1452", DEFAULT_PAYLOAD)):
                f = await _fetch_between_processes(src, dest, payload)
                r[key].append(BENCH_BYTES / f["receiver"]["seconds"])
    return r


def test_large_packets_over_loopback(benchmark: Any) -> None:
    result: list[dict[str, list[float]]] = []
    benchmark.pedantic(lambda: result.append(asyncio.run(_rounds(ROUNDS))), rounds=1)
    report(benchmark, result[0], "over ::1", "large payloads")


def report(benchmark: Any, r: dict[str, list[float]], where: str, large: str) -> None:
    """Medians, the ratios between them, into the benchmark's extra info and printed; `large`
    names the large payloads in the printed lines."""
    med = {k: statistics.median(v) for k, v in r.items()}
    ratios = {
        "ratio_fetch_large_to_quinn_1452": med["fetch_large"] / med["quinn_1452"],
        "ratio_fetch_large_to_quinn_large": med["fetch_large"] / med["quinn_large"],
        "ratio_fetch_1452_to_quinn_1452": med["fetch_1452"] / med["quinn_1452"],
        "ratio_quinn_large_to_quinn_1452": med["quinn_large"] / med["quinn_1452"],
    }
    benchmark.extra_info.update(
        bytes=BENCH_BYTES, **{k: summary(v) for k, v in r.items()}, **ratios
    )
    rows = [
        ("bare quinn, 1,452-byte payloads", "quinn_1452"),
        (f"bare quinn, {large}", "quinn_large"),
        (f"verified fetch, {large}", "fetch_large"),
        ("verified fetch, 1,452-byte payloads", "fetch_1452"),
    ]
    print(
        f"\n{BENCH_BYTES >> 20} MiB {where}, {len(r['fetch_large'])} rounds, medians [min-max]:\n"
        + "".join(f"  {label:36}{_spread(r[key], MiB, 'MiB/s')}\n" for label, key in rows)
        + "".join(f"  {k} = {v:.2f}\n" for k, v in ratios.items())
    )
