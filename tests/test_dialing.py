"""Dialing a provider listed at several addresses: one bad address (another node, a black
hole) does not deny the fetch, and a ticket full of black holes costs bounded work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from i6p import Identity, Ticket
from i6p.errors import HandshakeError, PeerIdMismatch

from .conftest import NodeFactory, loopback
from .test_transfer import GROUP, b3_file, write_random

#: The handshake timeout of the fetching nodes here: what one black hole costs.
TIMEOUT = 1.0


class BlackHole(asyncio.DatagramProtocol):
    """A UDP socket on ::1 that answers nothing and notes each QUIC connection attempt: the
    destination connection id of a long-header (Initial) packet, and when it first came."""

    def __init__(self) -> None:
        self.first_seen: dict[bytes, float] = {}
        self.addr = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        port = transport.get_extra_info("sockname")[1]
        self.addr = f"[::1]:{port}"

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 6 and data[0] & 0x80:
            dcid = data[6 : 6 + data[5]]
            self.first_seen.setdefault(dcid, time.monotonic())


@pytest.fixture
async def black_holes() -> AsyncIterator[list[BlackHole]]:
    loop = asyncio.get_running_loop()
    opened = [
        await loop.create_datagram_endpoint(BlackHole, local_addr=("::1", 0)) for _ in range(16)
    ]
    yield [protocol for _, protocol in opened]
    for transport, _ in opened:
        transport.close()


async def test_another_node_at_one_address_does_not_deny_the_fetch(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    expected = write_random(src, 2 * GROUP + 3)
    provider, impostor, fetcher = await make_node(), await make_node(), await make_node()
    blob = await provider.add_path(src)
    # A stale address now used by someone else, or an attacker's, listed first.
    ticket = Ticket(
        provider.peer_id, [loopback(impostor), loopback(provider)], blob.hash, blob.size
    )
    result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest"), 30)
    assert result.hash == expected == b3_file(tmp_path / "dest")


async def test_only_another_node_listed_is_a_peer_id_mismatch(
    make_node: NodeFactory, tmp_path: Path, black_holes: list[BlackHole]
) -> None:
    provider, impostor = await make_node(), await make_node()
    fetcher = await make_node(handshake_timeout=TIMEOUT)
    hash_ = "00" * 32
    alone = Ticket(provider.peer_id, [loopback(impostor)], hash_, 1000)
    with pytest.raises(PeerIdMismatch) as info:
        await asyncio.wait_for(fetcher.fetch(alone, tmp_path / "a"), 30)
    assert (info.value.expected, info.value.actual) == (
        str(provider.peer_id),
        str(impostor.peer_id),
    )
    # The most telling error wins over a later silence.
    both = Ticket(provider.peer_id, [loopback(impostor), black_holes[0].addr], hash_, 1000)
    with pytest.raises(PeerIdMismatch):
        await asyncio.wait_for(fetcher.fetch(both, tmp_path / "b"), 30)


async def test_fifteen_black_holes_then_the_provider(
    make_node: NodeFactory, tmp_path: Path, black_holes: list[BlackHole]
) -> None:
    """Addresses are tried in order, two at a time, each once; the provider listed last is
    still reached."""
    src = tmp_path / "src"
    expected = write_random(src, GROUP + 1)
    provider = await make_node()
    fetcher = await make_node(handshake_timeout=TIMEOUT)
    blob = await provider.add_path(src)
    holes = black_holes[:15]
    addrs = [h.addr for h in holes] + [loopback(provider)]
    ticket = Ticket(provider.peer_id, addrs, blob.hash, blob.size)
    result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest"), 60)
    assert result.hash == expected == b3_file(tmp_path / "dest")
    assert [len(h.first_seen) for h in holes] == [1] * 15
    # The third address waits for a slot: the first attempt must time out first.
    first = [min(h.first_seen.values()) for h in holes]
    assert first[2] - first[0] >= 0.8 * TIMEOUT, first


async def test_dialing_work_per_fetch_is_bounded(
    make_node: NodeFactory, tmp_path: Path, black_holes: list[BlackHole]
) -> None:
    """Eight providers listing sixteen black holes each: at most 32 connection attempts in
    all (not 128), and the fetch fails in a few handshake timeouts."""
    fetcher = await make_node(handshake_timeout=TIMEOUT)
    addrs = [h.addr for h in black_holes]
    tickets = [Ticket(Identity.generate().peer_id, addrs, "00" * 32, 1000) for _ in range(8)]
    start = time.monotonic()
    with pytest.raises(HandshakeError):
        await asyncio.wait_for(fetcher.fetch(tickets, tmp_path / "dest"), 60)
    attempts = sum(len(h.first_seen) for h in black_holes)
    assert 8 <= attempts <= 32, attempts
    assert time.monotonic() - start < 6 * TIMEOUT
