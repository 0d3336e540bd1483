"""Reconnection latency through the impairment relay at a 50 ms round trip: the time from
``connect`` to the first response (``connect`` then one PING) for a fresh handshake, a
resumed one without early data, and a 0-RTT one, as medians of I6P_BENCH_ROUNDS (default 30)
each, in round trips.

A fresh or resumed session is handed over once the dialer's TLS handshake is done and the
listener's HELLO, sent with its first flight, is verified (one round trip), and the PING comes
after it. A 0-RTT session is handed over at once and its PING travels as early data.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from i6p import Identity, Node

from tests.impair_relay import ImpairRelay

from .conftest import summary

ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "30"))
RTT = 0.050


async def _serve(listener: Node, sessions: list[Any]) -> None:
    while True:
        sessions.append(await listener.accept())


async def _first_response(dialer: Node, listener: Node, addr: str) -> float:
    start = time.perf_counter()
    session = await dialer.connect(listener.peer_id, addr)
    await session.ping()
    elapsed = time.perf_counter() - start
    await session.wait_established()
    await session.close()
    return elapsed


async def _measure(rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"fresh": [], "resumed": [], "zero_rtt": []}
    async with await Node.bind(Identity.generate(), "[::1]:0") as listener:
        sessions: list[Any] = []
        serving = asyncio.create_task(_serve(listener, sessions))
        try:
            async with ImpairRelay(f"[::1]:{listener.port}", delay_ms=RTT * 1000 / 2) as relay:
                for _ in range(rounds):
                    async with await Node.bind(Identity.generate(), "[::1]:0") as fresh:
                        out["fresh"].append(await _first_response(fresh, listener, relay.addr))
                for kind, zero_rtt in (("resumed", False), ("zero_rtt", True)):
                    async with await Node.bind(
                        Identity.generate(), "[::1]:0", zero_rtt=zero_rtt
                    ) as dialer:
                        await _first_response(dialer, listener, relay.addr)  # tickets
                        for _ in range(rounds):
                            out[kind].append(await _first_response(dialer, listener, relay.addr))
                            sessions.clear()
        finally:
            serving.cancel()
    return out


def test_connect_to_first_response(benchmark: Any) -> None:
    result: list[dict[str, list[float]]] = []
    benchmark.pedantic(lambda: result.append(asyncio.run(_measure(ROUNDS))), rounds=1)
    r = result[0]
    benchmark.extra_info.update(rtt_s=RTT, **{k: summary(v) for k, v in r.items()})
    lines = [f"\nconnect -> first response at {RTT * 1000:.0f} ms RTT, {ROUNDS} rounds each:"]
    for kind, values in r.items():
        med = statistics.median(values)
        lines.append(
            f"  {kind:9s} {med * 1000:6.1f} ms = {med / RTT:.2f} RTT"
            f"  [{min(values) / RTT:.2f}-{max(values) / RTT:.2f}]"
        )
    print("\n".join(lines))
