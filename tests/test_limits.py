"""The resource policy (``i6p.Limits``): what one peer, or one address prefix, can make a node
hold is bounded, and a node at a bound refuses rather than waits."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from i6p import Identity, Limits, Node, Session, Stream
from i6p.errors import ConnectionLost, HandshakeError, StreamReset

from .conftest import NodeFactory, loopback, wait_until
from .test_protocol import frame, handshake, raw_session, read_frame
from .test_transfer import b3_file, write_random

BUSY, SEND_TIMEOUT = 6, 7
GROUP_LOG = 18  # 256 KiB groups


def get_request(blob_hash: str, size: int) -> bytes:
    """A GET for every group of a blob, on a blob stream (kind byte first)."""
    groups = -(-size // (1 << GROUP_LOG))
    payload = bytes.fromhex(blob_hash) + bytes([GROUP_LOG]) + struct.pack(">HQQ", 1, 0, groups)
    return b"\x01" + frame(0x10, payload)


async def open_unread_gets(raw: Session, request: bytes, count: int) -> list[Stream]:
    """Opens `count` blob streams that each ask for the whole blob and never read a byte."""
    streams = []
    for _ in range(count):
        stream = await raw.open_stream()
        await stream.write(request)
        streams.append(stream)
    return streams


async def hostile_session(make_node: NodeFactory, provider: Node) -> Session:
    raw = await raw_session(await make_node(), provider)
    await (
        await handshake(raw)
    ).finish()  # done with it: ended, not dropped (a dropped stream is reset)
    return raw


def test_limits_defaults_and_validation() -> None:
    limits = Limits()
    assert limits.max_requests_per_peer < limits.max_requests
    assert limits.send_timeout > 0 and limits.read_ahead >= 1 << 20
    assert Limits(max_requests=3).max_requests == 3
    assert Limits(max_requests=3) == Limits(max_requests=3) != Limits()
    assert "max_requests=3" in repr(Limits(max_requests=3))
    with pytest.raises(ValueError, match="max_requests must be at least 1"):
        Limits(max_requests=0)
    with pytest.raises(ValueError, match="send_timeout"):
        Limits(send_timeout=0)


async def test_peers_that_stop_reading_cannot_starve_others(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """A peer that asks for a blob 64 times over and reads nothing holds at most its own
    share of request slots, and each only until the send timeout; an honest fetch meanwhile
    completes. (Before the policy, 64 such requests held every slot of the node forever.)"""
    src = tmp_path / "src"
    size = 16 << 20
    expected = write_random(src, size)
    limits = Limits(send_timeout=2.0)
    provider = await make_node(limits=limits)
    blob = await provider.add_path(src)
    raw = await hostile_session(make_node, provider)
    # Held, not dropped: a dropped stream would tell the provider to stop.
    hostile = await open_unread_gets(raw, get_request(blob.hash, size), 64)
    assert await wait_until(lambda: provider.load.requests >= limits.max_requests_per_peer, 10)
    assert provider.load.requests <= limits.max_requests_per_peer
    fetcher = await make_node()
    result = await asyncio.wait_for(fetcher.fetch(provider.ticket(blob), tmp_path / "dest"), 30)
    assert result.hash == expected and b3_file(tmp_path / "dest") == expected
    # The hostile requests took nothing for the send timeout: reset, and their slots freed.
    assert await wait_until(lambda: provider.load.requests == 0, 10), provider.load
    assert len(hostile) == 64


async def test_requests_take_no_slot_before_they_are_read(make_node: NodeFactory) -> None:
    """Streams that never say what they want hold no request slot while the provider waits
    for their GET."""
    provider = await make_node()
    raw = await hostile_session(make_node, provider)
    for _ in range(100):
        stream = await raw.open_stream()
        await stream.write(b"\x01" + frame(0x10, b"")[:3])  # a GET that never completes
    await asyncio.sleep(0.5)
    assert provider.load.requests == 0


async def test_a_request_over_the_peers_share_is_refused_as_busy(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    size = 16 << 20
    write_random(src, size)
    provider = await make_node(limits=Limits(max_requests_per_peer=2, send_timeout=30))
    blob = await provider.add_path(src)
    raw = await hostile_session(make_node, provider)
    request = get_request(blob.hash, size)
    held = await open_unread_gets(raw, request, 2)
    assert await wait_until(lambda: provider.load.requests == len(held), 10)
    third = await raw.open_stream()
    await third.write(request)
    kind, payload = await asyncio.wait_for(read_frame(third), 10)
    assert kind == 0x12 and payload[:2] == b"\x00\x05", payload
    assert b"too many requests from this peer" in payload


async def test_sessions_nobody_accepts_are_refused_past_the_queue(make_node: NodeFactory) -> None:
    listener = await make_node(limits=Limits(max_queued_sessions=2))
    sessions = []
    for _ in range(2):
        dialer = await make_node()
        sessions.append(await dialer.connect(listener.peer_id, loopback(listener)))
    # The first two wait to be accepted; the third is refused, and says why (during its
    # connect, or just after it).
    third = await make_node()
    with pytest.raises(ConnectionLost) as info:
        session = await third.connect(listener.peer_id, loopback(listener))
        await asyncio.wait_for(session.accept_stream(), 10)
    assert info.value.code == BUSY and "waiting to be accepted" in info.value.reason
    for session in sessions[:2]:
        assert await session.ping() > 0
    # Once the application accepts one, there is room for a new peer again.
    await listener.accept()
    late = await make_node()
    session = await late.connect(listener.peer_id, loopback(listener))
    assert await session.ping() > 0


async def test_connections_are_bounded_per_peer_and_per_prefix(make_node: NodeFactory) -> None:
    listener = await make_node(
        limits=Limits(max_connections_per_peer=2, max_connections_per_prefix=3)
    )
    same = Identity.generate()
    held = []  # a dropped session closes, and would free its place
    for _ in range(2):
        dialer = await make_node(same)
        held.append(await dialer.connect(listener.peer_id, loopback(listener)))
        assert await held[-1].ping() > 0
    # A third connection of the same identity is refused once the handshake shows who it is.
    dialer = await make_node(same)
    with pytest.raises((ConnectionLost, HandshakeError), match="too many connections from this"):
        session = await dialer.connect(listener.peer_id, loopback(listener))
        await asyncio.wait_for(session.ping(), 10)
    # Another identity from the same address prefix (::1) takes the prefix's last place...
    other = await make_node()
    held.append(await other.connect(listener.peer_id, loopback(listener)))
    assert await held[-1].ping() > 0
    # ...and the next one is refused before any handshake work (retried until its handshake
    # timeout: the refusal says the node is at a limit),
    refused = await make_node(handshake_timeout=1.5)
    with pytest.raises(HandshakeError, match="refused the connection"):
        await refused.connect(listener.peer_id, loopback(listener))
    # while IPv4 loopback is another prefix.
    session = await refused.connect(listener.peer_id, f"127.0.0.1:{listener.port}")
    assert await session.ping() > 0
    assert listener.load.connections == 4


async def test_streams_nobody_accepts_are_refused_past_the_queue(make_node: NodeFactory) -> None:
    dialer, listener = await make_node(), await make_node(limits=Limits(max_queued_streams=3))
    ours, theirs = await asyncio.gather(
        dialer.connect(listener.peer_id, loopback(listener)), listener.accept()
    )
    # The peer sees a stream when it opens; a refusal may come before the first write or
    # after it.
    streams, refused = [], 0
    for _ in range(5):
        stream = await ours.open_stream()
        try:
            await stream.write(b"x")
            await asyncio.wait_for(stream.read(), 1)
        except StreamReset as e:
            assert e.code == BUSY
            refused += 1
        except TimeoutError:
            streams.append(stream)  # queued: nobody reads or answers it yet
    assert (refused, len(streams)) == (2, 3)
    for _ in range(3):
        accepted = await asyncio.wait_for(theirs.accept_stream(), 5)
        assert await accepted.readexactly(1) == b"x"


def fec_get(blob_hash: str, size: int, transfer: int) -> bytes:
    groups = -(-size // (1 << GROUP_LOG))
    head = struct.pack(">IHBBB", transfer, 1200, 32, 1, 8)
    share = bytes([0, 32, 0, 1])
    get = bytes.fromhex(blob_hash) + bytes([GROUP_LOG]) + struct.pack(">HQQ", 1, 0, groups)
    return b"\x01" + frame(0x13, head + struct.pack(">II", 1000, 0) + share + get)


async def test_a_fec_requester_cannot_open_the_window_with_a_false_report(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """A LOSS report claiming every stripe seen (`through` = 2^64 - 1) is capped at what was
    sent: the provider keeps to its window and sends nothing more to a requester that reads
    nothing, then resets the request after the send timeout."""
    src = tmp_path / "src"
    size = 64 << 20
    write_random(src, size)
    provider = await make_node(limits=Limits(send_timeout=1.0))
    blob = await provider.add_path(src)
    raw = await hostile_session(make_node, provider)
    stream = await raw.open_stream()  # held: a dropped stream would stop the request
    await stream.write(fec_get(blob.hash, size, transfer=7))
    await stream.write(frame(0x17, struct.pack(">IQQQ", 7, 0, 0, 2**64 - 1)))
    assert await wait_until(lambda: provider.load.requests == 1, 10)
    assert await wait_until(lambda: provider.load.requests == 0, 15)
    # The initial window (2 MiB) and the proofs, not the 64 MiB blob.
    assert raw.stats()["bytes_received"] < 8 << 20, raw.stats()


async def test_removing_a_blob_forgets_who_fetched_it(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src, 1 << 20)
    provider, fetcher = await make_node(), await make_node()
    blob = await provider.add_path(src)
    await fetcher.fetch(provider.ticket(blob), tmp_path / "dest")
    assert await wait_until(lambda: provider.served(blob) == {fetcher.peer_id: 1 << 20}, 10)
    assert provider.remove(blob)
    again = await provider.add_path(src)
    assert again.hash == blob.hash and provider.served(again) == {}


async def test_a_node_that_only_serves_never_queues_sessions(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """With ``accept_sessions=False`` every peer is served, however many come, and ``accept``
    says it is off."""
    src = tmp_path / "src"
    expected = write_random(src, 256 << 10)
    provider = await make_node(limits=Limits(max_queued_sessions=2), accept_sessions=False)
    ticket = provider.ticket(await provider.add_path(src))
    for i in range(5):
        fetcher = await make_node()
        result = await fetcher.fetch(ticket, tmp_path / f"dest{i}")
        assert result.hash == expected
    with pytest.raises(ValueError, match="does not accept sessions"):
        await provider.accept()
