"""Hostile peers for abuse tests and benches, and a provider in a process of its own to aim
them at. Every attack runs until its ``stop`` event is set or its deadline passes, and only
against loopback addresses it is given.

Legitimate peers and attackers dial the provider over IPv4 loopback from addresses of their
own in 127.0.0.0/8, so that, as on the internet, each comes from its own /32 prefix (the
provider listens dual-stack on ``[::]``). Attacks use ``ATTACKER_IP``.

Attacks (each by identities of its own, as an attacker with free identities would):
- ``hog_slots``: asks for the whole blob on many streams and never reads a byte;
- ``abandon_streams``: opens application and blob streams, writes a little or nothing, and
  drops them, over and over;
- ``flood_datagrams``: sends junk datagrams on its sessions;
- ``flood_handshakes``: dials from many sockets at once, expecting the wrong PeerId (the
  provider does its share of the handshake, the dialer aborts), over and over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import sys
import time
from asyncio.subprocess import PIPE
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from i6p import Identity, Node, PeerId, Session, Stream, Ticket
from i6p._core import testing
from i6p.errors import I6PError

from .test_protocol import frame, read_frame

GROUP_LOG = 18
HERE = Path(__file__).resolve().parent
ATTACKER_IP = "127.0.0.66"


def peer_ip(i: int) -> str:
    """The loopback address of legitimate peer ``i`` (its own /32)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


async def attacker_node(handshake_timeout: float = 10.0) -> Node:
    return await Node.bind(
        Identity.generate(), f"{ATTACKER_IP}:0", handshake_timeout=handshake_timeout
    )


def get_request(blob_hash: str, size: int) -> bytes:
    """A GET for every group of a blob, on a blob stream (kind byte first)."""
    groups = -(-size // (1 << GROUP_LOG))
    payload = bytes.fromhex(blob_hash) + bytes([GROUP_LOG]) + struct.pack(">HQQ", 1, 0, groups)
    return b"\x01" + frame(0x10, payload)


class Provider:
    """``tests/provider_proc.py`` serving one file, with its figures on demand."""

    def __init__(self, path: Path, **limits: float) -> None:
        self._args = [str(HERE / "provider_proc.py"), str(path), json.dumps(limits)]
        self._proc: asyncio.subprocess.Process | None = None
        self.ticket: Ticket | None = None
        self.pid = 0

    async def __aenter__(self) -> Provider:
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, *self._args, stdin=PIPE, stdout=PIPE, env=env
        )
        info = json.loads(await asyncio.wait_for(self._readline(), 60))
        self.ticket, self.pid = Ticket.parse(info["ticket"]), info["pid"]
        return self

    async def _readline(self) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the provider process exited")
        return line

    async def figures(self) -> dict[str, Any]:
        """rss, peak_rss (bytes), fds, threads, load (see ``Node.load``) and served."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(b"\n")
        await self._proc.stdin.drain()
        return dict(json.loads(await asyncio.wait_for(self._readline(), 30)))

    @property
    def peer_id(self) -> PeerId:
        assert self.ticket is not None
        return self.ticket.peer_id

    @property
    def addr(self) -> str:
        """The provider's IPv4 loopback address."""
        assert self.ticket is not None
        port = self.ticket.addrs[0].rsplit(":", 1)[1]
        return f"127.0.0.1:{port}"

    def loopback_ticket(self) -> Ticket:
        assert self.ticket is not None
        return Ticket(self.peer_id, [self.addr], self.ticket.hash, self.ticket.size)

    async def __aexit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 20)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


