"""Throughput measurements for tuning a link: the engine's baselines, verified fetches through
this API, handshakes, and a sweep of the transfer settings.

Used by ``i6p bench`` and by the pytest-benchmark suites in ``benches/``. Every figure is a
list of per-round values summarised as median and spread; rates of I6P are put next to the
bare-quinn baseline measured in the same run. Nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._core import testing
from .identity import Identity
from .node import Limits, Node
from .transfer import FetchOptions, Ticket

# The engine's fetch defaults, which the settings below start from.
_DEFAULTS = FetchOptions()

__all__ = [
    "Figure",
    "Settings",
    "TuneResult",
    "fetch_local",
    "fetch_remote",
    "fetch_rounds",
    "fetch_vs_baseline",
    "grid",
    "handshakes",
    "local_provider",
    "node_payload",
    "raw_quinn",
    "scratch_dir",
    "tune",
]

MiB = 1 << 20


@dataclass
class Figure:
    """One measured quantity over several rounds."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.values, default=float("nan")),
            "max": max(self.values, default=float("nan")),
            "rounds": len(self.values),
            "values": self.values,
        }

    def __str__(self) -> str:
        if not self.values:
            return f"{self.name}: no data"
        scale, unit = (MiB, "MiB/s") if self.unit == "B/s" else (1.0, self.unit)
        lo, hi = min(self.values) / scale, max(self.values) / scale
        return f"{self.name}: {self.median / scale:.4g} {unit} [{lo:.4g}-{hi:.4g}]"


@dataclass(frozen=True)
class Settings:
    """Transfer settings that ``tune`` varies."""

    streams: int = _DEFAULTS.streams
    group_size: int = _DEFAULTS.group_size
    window: str = "auto"

    def describe(self) -> str:
        return f"streams={self.streams} group_size={self.group_size >> 10}KiB window={self.window}"


@dataclass
class TuneResult:
    """Every setting tried, with its rate, and the best one."""

    tried: list[tuple[Settings, Figure]]
    best: Settings
    best_rate: Figure


