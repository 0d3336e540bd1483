"""Packet sizes: path MTU discovery up to the interface's MTU, GSO batches the kernel accepts,
and FEC shards that follow the path's datagram size (over ::1, whose MTU is 65,536)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from i6p import Node, Session

from .conftest import NodeFactory
from .test_transfer import b3_file, write_random

# What a node advertises here with max_udp_payload="auto": loopback's MTU less IPv6 and UDP headers.
LOOPBACK_PAYLOAD = 65_536 - 48


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
    node = await make_node(max_udp_payload="auto")
    assert node.max_udp_payload == LOOPBACK_PAYLOAD
    # Large packets are opt-in (see Node.bind): by default an Ethernet frame.
    ordinary = await make_node()
    assert ordinary.max_udp_payload == 1452
    with pytest.raises(ValueError, match="max_udp_payload"):
        await make_node(max_udp_payload=1000)


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
