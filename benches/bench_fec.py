"""FEC mode against plain mode on a lossy long link: 100 ms round trip, random loss, through the
Rust impairment relay (tests/impair; the kernel here has no netem).

For each loss rate a blob is fetched in plain mode (QUIC streams, lost packets retransmitted)
and in FEC mode (Reed-Solomon shards in datagrams, lost stripes repaired), alternating which
goes first. Both ends use BBR: CUBIC takes random loss for congestion, and at 3 % loss on this
link it crawls in either mode. Figures per mode: completion time (median of the rounds, with
min-max) and bytes on the wire per byte delivered (every UDP payload both peers sent, as the
relay received it, over the blob's size); then FEC / plain for both.

I6P_FEC_BYTES sets the blob size (default 256 MiB), I6P_BENCH_ROUNDS the rounds (default 3),
I6P_FEC_RATE the bottleneck in bytes/s (default 100 MB/s with 50 ms of queue; 0: none, the
machine is the limit), I6P_FEC_LOSS the loss rates (default "0,0.01,0.03,0.10"), I6P_FEC_RTT_MS
the round-trip times (default "100"; each loss rate is measured at each), I6P_FEC_CC the
congestion controller of both ends (default "bbr"). The saved figures feed the report's rate
against RTT and loss (`make bench-report`).

`test_fec_from_two_providers` fetches from two providers, each behind a link of its own (100 ms
round trip, the same random loss, a bottleneck each: equal, or one four times the other), in
three ways: from the first provider alone, from both serving whole batches of their own
(the default), and from both sharing every stripe (`fec_combine=True`). I6P_FEC_PAIR_BYTES
sets its blob size (default 128 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
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

SIZE = int(os.environ.get("I6P_FEC_BYTES", str(256 << 20)))
ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))
RATE = float(os.environ.get("I6P_FEC_RATE", "100e6"))
LOSSES = [float(x) for x in os.environ.get("I6P_FEC_LOSS", "0,0.01,0.03,0.10").split(",")]
RTTS_MS = [float(x) for x in os.environ.get("I6P_FEC_RTT_MS", "100").split(",")]
CONGESTION = os.environ.get("I6P_FEC_CC", "bbr")
ONE_WAY_MS = 50.0


async def _fetch_once(
    src: Path, mode: str, loss: float, seed: int, rtt_ms: float
) -> tuple[float, float]:
    """(seconds, wire bytes per byte) of one fetch of ``src`` through a fresh relay."""
    provider = await Node.bind(Identity.generate(), "[::1]:0", congestion=CONGESTION)
    fetcher = await Node.bind(Identity.generate(), "[::1]:0", congestion=CONGESTION)
    try:
        blob = await provider.add_path(src)
        with tempfile.TemporaryDirectory() as tmp:
            async with ImpairRelay(
                f"[::1]:{provider.port}",
                delay_ms=rtt_ms / 2,
                loss=loss,
                seed=seed,
                rate=RATE or None,
                max_seconds=600,
            ) as relay:
                ticket = Ticket(provider.peer_id, [relay.addr], blob.hash, blob.size)
                start = time.perf_counter()
                result = await fetcher.fetch(ticket, Path(tmp) / "dest", mode=mode)  # type: ignore[arg-type]
                seconds = time.perf_counter() - start
            assert result.size == SIZE and result.hash == blob.hash
        wire = relay.stats["up"]["received_bytes"] + relay.stats["down"]["received_bytes"]
        return seconds, wire / SIZE
    finally:
        await fetcher.close()
        await provider.close()


def _report(benchmark: Any, label: str, t: list[float], w: list[float], size: int) -> None:
    """Records and prints one way's times and wire bytes per byte (median [min-max])."""
    benchmark.extra_info[f"{label}_seconds"] = summary(t)
    benchmark.extra_info[f"{label}_wire_per_byte"] = summary(w)
    print(
        f"  {label:8}  {statistics.median(t):6.2f} s [{min(t):.2f}-{max(t):.2f}]"
        f"  {size / statistics.median(t) / 2**20:6.1f} MiB/s"
        f"  wire/byte {statistics.median(w):.3f} [{min(w):.3f}-{max(w):.3f}]"
    )