def scratch_dir() -> str:
    """A tmpfs when there is one, so the disk does not bound the figures."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _fill(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, MiB)
            f.write(block[:n])
            left -= n
        # Distinct content per file: the first block differs between runs.
        f.seek(0)
        f.write(os.urandom(min(size, MiB)))


async def raw_quinn(
    total: int, rounds: int, *, congestion: str = "cubic", max_udp_payload: int | None = None
) -> tuple[Figure, Figure]:
    """The baseline: bare quinn, one connection and one stream over ::1, both ends in this
    process, with packets of ``max_udp_payload`` bytes at most (by default those of a node
    bound with its defaults, as the fetches here are). Returns (rate, CPU-seconds per GB for
    both ends)."""
    if max_udp_payload is None:
        max_udp_payload = await node_payload()
    rate, cpu = Figure("raw quinn stream", "B/s"), Figure("raw quinn CPU", "s/GB")
    for _ in range(rounds):
        c0 = time.process_time()
        seconds = await testing.bench_raw_quinn(
            total, congestion=congestion, max_udp_payload=max_udp_payload
        )
        cpu.values.append((time.process_time() - c0) / (total / 1e9))
        rate.values.append(total / seconds)
    return rate, cpu


async def node_payload() -> int:
    """The UDP payload bound of a node bound with its defaults (the packets of the fetches
    here): the baseline must move packets of the same size to be a baseline."""
    async with await Node.bind(Identity.generate(), "[::1]:0") as node:
        return node.max_udp_payload


@contextlib.asynccontextmanager
async def local_provider(
    size: int, directory: str, window: str = "auto"
) -> AsyncIterator[tuple[Node, Ticket]]:
    """A node of this process on ::1 serving a fresh ``size``-byte file in ``directory``."""
    with tempfile.TemporaryDirectory(dir=directory, prefix="i6p-bench-") as tmp:
        src = Path(tmp) / "blob"
        _fill(src, size)
        async with await Node.bind(Identity.generate(), "[::1]:0", window=window) as provider:
            blob = await provider.add_path(src)
            yield provider, provider.ticket(blob)


async def fetch_rounds(
    ticket: Ticket,
    rounds: int,
    directory: str,
    settings: Settings,
    rate: Figure,
    cpu: Figure | None,
) -> None:
    """``rounds`` verified fetches of ``ticket`` into ``directory`` by a fresh node, adding
    each rate (and CPU-seconds per GB of this process, if ``cpu`` is given) to the figures."""
    with tempfile.TemporaryDirectory(dir=directory, prefix="i6p-bench-") as tmp:
        dest = Path(tmp) / "fetched"
        async with await Node.bind(Identity.generate(), window=settings.window) as node:
            for _ in range(rounds):
                c0 = time.process_time()
                result = await node.fetch(
                    ticket,
                    dest,
                    overwrite=True,
                    streams=settings.streams,
                    group_size=settings.group_size,
                )
                if cpu is not None:
                    cpu.values.append((time.process_time() - c0) / (result.size / 1e9))
                rate.values.append(result.size / result.duration_s)
                dest.unlink()


async def fetch_local(
    size: int,
    rounds: int,
    settings: Settings = Settings(),
    *,
    directory: str | None = None,
) -> tuple[Figure, Figure]:
    """Verified fetches of a ``size``-byte file between two nodes of this process over ::1,
    disk to disk in ``directory`` (a tmpfs by default). Returns (rate, CPU-seconds per GB
    for both ends)."""
    directory = directory or scratch_dir()
    rate, cpu = Figure("verified fetch", "B/s"), Figure("verified fetch CPU", "s/GB")
    async with local_provider(size, directory, settings.window) as (_, ticket):
        await fetch_rounds(ticket, rounds, directory, settings, rate, cpu)
    return rate, cpu


async def fetch_vs_baseline(
    size: int,
    rounds: int,
    settings: Settings = Settings(),
    *,
    directory: str | None = None,
    max_udp_payload: int | None = None,
) -> tuple[Figure, Figure, Figure, Figure]:
    """``rounds`` of the baseline (``raw_quinn``) and of a verified fetch (``fetch_local``),
    one of each in turn, so a change in the machine's load while it runs weighs on both
    alike. Returns (baseline rate, baseline CPU, fetch rate, fetch CPU)."""
    directory = directory or scratch_dir()
    if max_udp_payload is None:
        max_udp_payload = await node_payload()
    figures = (
        Figure("raw quinn stream", "B/s"),
        Figure("raw quinn CPU", "s/GB"),
        Figure("verified fetch", "B/s"),
        Figure("verified fetch CPU", "s/GB"),
    )
    async with local_provider(size, directory, settings.window) as (_, ticket):
        for _ in range(rounds):
            rate, cpu = await raw_quinn(size, 1, max_udp_payload=max_udp_payload)
            figures[0].values += rate.values
            figures[1].values += cpu.values
            await fetch_rounds(ticket, 1, directory, settings, figures[2], figures[3])
    return figures


async def fetch_remote(
    ticket: Ticket | str,
    rounds: int,
    settings: Settings = Settings(),
    *,
    directory: str | None = None,
) -> Figure:
    """Verified fetches of a remote provider's blob (the other side runs ``i6p send``)."""
    if isinstance(ticket, str):
        ticket = Ticket.parse(ticket)
    rate = Figure("verified fetch", "B/s")
    await fetch_rounds(ticket, rounds, directory or scratch_dir(), settings, rate, None)
    return rate


