"""Foundation benchmarks: stream rate through the Python API against the engine alone,
handshake time, and memory per idle session.

Each figure is a median over several rounds with its spread, and every Python-API figure is
reported as a ratio to the engine-only baseline measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from i6p import Identity, Limits, Node, Session
from i6p._core import testing

from .conftest import BENCH_BYTES, summary

BLOCK = 1 << 20
#: A node's packet size unless set (``Node.bind(max_udp_payload=None)``); the engine's stream
#: is given the same, so the comparison is like for like (``python_stream`` checks it).
DEFAULT_PAYLOAD = 1452
#: Rounds of the stream comparison (each runs all four ways once).
ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "5"))


async def _pair(
    max_udp_payload: int | str = DEFAULT_PAYLOAD,
) -> tuple[Node, Node, Session, Session]:
    a = await Node.bind(Identity.generate(), max_udp_payload=max_udp_payload)
    b = await Node.bind(Identity.generate(), max_udp_payload=max_udp_payload)
    ours, theirs = await asyncio.gather(a.connect(b.peer_id, f"[::1]:{b.port}"), b.accept())
    return a, b, ours, theirs


async def python_stream(
    total: int, reader: str = "iter", max_udp_payload: int | str = DEFAULT_PAYLOAD
) -> float:
    """Seconds to move ``total`` bytes over one stream through the Python API; the receiver
    reads with ``async for`` (``reader="iter"``), into one reused buffer (``"readinto"``), or
    (``"engine_read"``) with the core's ``read``, whose result is made in the engine and handed
    over when the call had to wait (the way ``Stream.read`` worked before). The nodes use
    QUIC's usual 1,452-byte payloads, or ``max_udp_payload="auto"`` (the default of a node:
    the interfaces' bound)."""
    a, b, ours, theirs = await _pair(max_udp_payload)
    assert max_udp_payload == "auto" or a.max_udp_payload == max_udp_payload
    block = b"\x5a" * BLOCK

    async def send() -> None:
        stream = await ours.open_stream()
        left = total
        while left > 0:
            n = min(left, BLOCK)
            await stream.write(block if n == BLOCK else memoryview(block)[:n])
            left -= n
        await stream.finish()

    async def receive() -> int:
        stream = await theirs.accept_stream()
        got = 0
        if reader == "readinto":
            buffer = bytearray(BLOCK)
            while n := await stream.readinto(buffer):
                got += n
            return got
        if reader == "engine_read":
            while chunk := await stream._core.read(BLOCK):
                got += len(chunk)
            return got
        async for chunk in stream:
            got += len(chunk)
        return got

    start = time.perf_counter()
    _, got = await asyncio.gather(send(), receive())
    elapsed = time.perf_counter() - start
    assert got == total
    await a.close()
    await b.close()
    return elapsed


async def _python_stream_handing_off(total: int) -> float:
    """``python_stream`` with every read and write sent through the engine's runtime and
    completed through pyo3-async-runtimes, as before calls could complete on the caller's
    thread: the first "before" of the same run."""
    testing.set_stream_fast_path(False)
    testing.set_stream_bell(False)
    try:
        return await python_stream(total, "engine_read")
    finally:
        testing.set_stream_fast_path(True)
        testing.set_stream_bell(True)


async def _python_stream_before_bell(total: int) -> float:
    """``python_stream`` as it was before this loop's wake-up socket: calls complete on the
    caller's thread when they need not wait, and the others through pyo3-async-runtimes (a
    blocking thread takes the GIL, then ``call_soon_threadsafe``)."""
    testing.set_stream_bell(False)
    try:
        return await python_stream(total, "engine_read")
    finally:
        testing.set_stream_bell(True)