@pytest.mark.parametrize("rtt_ms", RTTS_MS, ids=[f"rtt{x:g}ms" for x in RTTS_MS])
@pytest.mark.parametrize("loss", LOSSES, ids=[f"{x:g}" for x in LOSSES])
def test_fec_vs_plain_on_a_lossy_long_link(benchmark: Any, loss: float, rtt_ms: float) -> None:
    times: dict[str, list[float]] = {"plain": [], "fec": []}
    wires: dict[str, list[float]] = {"plain": [], "fec": []}

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "blob"
            src.write_bytes(os.urandom(SIZE))
            for round_ in range(ROUNDS):
                order = ["plain", "fec"] if round_ % 2 == 0 else ["fec", "plain"]
                for mode in order:
                    seconds, wire = asyncio.run(_fetch_once(src, mode, loss, 1000 + round_, rtt_ms))
                    times[mode].append(seconds)
                    wires[mode].append(wire)

    benchmark.pedantic(run, rounds=1)
    rate = f"{RATE / 1e6:.0f} MB/s bottleneck" if RATE else "no bottleneck"
    print(f"\n{SIZE >> 20} MiB, {rtt_ms:g} ms RTT, {rate}, {loss:.0%} loss, BBR, {ROUNDS} rounds:")
    for mode in ("plain", "fec"):
        _report(benchmark, mode, times[mode], wires[mode], SIZE)
    time_ratio = statistics.median(times["fec"]) / statistics.median(times["plain"])
    wire_ratio = statistics.median(wires["fec"]) / statistics.median(wires["plain"])
    benchmark.extra_info.update(
        bytes=SIZE,
        loss=loss,
        rate=RATE,
        rtt_ms=rtt_ms,
        time_fec_to_plain=time_ratio,
        wire_fec_to_plain=wire_ratio,
    )
    print(f"  FEC / plain: time {time_ratio:.2f}x, bytes on the wire {wire_ratio:.2f}x")


PAIR_SIZE = int(os.environ.get("I6P_FEC_PAIR_BYTES", str(128 << 20)))
PAIR_LINKS = {"equal": (25e6, 25e6), "uneven": (40e6, 10e6)}


async def _fetch_from_pair(
    src: Path, rates: tuple[float, float], loss: float, way: str, seed: int
) -> tuple[float, float]:
    """(seconds, wire bytes per byte) of one FEC fetch of ``src`` from one or two providers."""
    count = 1 if way == "one" else 2
    providers = [
        await Node.bind(Identity.generate(), "[::1]:0", congestion="bbr") for _ in range(count)
    ]
    fetcher = await Node.bind(Identity.generate(), "[::1]:0", congestion="bbr")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with contextlib.AsyncExitStack() as stack:
                relays, tickets = [], []
                for i, provider in enumerate(providers):
                    blob = await provider.add_path(src)
                    relay = await stack.enter_async_context(
                        ImpairRelay(
                            f"[::1]:{provider.port}",
                            delay_ms=ONE_WAY_MS,
                            loss=loss,
                            seed=seed + i,
                            rate=rates[i],
                            max_seconds=600,
                        )
                    )
                    relays.append(relay)
                    tickets.append(Ticket(provider.peer_id, [relay.addr], blob.hash, blob.size))
                start = time.perf_counter()
                result = await fetcher.fetch(
                    tickets, Path(tmp) / "dest", mode="fec", fec_combine=way == "combined"
                )
                seconds = time.perf_counter() - start
            assert result.size == PAIR_SIZE and not result.dropped
        wire = sum(
            r.stats["up"]["received_bytes"] + r.stats["down"]["received_bytes"] for r in relays
        )
        return seconds, wire / PAIR_SIZE
    finally:
        await fetcher.close()
        for provider in providers:
            await provider.close()


@pytest.mark.parametrize("links", list(PAIR_LINKS))
@pytest.mark.parametrize("loss", [0.0, 0.03], ids=["0", "0.03"])
def test_fec_from_two_providers(benchmark: Any, loss: float, links: str) -> None:
    ways = ["one", "separate", "combined"]
    times: dict[str, list[float]] = {w: [] for w in ways}
    wires: dict[str, list[float]] = {w: [] for w in ways}
    rates = PAIR_LINKS[links]

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "blob"
            src.write_bytes(os.urandom(PAIR_SIZE))
            for round_ in range(ROUNDS):
                for way in ways[round_ % 3 :] + ways[: round_ % 3]:
                    seconds, wire = asyncio.run(
                        _fetch_from_pair(src, rates, loss, way, 2000 + 2 * round_)
                    )
                    times[way].append(seconds)
                    wires[way].append(wire)

    benchmark.pedantic(run, rounds=1)
    print(
        f"\n{PAIR_SIZE >> 20} MiB FEC, 100 ms RTT, {loss:.0%} loss, links of"
        f" {rates[0] / 1e6:.0f} and {rates[1] / 1e6:.0f} MB/s, {ROUNDS} rounds:"
    )
    for way in ways:
        _report(benchmark, way, times[way], wires[way], PAIR_SIZE)
    one = statistics.median(times["one"])
    for way in ("separate", "combined"):
        ratio = statistics.median(times[way]) / one
        benchmark.extra_info[f"time_{way}_to_one"] = ratio
        print(f"  {way} / one provider: time {ratio:.2f}x")
