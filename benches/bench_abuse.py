"""A fetch while the provider is under attack, against the same fetch unattacked, in one run.

The provider runs in a process of its own (tests/provider_proc.py, default ``Limits``), the
attackers (tests/abuse.py: slot hogs, abandoned streams, a datagram flood, a handshake flood,
and all of them at once) in this one, from their own loopback /32. For each attack a blob
(I6P_ABUSE_BYTES, default 256 MiB) is fetched with and without it, alternating which goes
first, I6P_BENCH_ROUNDS times (default 3); reported: medians, the ratio of rates (attacked /
unattacked; 1.0 = no effect), and the provider's peak RSS. A second bench measures how many
handshakes per second the provider absorbs under a flood and how long an honest connect takes
meanwhile.
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
from i6p import Identity, Node

from tests.abuse import ATTACKS, Provider, attacking, peer_ip

from .conftest import summary

SIZE = int(os.environ.get("I6P_ABUSE_BYTES", str(256 << 20)))
ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))
CASES = [*ATTACKS, "combined"]


async def _timed_fetch(provider: Provider, dest: Path, peer: int) -> float:
    async with await Node.bind(Identity.generate(), f"{peer_ip(peer)}:0") as node:
        start = time.perf_counter()
        result = await node.fetch(provider.loopback_ticket(), dest, overwrite=True)
        seconds = time.perf_counter() - start
    assert result.size == SIZE
    return seconds


async def _measure(src: Path, tmp: Path, case: str) -> dict[str, Any]:
    names = list(ATTACKS) if case == "combined" else [case]
    quiet: list[float] = []
    attacked: list[float] = []
    peak = 0
    async with Provider(src) as provider:
        for round_ in range(ROUNDS):
            for under_attack in [False, True] if round_ % 2 == 0 else [True, False]:
                dest = tmp / "dest"
                if not under_attack:
                    quiet.append(await _timed_fetch(provider, dest, round_))
                    continue
                async with attacking(provider, names, seconds=600):
                    await asyncio.sleep(2)
                    attacked.append(await _timed_fetch(provider, dest, round_))
                    peak = max(peak, (await provider.figures())["peak_rss"])
        figures = await provider.figures()
    return {"quiet": quiet, "attacked": attacked, "peak_rss": max(peak, figures["peak_rss"])}


@pytest.mark.parametrize("case", CASES)
def test_fetch_under_attack(benchmark: Any, case: str) -> None:
    out: dict[str, Any] = {}

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "blob"
            src.write_bytes(os.urandom(SIZE))
            out.update(asyncio.run(_measure(src, Path(tmp), case)))

    benchmark.pedantic(run, rounds=1)
    quiet, attacked = statistics.median(out["quiet"]), statistics.median(out["attacked"])
    ratio = quiet / attacked
    benchmark.extra_info.update(
        bytes=SIZE,
        quiet_seconds=summary(out["quiet"]),
        attacked_seconds=summary(out["attacked"]),
        rate_ratio=ratio,
        provider_peak_rss=out["peak_rss"],
    )
    print(
        f"\n{case}: {SIZE >> 20} MiB in {quiet:.2f} s unattacked, {attacked:.2f} s attacked"
        f" [{min(out['attacked']):.2f}-{max(out['attacked']):.2f}]:"
        f" rate ratio {ratio:.2f}x; provider peak RSS {out['peak_rss'] / 2**20:.0f} MiB"
    )


async def _flood(src: Path) -> dict[str, float]:
    async with Provider(src) as provider:
        async with attacking(provider, ["handshake_flood"], seconds=600) as attacks:
            await asyncio.sleep(3)
            before, t0 = (await provider.figures())["load"], time.monotonic()
            connects = []
            for i in range(5):
                async with await Node.bind(Identity.generate(), f"{peer_ip(i)}:0") as honest:
                    start = time.perf_counter()
                    session = await honest.connect(provider.peer_id, provider.addr)
                    connects.append(time.perf_counter() - start)
                    await session.ping()
                await asyncio.sleep(0.5)
            after, t1 = (await provider.figures())["load"], time.monotonic()
        flood = attacks["handshake_flood"].result()
    seconds = t1 - t0
    admitted, retried, refused = (after[i] - before[i] for i in (3, 4, 5))
    return {
        "dials_per_s": flood.attempts / flood.seconds,
        "admitted_per_s": admitted / seconds,
        "retried_per_s": retried / seconds,
        "refused_per_s": refused / seconds,
        "connect_median_s": statistics.median(connects),
        "connect_max_s": max(connects),
    }


def test_handshake_flood(benchmark: Any) -> None:
    out: dict[str, float] = {}

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "blob"
            src.write_bytes(os.urandom(1 << 20))
            out.update(asyncio.run(_flood(src)))

    benchmark.pedantic(run, rounds=1)
    benchmark.extra_info.update(out)
    print(
        f"\nhandshake flood: {out['dials_per_s']:.0f} dials/s attempted; the provider admitted"
        f" {out['admitted_per_s']:.0f}/s, retried {out['retried_per_s']:.0f}/s, refused"
        f" {out['refused_per_s']:.0f}/s; an honest connect took {out['connect_median_s']:.3f} s"
        f" (max {out['connect_max_s']:.3f} s)"
    )
