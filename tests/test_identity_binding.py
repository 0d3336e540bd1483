"""The TLS handshake binds PeerIds: wrong ids and nodes in the middle are caught."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from i6p import Identity
from i6p.errors import PeerIdMismatch

from .conftest import NodeFactory, connect_pair, loopback
from .udp_relay import UdpRelay


async def test_wrong_peer_id_fails_before_any_application_byte(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    wrong = Identity.generate().peer_id
    accepting = asyncio.create_task(b.accept())
    with pytest.raises(PeerIdMismatch) as info:
        await a.connect(wrong, loopback(b))
    assert info.value.expected == str(wrong)
    assert info.value.actual == str(b.peer_id)
    # No session ever reached the listener's application.
    await asyncio.sleep(0.3)
    assert not accepting.done()
    accepting.cancel()
    _, theirs = await connect_pair(a, b)
    assert theirs.remote_peer_id == a.peer_id


async def test_node_in_the_middle_is_detected(make_node: NodeFactory) -> None:
    """M accepts under its own identity and would forward to B: A, dialing B, refuses M."""
    a, b, m = await make_node(), await make_node(), await make_node()
    forwarded: list[bytes] = []

    async def forward() -> None:
        inbound = await m.accept()
        outbound = await m.connect(b.peer_id, loopback(b))
        stream = await inbound.accept_stream()
        data = await stream.read()
        forwarded.append(data)
        upstream = await outbound.open_stream()
        await upstream.write(data)

    relay_task = asyncio.create_task(forward())
    with pytest.raises(PeerIdMismatch) as info:
        await a.connect(b.peer_id, loopback(m))
    assert info.value.expected == str(b.peer_id)
    assert info.value.actual == str(m.peer_id)
    await asyncio.sleep(0.3)
    assert not relay_task.done() and forwarded == []
    relay_task.cancel()


async def test_a_transparent_relay_is_end_to_end(make_node: NodeFactory) -> None:
    """Forwarding packets without terminating TLS is fine: the session is with B itself."""
    a, b = await make_node(), await make_node()
    async with UdpRelay(("::1", b.port)) as relay:
        ours, theirs = await asyncio.wait_for(
            asyncio.gather(a.connect(b.peer_id, relay.addr), b.accept()), 20
        )
        assert ours.remote_peer_id == b.peer_id and theirs.remote_peer_id == a.peer_id
        stream = await ours.open_stream()
        await stream.write(b"through the relay")
        await stream.finish()
        assert await (await theirs.accept_stream()).read() == b"through the relay"
        assert relay.packets > 0


async def test_random_datagrams_do_not_disturb_a_live_session(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    ours, theirs = await connect_pair(a, b)
    noise = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    noise.setblocking(False)
    rng = os.urandom

    async def blast() -> int:
        sent = 0
        for i in range(10_000):
            size = 1 + int.from_bytes(rng(2), "big") % 1400
            data = bytearray(rng(size))
            if i % 3 == 0 and size > 6:  # looks like a QUIC v1 long header
                data[0] = 0xC0 | (data[0] & 0x3F)
                data[1:5] = b"\x00\x00\x00\x01"
            elif i % 3 == 1:  # short header with a random connection id
                data[0] = 0x40 | (data[0] & 0x3F)
            try:
                noise.sendto(bytes(data), ("::1", b.port))
                sent += 1
            except BlockingIOError:
                await asyncio.sleep(0.001)
            if i % 200 == 0:
                await asyncio.sleep(0)
        return sent

    async def traffic() -> None:
        for i in range(20):
            stream = await ours.open_stream()
            payload = f"message {i}".encode() * 1000
            await stream.write(payload)
            await stream.finish()
            incoming = await theirs.accept_stream()
            assert await incoming.read() == payload
            assert await ours.ping() < 5

    try:
        sent, _ = await asyncio.wait_for(asyncio.gather(blast(), traffic()), 120)
    finally:
        noise.close()
    assert sent > 9_000
    assert await theirs.ping() < 5
    assert ours.remote_peer_id == b.peer_id
