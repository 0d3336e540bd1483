"""Packet sizes: path MTU discovery up to the interface's MTU, GSO batches the kernel accepts,
and FEC shards that follow the path's datagram size (over ::1, whose MTU is 65,536)."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import pytest
from i6p import Limits, Node, Session, Stream
from i6p.errors import ConnectionLost

from .conftest import NodeFactory
from .test_transfer import b3_file, write_random

# What a node advertises here with max_udp_payload="auto": loopback's MTU less IPv6 and UDP headers.
LOOPBACK_PAYLOAD = 65_536 - 48
#: Close codes (codes.rs): a refused session, and one whose application dropped it.
BUSY = 6
ABANDONED = 9


async def sessions(provider: Node, fetcher: Node) -> tuple[Session, Session]:
    """A session between the two (the fetch reuses it), as (fetcher's, provider's)."""
    ours, theirs = await asyncio.gather(
        fetcher.connect(provider.peer_id, f"[::1]:{provider.port}"), provider.accept()
    )
    return ours, theirs


async def discovered(session: Session, above: int, seconds: float = 5.0) -> int:
    """Waits (bounded) until the session's MTU passes ``above``; returns the MTU reached."""
    deadline = time.monotonic() + seconds
    while session.stats()["mtu"] <= above and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return session.stats()["mtu"]


async def test_nodes_advertise_their_largest_interface_mtu(make_node: NodeFactory) -> None:
    # Large packets by default (see Node.bind); 1452 keeps QUIC's usual bound.
    for node in (await make_node(), await make_node(max_udp_payload="auto")):
        assert node.max_udp_payload == LOOPBACK_PAYLOAD
    assert (await make_node(max_udp_payload=1452)).max_udp_payload == 1452
    with pytest.raises(ValueError, match="max_udp_payload"):
        await make_node(max_udp_payload=1000)


async def test_a_session_refused_while_discovery_probes_hears_why(make_node: NodeFactory) -> None:
    """A listener refuses sessions past its accept queue right after their handshake, with
    its HELLO still queued and an MTU probe of tens of KB in flight: with large packets that
    probe fills the congestion window, and quinn 0.11 held the CONNECTION_CLOSE back for
    ever (quinn-rs/quinn#2785); the dialer then saw a stateless reset, code 0. Each refused
    dialer must hear BUSY and the reason."""
    listener = await make_node(limits=Limits(max_queued_sessions=1), max_udp_payload="auto")
    first = await make_node(max_udp_payload="auto")
    held = await asyncio.wait_for(first.connect(listener.peer_id, f"[::1]:{listener.port}"), 10)
    # connect returns at the listener's 0.5-RTT HELLO, before the listener has taken this
    # dialer's HELLO and queued the session; a PONG comes after both, so the queue is full.
    await asyncio.wait_for(held.ping(), 10)
    for _ in range(4):
        dialer = await make_node(max_udp_payload="auto")
        with pytest.raises(ConnectionLost) as info:
            session = await dialer.connect(listener.peer_id, f"[::1]:{listener.port}")
            await asyncio.wait_for(session.accept_stream(), 10)
        assert info.value.code == BUSY, info.value
        assert "waiting to be accepted" in info.value.reason, info.value


async def send_zeros(stream: Stream, chunks: int) -> None:
    """Writes ``chunks`` MiB of zeros (bounded; the caller cancels it long before)."""
    chunk = bytes(1 << 20)
    for _ in range(chunks):
        await stream.write(chunk)


async def drop_while_sending(sender: Session, receiver: Session) -> None:
    """Keeps ``sender`` sending as fast as its window allows, reads 16 MiB at ``receiver``,
    then lets go of every reference to ``sender`` while data is still queued and in flight."""
    stream = await sender.open_stream()
    writes = asyncio.ensure_future(send_zeros(stream, 256))
    incoming = await asyncio.wait_for(receiver.accept_stream(), 10)
    received = 0
    while received < 16 << 20:
        received += len(await asyncio.wait_for(incoming.read(1 << 20), 10))
    writes.cancel()
    await asyncio.gather(writes, return_exceptions=True)


