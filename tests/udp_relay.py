"""A small UDP forwarder for tests: clients talk to it, it talks to one target.

Each client address gets its own upstream socket, so the target sees the relay, and the
client sees only the relay. ``blackhole`` drops everything in both directions (a peer that
goes silent); ``packets`` counts what was forwarded; ``up_limit`` forwards at most that many
datagrams from each client to the target (a client whose later packets never arrive), and
``dropped_up`` counts the ones it held back. After ``capture()``, ``captured`` keeps
the datagrams clients send until the target next answers (a QUIC client's first flight,
with its 0-RTT packets), and ``replay`` sends datagrams again from a new socket, as an
attacker who captured them would. Loopback only.
"""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, client: tuple[object, ...]) -> None:
        self.relay, self.client = relay, client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.relay._capturing = False
        if not self.relay.blackhole and self.relay.front is not None:
            self.relay.packets += 1
            self.relay.front.sendto(data, self.client)


class _Front(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.relay._from_client(data, addr)


class UdpRelay:
    """Forwards UDP between clients and ``target`` (a (host, port) on loopback)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.blackhole = False
        self.packets = 0
        self.up_limit: int | None = None
        self.dropped_up = 0
        self._sent_up: dict[tuple[object, ...], int] = {}
        self.front: asyncio.DatagramTransport | None = None
        self._upstreams: dict[tuple[object, ...], _Upstream] = {}
        self._pending: dict[tuple[object, ...], list[bytes]] = {}
        self.captured: list[bytes] = []
        self._capturing = False
        self._replayers: list[asyncio.DatagramTransport] = []

    @property
    def addr(self) -> str:
        assert self.front is not None
        return f"[::1]:{self.front.get_extra_info('sockname')[1]}"

    async def __aenter__(self) -> UdpRelay:
        loop = asyncio.get_running_loop()
        self.front, _ = await loop.create_datagram_endpoint(
            lambda: _Front(self), local_addr=("::1", 0), family=socket.AF_INET6
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for up in self._upstreams.values():
            if up.transport is not None:
                up.transport.close()
        for transport in self._replayers:
            transport.close()
        if self.front is not None:
            self.front.close()

    def capture(self) -> None:
        """Keeps what clients send from now until the target's next datagram."""
        self.captured = []
        self._capturing = True

    async def replay(self, packets: list[bytes]) -> None:
        """Sends ``packets`` to the target from a new socket (kept open until exit)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("::1", 0), family=socket.AF_INET6
        )
        self._replayers.append(transport)
        for data in packets:
            transport.sendto(data, self.target)

    def _from_client(self, data: bytes, client: tuple[object, ...]) -> None:
        if self.blackhole:
            return
        if self._capturing:
            self.captured.append(data)
        up = self._upstreams.get(client)
        if up is None:
            pending = self._pending.setdefault(client, [])
            if not pending:
                asyncio.get_running_loop().create_task(self._open(client))
            if len(pending) < 64:
                pending.append(data)
            return
        if up.transport is not None:
            sent = self._sent_up.get(client, 0)
            if self.up_limit is not None and sent >= self.up_limit:
                self.dropped_up += 1
                return
            self._sent_up[client] = sent + 1
            self.packets += 1
            up.transport.sendto(data, self.target)

    async def _open(self, client: tuple[object, ...]) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), local_addr=("::1", 0), family=socket.AF_INET6
        )
        self._upstreams[client] = proto
        for data in self._pending.pop(client, []):
            self._from_client(data, client)