async def handshakes(n: int, *, peer: Ticket | None = None) -> tuple[Figure, Figure]:
    """Connect + first PONG, ``n`` times one after another (to ``peer``, or to a node of this
    process over ::1); and connections per second with 64 dials at a time (16 to ``peer``,
    within the connections per PeerId its default ``Limits`` allow)."""
    latency, per_second = (
        Figure("connect + first ping", "s"),
        Figure("connections per second", "1/s"),
    )
    async with await Node.bind(Identity.generate()) as client:
        async with contextlib.AsyncExitStack() as stack:
            at_once = 16
            if peer is None:
                # One client dials 64 at a time: more than one PeerId may hold by default.
                limits = Limits(max_connections_per_peer=128, handshake_rate_per_prefix=1 << 20)
                server = await stack.enter_async_context(
                    await Node.bind(Identity.generate(), "[::1]:0", limits=limits)
                )
                at_once = 64
                target, addrs = server.peer_id, [f"[::1]:{server.port}"]
                drain = asyncio.create_task(_accept_forever(server))
                stack.callback(drain.cancel)
            else:
                target, addrs = peer.peer_id, peer.addrs

            async def one() -> float:
                start = time.perf_counter()
                session = await client.connect(target, addrs[0])
                await session.ping()
                elapsed = time.perf_counter() - start
                await session.close()
                return elapsed

            for _ in range(n):
                latency.values.append(await one())
            for _ in range(3):
                start = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(at_once)))
                per_second.values.append(at_once / (time.perf_counter() - start))
    return latency, per_second


async def _accept_forever(node: Node) -> None:
    # Held until the node closes: a dropped session is closed, under its dialer's ping.
    held = []
    while True:
        held.append(await node.accept())


# The values ``tune`` and ``grid`` try.
STREAMS_TRIED = (1, 2, 4, 8, 16)
GROUPS_TRIED = (64 << 10, 256 << 10, 1 << 20, 4 << 20)
WINDOWS_TRIED = ("auto", str(4 << 20), str(16 << 20), str(64 << 20))


def _candidates(base: Settings, name: str) -> Iterator[Settings]:
    if name == "streams":
        for streams in STREAMS_TRIED:
            yield Settings(streams, base.group_size, base.window)
    elif name == "group_size":
        for group in GROUPS_TRIED:
            yield Settings(base.streams, group, base.window)
    else:
        for window in WINDOWS_TRIED:
            yield Settings(base.streams, base.group_size, window)


async def tune(
    measure: Callable[[Settings], Awaitable[Figure]],
    *,
    dimensions: Sequence[str] = ("streams", "group_size", "window"),
    report: Callable[[Settings, Figure], object] | None = None,
) -> TuneResult:
    """Finds good settings one dimension at a time: stream count, then chunk-group size,
    then windows, each swept with the best of the others so far (a full grid would take
    80 measurements)."""
    best = Settings()
    tried: list[tuple[Settings, Figure]] = []
    best_rate: Figure | None = None
    for name in dimensions:
        for candidate in _candidates(best, name):
            known = next((f for s, f in tried if s == candidate), None)
            figure = known or await measure(candidate)
            if known is None:
                tried.append((candidate, figure))
                if report is not None:
                    report(candidate, figure)
            if best_rate is None or figure.median > best_rate.median:
                best, best_rate = candidate, figure
    assert best_rate is not None
    return TuneResult(tried, best, best_rate)


async def grid(
    measure: Callable[[Settings], Awaitable[Figure]],
    *,
    window: str = "auto",
    report: Callable[[Settings, Figure], object] | None = None,
) -> TuneResult:
    """Every stream count x chunk-group size pair at one window setting (20 measurements):
    the whole surface ``tune`` walks one line of, for the report's heatmap."""
    tried: list[tuple[Settings, Figure]] = []
    for streams in STREAMS_TRIED:
        for group in GROUPS_TRIED:
            candidate = Settings(streams, group, window)
            figure = await measure(candidate)
            tried.append((candidate, figure))
            if report is not None:
                report(candidate, figure)
    best, best_rate = max(tried, key=lambda t: t[1].median)
    return TuneResult(tried, best, best_rate)
