"""Streams in the pool x chunk-group size: verified fetches through the Python API over ::1,
disk to disk in a tmpfs, from one provider of this process. Each cell is a median over
I6P_BENCH_ROUNDS rounds (default 3) of I6P_SWEEP_BYTES (default 256 MiB); the table shows
which settings fill this machine best. Nothing is asserted."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from i6p.bench import Figure, Settings, fetch_rounds, local_provider, scratch_dir

from .conftest import summary

SWEEP_BYTES = int(os.environ.get("I6P_SWEEP_BYTES", str(256 << 20)))
ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))
STREAMS = (1, 2, 4, 8, 16)
GROUPS = (16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20)


async def _sweep() -> dict[tuple[int, int], Figure]:
    cells: dict[tuple[int, int], Figure] = {}
    directory = scratch_dir()
    async with local_provider(SWEEP_BYTES, directory) as (_, ticket):
        for streams in STREAMS:
            for group in GROUPS:
                rate = Figure(f"{streams} streams, {group >> 10} KiB groups", "B/s")
                await fetch_rounds(ticket, ROUNDS, directory, Settings(streams, group), rate, None)
                cells[(streams, group)] = rate
    return cells


def test_streams_by_group_size(benchmark: Any) -> None:
    result: list[dict[tuple[int, int], Figure]] = []
    benchmark.pedantic(lambda: result.append(asyncio.run(_sweep())), rounds=1)
    cells = result[0]
    benchmark.extra_info.update(
        bytes=SWEEP_BYTES,
        **{f"streams{s}_group{g >> 10}k": summary(f.values) for (s, g), f in cells.items()},
    )
    best = max(cells, key=lambda k: cells[k].median)
    header = "streams \\ group " + "".join(f"{g >> 10:>9} KiB" for g in GROUPS)
    lines = [header]
    for s in STREAMS:
        lines.append(
            f"{s:>15} " + "".join(f"{cells[(s, g)].median / 2**20:>13.0f}" for g in GROUPS)
        )
    print(f"\nverified fetch MiB/s, {SWEEP_BYTES >> 20} MiB, median of {ROUNDS}:")
    print("\n".join(lines))
    print(f"best: {best[0]} streams, {best[1] >> 10} KiB groups ({cells[best]})")