def test_stream_rate_python_vs_engine(benchmark: Any) -> None:
    """One stream through the Python API against the engine's own stream, in rounds that
    take turns (so load from elsewhere falls on each alike): ``async for`` reads, the same
    with every call handed to the runtime (the way before fast paths), with fast paths but
    completions through pyo3-async-runtimes (the way before the wake-up socket), and
    ``readinto``; all at the nodes' default packet size, which the engine's stream is given
    too. Then both again with large packets (``"auto"``: 65 KB on loopback), a pair of its
    own. Both ends run in this process, so its CPU time per GiB is what moving the bytes
    costs (less sensitive to other load on the machine than the rate)."""

    async def engine_stream(payload: int | None = DEFAULT_PAYLOAD) -> float:
        return await testing.bench_engine_stream(BENCH_BYTES, BLOCK, max_udp_payload=payload)

    runs: dict[str, Callable[[], Coroutine[Any, Any, float]]] = {
        "engine": engine_stream,
        "handoff": lambda: _python_stream_handing_off(BENCH_BYTES),
        "pyo3": lambda: _python_stream_before_bell(BENCH_BYTES),
        "iter": lambda: python_stream(BENCH_BYTES),
        "readinto": lambda: python_stream(BENCH_BYTES, "readinto"),
        "engine_large": lambda: engine_stream(None),
        "iter_large": lambda: python_stream(BENCH_BYTES, "iter", "auto"),
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}

    def one_round() -> None:
        for name, run in runs.items():
            used = time.process_time()
            rates[name].append(BENCH_BYTES / asyncio.run(run()))
            cpu[name].append((time.process_time() - used) / (BENCH_BYTES / 2**30))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    med = {name: statistics.median(values) for name, values in rates.items()}
    med_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    info: dict[str, Any] = {"bytes": BENCH_BYTES}
    base = {name: "engine_large" if name.endswith("_large") else "engine" for name in runs}
    for name in runs:
        info[f"{name}_bytes_per_s"] = summary(rates[name])
        info[f"{name}_cpu_s_per_gib"] = summary(cpu[name])
        info[f"ratio_{name}_to_engine"] = med[name] / med[base[name]]
        info[f"cpu_ratio_{name}_to_engine"] = med_cpu[name] / med_cpu[base[name]]
    info["ratio_python_to_engine"] = info["ratio_iter_to_engine"]
    benchmark.extra_info.update(info)
    lines = [f"\nstream {BENCH_BYTES >> 20} MiB, medians of {ROUNDS} rounds:"]
    for name, values in rates.items():
        b = base[name]
        lines.append(
            f"  {name:12} {med[name] / 2**20:5.0f} MiB/s [{min(values) / 2**20:.0f}-"
            f"{max(values) / 2**20:.0f}] = {med[name] / med[b]:.2f}x {b};  "
            f"CPU {med_cpu[name]:.2f} s/GiB = {med_cpu[name] / med_cpu[b]:.2f}x {b}"
        )
    print("\n".join(lines))


# One client makes every connection: the server's per-PeerId, per-prefix and rate bounds
# would otherwise measure themselves, not the handshake.
UNBOUNDED = 1 << 20


def _server_limits() -> Limits:
    return Limits(
        max_connections=UNBOUNDED,
        max_connections_per_peer=UNBOUNDED,
        max_connections_per_prefix=UNBOUNDED,
        handshake_rate_per_prefix=UNBOUNDED,
    )


async def _handshakes(n: int) -> list[float]:
    server = await Node.bind(Identity.generate(), limits=_server_limits())
    client = await Node.bind(Identity.generate())
    times = []

    accepted = []  # held: a dropped session is closed, under its dialer's ping

    async def accept_all() -> None:
        for _ in range(n):
            accepted.append(await server.accept())

    acceptor = asyncio.create_task(accept_all())
    for _ in range(n):
        start = time.perf_counter()
        session = await client.connect(server.peer_id, f"[::1]:{server.port}")
        await session.ping()
        times.append(time.perf_counter() - start)
        await session.close()
    await acceptor
    await client.close()
    await server.close()
    return times


def test_handshake_time(benchmark: Any) -> None:
    times: list[float] = []
    benchmark.pedantic(lambda: times.extend(asyncio.run(_handshakes(100))), rounds=1)
    benchmark.extra_info.update(connect_plus_first_ping_s=summary(times))
    print(
        f"\nconnect + first PING over ::1, {len(times)} times: median "
        f"{statistics.median(times) * 1e3:.2f} ms [{min(times) * 1e3:.2f}-{max(times) * 1e3:.2f}]"
    )


def test_connections_per_second(benchmark: Any) -> None:
    from i6p.bench import handshakes

    result: list[Any] = []
    benchmark.pedantic(lambda: result.append(asyncio.run(handshakes(50))), rounds=1)
    latency, per_second = result[0]
    benchmark.extra_info.update(
        connect_plus_first_ping_s=summary(latency.values),
        connections_per_second=summary(per_second.values),
    )
    print(f"\n{latency}\n{per_second} (64 dials at a time, connect + ping + close)")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _idle_sessions(n: int) -> tuple[float, float]:
    server = await Node.bind(Identity.generate(), limits=_server_limits())
    client = await Node.bind(Identity.generate())
    await asyncio.gather(client.connect(server.peer_id, f"[::1]:{server.port}"), server.accept())
    await asyncio.sleep(0.5)
    before = _rss()
    kept = []
    for _ in range(n):
        kept.append(
            await asyncio.gather(
                client.connect(server.peer_id, f"[::1]:{server.port}"), server.accept()
            )
        )
    await asyncio.sleep(1.0)
    after = _rss()
    rtts = [await pair[0].ping() for pair in kept[:10]]
    await client.close()
    await server.close()
    return (after - before) / n, statistics.median(rtts)


def test_memory_per_idle_session(benchmark: Any) -> None:
    n = 200
    result: list[tuple[float, float]] = []
    benchmark.pedantic(lambda: result.append(asyncio.run(_idle_sessions(n))), rounds=1)
    per_pair, _ = result[0]
    benchmark.extra_info.update(rss_bytes_per_session_both_ends=per_pair, sessions=n)
    print(
        f"\nresident memory per idle session (both ends in this process, {n} sessions): "
        f"{per_pair / 1024:.1f} KiB"
    )
