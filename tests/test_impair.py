"""The impairment relay (tests/impair) does what it claims: delay, loss, rate, reordering,
and a real I6P session through it. Functional checks only, all on ::1; speed is measured in
benches/bench_impair.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import socket
import time

from .conftest import NodeFactory, loopback
from .impair_relay import ImpairRelay

DELAY_MS = 25


class Udp(asyncio.DatagramProtocol):
    """A UDP socket on ::1 that queues what it receives with the arrival time."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.received: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def bind(cls, echo: bool = False) -> Udp:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        # Room for bursts while the event loop is busy sending.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("::1", 0))
        endpoint = cls(echo)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: endpoint, sock=sock)
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)
        else:
            self.received.put_nowait((data, time.perf_counter()))

    @property
    def addr(self) -> str:
        assert self.transport is not None
        return f"[::1]:{self.transport.get_extra_info('sockname')[1]}"

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("::1", port))

    async def recv(self, wait: float = 2.0) -> tuple[bytes, float]:
        """The next datagram and its arrival time; TimeoutError after ``wait`` seconds."""
        return await asyncio.wait_for(self.received.get(), wait)

    async def drain(self, quiet: float = 0.5) -> list[tuple[bytes, float]]:
        """Everything that arrives until ``quiet`` seconds pass without a datagram."""
        got = []
        while True:
            try:
                got.append(await self.recv(quiet))
            except TimeoutError:
                return got

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def send_paced(client: Udp, port: int, payloads: list[bytes], burst: int = 50) -> None:
    """Sends in bursts, yielding between them so that no socket buffer overflows."""
    for i in range(0, len(payloads), burst):
        for payload in payloads[i : i + burst]:
            client.send(payload, port)
        await asyncio.sleep(0.001)


def numbered(n: int, size: int) -> list[bytes]:
    return [i.to_bytes(4, "big") + bytes(size - 4) for i in range(n)]


def number(payload: bytes) -> int:
    return int.from_bytes(payload[:4], "big")


async def test_delay_applies_each_way() -> None:
    server, client = await Udp.bind(echo=True), await Udp.bind()
    try:
        async with ImpairRelay(server.addr, delay_ms=DELAY_MS, max_seconds=60) as relay:
            assert relay.addr == f"[::1]:{relay.port}"
            rtts = []
            for i in range(20):
                start = time.perf_counter()
                client.send(i.to_bytes(4, "big"), relay.port)
                data, arrived = await client.recv()
                assert number(data) == i
                rtts.append(arrived - start)
        assert min(rtts) >= 2 * DELAY_MS / 1e3, rtts
        assert max(rtts) < 1.0, rtts
        up, down = relay.stats["up"], relay.stats["down"]
        assert up["forwarded_packets"] == down["forwarded_packets"] == 20
        assert up["dropped_loss"] == up["dropped_queue"] == down["send_errors"] == 0
    finally:
        server.close()
        client.close()


async def test_replies_follow_the_latest_client() -> None:
    server, first, second = await Udp.bind(echo=True), await Udp.bind(), await Udp.bind()
    try:
        async with ImpairRelay(server.addr, max_seconds=60) as relay:
            for client in (first, second, first):
                client.send(b"ping", relay.port)
                assert (await client.recv())[0] == b"ping"
        assert first.received.empty() and second.received.empty()
        assert relay.stats["down"]["forwarded_packets"] == 3
    finally:
        for endpoint in (server, first, second):
            endpoint.close()


async def test_loss_drops_the_expected_fraction() -> None:
    sink, client = await Udp.bind(), await Udp.bind()
    try:
        async with ImpairRelay(sink.addr, loss=0.2, seed=42, max_seconds=60) as relay:
            await send_paced(client, relay.port, numbered(2000, 100))
            got = await sink.drain()
        up = relay.stats["up"]
        assert 0.7 <= len(got) / 2000 <= 0.9, len(got)
        assert up["received_packets"] == 2000
        assert up["forwarded_packets"] == len(got)
        assert up["forwarded_packets"] + up["dropped_loss"] == 2000
        assert up["dropped_queue"] == 0
    finally:
        sink.close()
        client.close()


async def test_rate_limits_and_queue_drops() -> None:
    sink, client = await Udp.bind(), await Udp.bind()
    payloads = numbered(500, 1000)
    try:
        # A queue that holds everything: 500 KB at 1 MB/s take half a second to come through.
        async with ImpairRelay(
            sink.addr, rate=1_000_000, queue_bytes=1_000_000, max_seconds=60
        ) as relay:
            start = time.perf_counter()
            await send_paced(client, relay.port, payloads)
            got = await sink.drain()
        assert len(got) == 500
        assert got[-1][1] - start >= 0.4
        assert relay.stats["up"]["dropped_queue"] == 0

        # A queue of five datagrams: most of a burst is dropped at the tail.
        async with ImpairRelay(
            sink.addr, rate=1_000_000, queue_bytes=5_000, max_seconds=60
        ) as relay:
            await send_paced(client, relay.port, payloads)
            got = await sink.drain()
        up = relay.stats["up"]
        assert up["dropped_queue"] > 0
        assert up["forwarded_packets"] == len(got) < 500
        assert up["forwarded_packets"] + up["dropped_queue"] == 500
    finally:
        sink.close()
        client.close()


async def test_reorder_without_loss() -> None:
    sink, client = await Udp.bind(), await Udp.bind()
    try:
        async with ImpairRelay(
            sink.addr, reorder=0.2, reorder_ms=5, seed=7, max_seconds=60
        ) as relay:
            await send_paced(client, relay.port, numbered(500, 64), burst=10)
            got = await sink.drain()
        order = [number(data) for data, _ in got]
        assert sorted(order) == list(range(500))
        assert any(a > b for a, b in itertools.pairwise(order))
        assert relay.stats["up"]["reordered"] > 0
    finally:
        sink.close()
        client.close()


async def test_session_through_a_long_link(make_node: NodeFactory) -> None:
    a = await make_node()
    b = await make_node()
    async with ImpairRelay(loopback(b), delay_ms=DELAY_MS, max_seconds=120) as relay:
        ours, theirs = await asyncio.wait_for(
            asyncio.gather(a.connect(b.peer_id, relay.addr), b.accept()), timeout=20
        )
        assert await ours.ping() >= 2 * DELAY_MS / 1e3

        async def echo() -> None:
            stream = await theirs.accept_stream()
            await stream.write(await stream.read())
            await stream.finish()

        payload = os.urandom(1 << 20)
        echoing = asyncio.create_task(echo())
        stream = await ours.open_stream()
        await stream.write(payload)
        await stream.finish()
        back = await asyncio.wait_for(stream.read(), timeout=60)
        await echoing
        assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()
        await ours.close()
    for direction in ("up", "down"):
        assert relay.stats[direction]["forwarded_packets"] > 0
        assert relay.stats[direction]["forwarded_bytes"] > 0
    assert relay.stats["up"]["forwarded_bytes"] > 1 << 20
    assert relay.stats["down"]["forwarded_bytes"] > 1 << 20