async def test_a_sender_dropped_mid_transfer_closes_with_its_code(make_node: NodeFactory) -> None:
    """A session dropped while it sends (large packets, data still queued) ends with one
    CONNECTION_CLOSE and no CLOSE exchange: the peer must get it (abandoned, code 9), not a
    reset or a timeout."""
    for _ in range(3):
        a = await make_node(max_udp_payload="auto")
        b = await make_node(max_udp_payload="auto")
        ours, theirs = await sessions(b, a)
        assert await discovered(ours, 60_000) > 60_000
        await drop_while_sending(ours, theirs)
        del ours
        gc.collect()
        code, reason, by_peer = await asyncio.wait_for(theirs.wait_closed(), 10)
        assert (code, by_peer) == (ABANDONED, True), (code, reason)


async def test_a_loopback_fetch_in_large_packets_never_takes_a_black_hole(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """quinn batches up to 10 packets per GSO send; at 65 KB each that is ten times what the
    kernel takes in one send. Split, every packet goes: discovery climbs to loopback's size,
    and a 128 MiB fetch ends without a single black hole."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 128 << 20
    expected = write_random(src, size)
    provider = await make_node(max_udp_payload="auto")
    fetcher = await make_node(max_udp_payload="auto")
    ticket = provider.ticket(await provider.add_path(src))
    ours, theirs = await sessions(provider, fetcher)
    assert await discovered(theirs, 60_000) > 60_000
    result = await asyncio.wait_for(fetcher.fetch(ticket, dest), 120)
    assert result.hash == expected and b3_file(dest) == expected
    sent = theirs.stats()
    assert 60_000 < sent["mtu"] <= LOOPBACK_PAYLOAD, sent
    assert sent["black_holes"] == 0, sent
    # Large packets carried it: far fewer than 1,452-byte ones would have needed.
    assert sent["packets_sent"] < size // 10_000, sent
    assert ours.stats()["black_holes"] == 0


async def test_an_ordinary_bound_keeps_ordinary_packets(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """One side at QUIC's usual 1,452: discovery stays there in both directions (each side
    goes no further than the other advertises)."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, 8 << 20)
    provider = await make_node(max_udp_payload="auto")
    fetcher = await make_node(max_udp_payload=1452)
    ticket = provider.ticket(await provider.add_path(src))
    ours, theirs = await sessions(provider, fetcher)
    result = await fetcher.fetch(ticket, dest)
    assert result.hash == expected
    for stats in (ours.stats(), theirs.stats()):
        assert 1200 <= stats["mtu"] <= 1452, stats
        assert stats["packets_sent"] > 0


async def test_fec_shards_follow_the_discovered_mtu(make_node: NodeFactory, tmp_path: Path) -> None:
    """FEC shards are sized by the provider from the path's datagram size: on loopback about
    65 KB each; at an ordinary bound about 1,200 bytes (sized for QUIC's smallest MTU)."""
    size = 16 << 20
    src = tmp_path / "src"
    expected = write_random(src, size)
    received: dict[object, int] = {}
    for bound in ("auto", 1452):
        dest = tmp_path / f"dest-{bound}"
        provider = await make_node(max_udp_payload="auto")
        fetcher = await make_node(max_udp_payload=bound)
        ticket = provider.ticket(await provider.add_path(src))
        _, theirs = await sessions(provider, fetcher)
        await discovered(theirs, 60_000 if bound == "auto" else 1451)
        result = await fetcher.fetch(ticket, dest, mode="fec")
        assert result.hash == expected and b3_file(dest) == expected
        assert result.fec is not None
        received[bound] = result.fec.shards_received
    # Shards of about 65,000 bytes: at least the data's 258 of them, at most about twice that
    # with parity. Ordinary shards: over 13,000 for the same data.
    assert size // 65_000 <= received["auto"] < size // 20_000, received
    assert received[1452] > size // 1_300, received