@dataclass
class Tally:
    """What an attack did."""

    attempts: int = 0
    failures: int = 0
    seconds: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)

    def note(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1


async def raw_provider_session(node: Node, peer: PeerId, addr: str) -> Session:
    """A raw session past a hand-made HELLO exchange."""
    raw = Session(await testing.connect_raw(node._core, peer, addr))
    control = await raw.open_stream()
    await control.write(testing.signed_hello(raw._core, []))
    for _ in range(2):  # the provider's HELLO and PEER_INFO
        await asyncio.wait_for(read_frame(control), 10)
    await control.finish()  # done with it: ended, not dropped (a dropped stream is reset)
    return raw


async def _until(
    stop: asyncio.Event, deadline: float, round_: Callable[[], Awaitable[None]]
) -> None:
    while not stop.is_set() and time.monotonic() < deadline:
        await round_()


async def hog_slots(
    provider: Provider, stop: asyncio.Event, seconds: float, peers: int = 4, streams: int = 40
) -> Tally:
    """``peers`` identities each keep ``streams`` GETs for the whole blob open, unread; streams
    the provider resets are replaced."""
    assert provider.ticket is not None
    request = get_request(provider.ticket.hash, provider.ticket.size)
    tally, start = Tally(), time.monotonic()
    nodes = [await attacker_node() for _ in range(peers)]
    held: list[Stream] = []
    try:

        async def round_() -> None:
            held.clear()  # dropped: the provider sees them stopped, and frees their slots
            for node in nodes:
                try:
                    raw = await raw_provider_session(node, provider.peer_id, provider.addr)
                    for _ in range(streams):
                        stream = await raw.open_stream()
                        await stream.write(request)
                        held.append(stream)
                        tally.attempts += 1
                except I6PError:
                    tally.failures += 1
            await asyncio.sleep(1.0)

        await _until(stop, start + seconds, round_)
    finally:
        held.clear()
        await asyncio.gather(*(n.close() for n in nodes))
    tally.seconds = time.monotonic() - start
    return tally


async def abandon_streams(provider: Provider, stop: asyncio.Event, seconds: float) -> Tally:
    """Opens application streams with 64 KiB nobody accepts, blob streams with a kind byte
    only, and GETs dropped at once; each round on a new identity."""
    assert provider.ticket is not None
    request = get_request(provider.ticket.hash, provider.ticket.size)
    tally, start = Tally(), time.monotonic()

    async def round_() -> None:
        async with await attacker_node() as node:
            try:
                session = await node.connect(provider.peer_id, provider.addr)
                for _ in range(50):
                    app = await session.open_stream()
                    await app.write(bytes(64 << 10))
                    blob = await session.open_stream()
                    await blob.write(b"\x01")
                    tally.attempts += 2
                raw = await raw_provider_session(node, provider.peer_id, provider.addr)
                for _ in range(50):
                    get = await raw.open_stream()
                    await get.write(request)
                    tally.attempts += 1
                    del get  # dropped at once: the provider sees STOP_SENDING
                await asyncio.sleep(0.2)
            except I6PError as e:
                tally.failures += 1
                tally.note(type(e).__name__)

    await _until(stop, start + seconds, round_)
    tally.seconds = time.monotonic() - start
    return tally


async def flood_datagrams(
    provider: Provider, stop: asyncio.Event, seconds: float, rate: float = 20e6
) -> Tally:
    """Junk datagrams (1,000 bytes, some shaped like shards) at up to ``rate`` bytes/s."""
    tally, start = Tally(), time.monotonic()
    async with await attacker_node() as node:
        session = await node.connect(provider.peer_id, provider.addr)
        junk = [os.urandom(1000), b"\xa5" + os.urandom(999)]
        batch = 100
        while not stop.is_set() and time.monotonic() < start + seconds:
            for i in range(batch):
                try:
                    testing.send_datagram(session._core, junk[i % 2])
                    tally.attempts += 1
                except I6PError:
                    tally.failures += 1
            await asyncio.sleep(batch * 1000 / rate)
    tally.seconds = time.monotonic() - start
    return tally


async def flood_handshakes(
    provider: Provider, stop: asyncio.Event, seconds: float, sockets: int = 16, per_socket: int = 8
) -> Tally:
    """Dials from ``sockets`` sockets, ``per_socket`` at a time each, expecting a wrong
    PeerId: the provider pays for its side of each handshake, the dialer aborts. A dial the
    provider refuses is given up after half a second (i6p's dialer would keep retrying it,
    with backoff, for its whole handshake timeout; an attacker would not back off at all)."""
    tally, start = Tally(), time.monotonic()
    nodes = [await attacker_node(handshake_timeout=0.5) for _ in range(sockets)]
    wrong = Identity.generate().peer_id

    async def dialer(node: Node) -> None:
        while not stop.is_set() and time.monotonic() < start + seconds:
            tally.attempts += 1
            try:
                await node.connect(wrong, provider.addr)
            except I6PError as e:
                tally.note(type(e).__name__)

    try:
        await asyncio.gather(*(dialer(n) for n in nodes for _ in range(per_socket)))
    finally:
        await asyncio.gather(*(n.close() for n in nodes))
    tally.seconds = time.monotonic() - start
    return tally


ATTACKS: dict[str, Callable[[Provider, asyncio.Event, float], Awaitable[Tally]]] = {
    "slot_hogs": hog_slots,
    "abandoned_streams": abandon_streams,
    "datagram_flood": flood_datagrams,
    "handshake_flood": flood_handshakes,
}


@contextlib.asynccontextmanager
async def attacking(provider: Provider, names: list[str], seconds: float):  # type: ignore[no-untyped-def]
    """Runs the named attacks in the background; yields their tasks, stops them on exit."""
    stop = asyncio.Event()
    tasks = {name: asyncio.create_task(ATTACKS[name](provider, stop, seconds)) for name in names}
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
