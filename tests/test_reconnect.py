"""Sessions that outlive their path: a receiver that moves to another socket mid-fetch
(connection migration), and a provider that dies and comes back (reconnection)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from i6p import Identity, Node, Ticket
from i6p.errors import HandshakeError

from . import peer_proc
from .conftest import NodeFactory, fetch_until
from .test_transfer import b3_file, write_random
from .udp_relay import UdpRelay

MiB = 1 << 20


async def test_rebinding_the_receiver_mid_fetch_completes_and_verifies(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 300 * MiB
    expected = write_random(src, size)
    provider = await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    fetcher = await make_node()
    # Through a relay: it gives the receiver's new port an upstream of its own, so the
    # provider sees its peer move too, and it slows the transfer enough to move mid-way.
    async with UdpRelay(("::1", provider.port)) as relay:
        relayed = Ticket(ticket.peer_id, [relay.addr], ticket.hash, ticket.size)
        fetching, seen = await fetch_until(fetcher, relayed, dest, size // 10)
        old = fetcher.port
        await fetcher.rebind("[::]:0")
        moved_at = seen[-1]
        assert fetcher.port != old
        assert moved_at < size, "the fetch ended before the socket moved"
        result = await asyncio.wait_for(fetching, 120)
    assert result.hash == expected and b3_file(dest) == expected
    # Nothing started over: the data crossed the link about once.
    assert result.bytes_fetched <= size + 64 * MiB


async def test_a_fetch_reconnects_when_its_provider_restarts(tmp_path: Path) -> None:
    """The provider is killed (a crash: no close said) and comes back 2 s later on the same
    address (same identity and state dir): the fetch reconnects and completes without
    fetching again the groups it had verified. The fetcher notices the dead link within its
    liveness period, and its dials to the dead port fail at once (ICMP), so its attempts are
    spent on the backoff. (A provider that closes says it is shutting down and is not dialed
    again: test_liveness. Its 0-RTT packets to the new process are refused and resent after
    the handshake: 0-RTT itself is tested in test_resumption.)"""
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 200 * MiB
    expected = write_random(src, size)
    key = tmp_path / "identity.pem"
    Identity.generate().save(key)
    config = {"identity": str(key), "serve": str(src), "state_dir": str(tmp_path / "state")}
    provider = await peer_proc.spawn(**config)
    port = provider.info["port"]
    fetcher = await Node.bind(Identity.generate(), "[::1]:0", liveness=1.0)
    try:
        fetching, seen = await fetch_until(
            fetcher,
            Ticket.parse(provider.info["ticket"]),
            dest,
            size // 4,
            group_size=16 << 10,
            request_size=1 * MiB,
            reconnects=10,
        )
        await provider.kill()
        durable = seen[-1]
        await asyncio.sleep(2.0)
        assert not fetching.done(), "the fetch gave up while the provider was away"
        provider = await peer_proc.spawn(**config, addr=f"[::1]:{port}")
        result = await asyncio.wait_for(fetching, 120)
        assert result.hash == expected and b3_file(dest) == expected
        assert result.bytes_fetched <= size + 16 * MiB, "verified groups were fetched again"
        assert durable < size
    finally:
        await provider.kill()
        await fetcher.close()


async def test_reconnects_are_bounded(make_node: NodeFactory, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 100 * MiB
    write_random(src, size)
    provider = await peer_proc.spawn(serve=str(src))
    fetcher = await make_node(handshake_timeout=0.5, liveness=1.0)
    try:
        fetching, _ = await fetch_until(
            fetcher,
            Ticket.parse(provider.info["ticket"]),
            dest,
            size // 10,
            group_size=16 << 10,
            request_size=1 * MiB,
            reconnects=2,
            backoff=0.1,
        )
        await provider.kill()  # and it never comes back
        start = time.monotonic()
        try:
            await asyncio.wait_for(fetching, 30)
        except HandshakeError:  # Unreachable: its port answers ICMP port unreachable
            pass
        else:
            raise AssertionError("a fetch whose provider is gone must fail")
        # Noticed within the 1 s liveness period, then two attempts 0.1 s and 0.2 s apart.
        assert time.monotonic() - start < 10
        assert not dest.exists()
    finally:
        await provider.kill()
