"""Fast failures, liveness and timeouts (issue 15): a dial the network refuses fails at once,
a provider that shut down is not dialed again, a killed peer is noticed within the liveness
period and reported as timed out (code 8), a ping can be bounded, a 0-RTT session to a
vanished peer names it as unreachable, and a node cannot dial itself.

Killed peers are processes of their own, killed with SIGKILL: no CLOSE, no CONNECTION_CLOSE,
and their port answers ICMP port unreachable, as after a crash. Every timeout that the old
behaviour waited out is raised well above the bound asserted, so the difference is plain."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from i6p import Identity, Node, Ticket
from i6p._core import testing
from i6p.errors import (
    ConnectionLost,
    HandshakeError,
    InvalidPeerId,
    Timeout,
    Unreachable,
)

from .conftest import NodeFactory, connect_pair, fetch_until, loopback
from .peer_proc import Peer, spawn
from .test_transfer import write_random
from .udp_relay import UdpRelay

MiB = 1 << 20
TIMED_OUT, NODE_CLOSED = 8, 3

SpawnPeer = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def spawn_peer() -> AsyncIterator[SpawnPeer]:
    """Starts peer processes (tests/peer_proc.py) and kills them at the end of the test."""
    peers: list[Peer] = []

    async def start(**config: object) -> Peer:
        peer = await spawn(**config)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        await peer.kill()


def closed_port(host: str) -> int:
    """A UDP port on ``host`` that nothing listens on (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def elapsed(awaitable: Awaitable[object], limit: float = 60) -> tuple[float, object]:
    """How long ``awaitable`` took, and what it returned or raised."""
    start = time.monotonic()
    try:
        outcome: object = await asyncio.wait_for(awaitable, limit)
    except Exception as e:  # the caller asserts on what it got
        outcome = e
    return time.monotonic() - start, outcome


# -- 1. the network already said no ---------------------------------------------------------


@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
async def test_a_closed_port_fails_at_once_as_unreachable(
    make_node: NodeFactory, host: str
) -> None:
    bound = f"[{host}]:0" if ":" in host else f"{host}:0"
    node = await make_node(addr=bound, handshake_timeout=30.0)
    port = closed_port(host)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    took, error = await elapsed(node.connect(Identity.generate().peer_id, target))
    assert isinstance(error, Unreachable) and isinstance(error, HandshakeError), error
    assert target in str(error) and "port unreachable" in str(error)
    # The handshake timeout is 30 s; the kernel's ICMP answer comes in microseconds.
    assert took < 3.0


async def test_probing_does_not_disturb_a_live_peer(make_node: NodeFactory) -> None:
    a = await make_node(handshake_timeout=30.0)
    b = await make_node()
    for _ in range(3):
        ours, theirs = await connect_pair(a, b)
        assert await ours.ping(timeout=10) > 0
        await ours.close()
        await theirs.wait_closed()
    assert b.load.refused == 0


async def test_a_fetch_from_a_provider_that_is_gone_fails_at_once(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider = await make_node(addr="[::1]:0")
    src = tmp_path / "src"
    write_random(src, 100_000)
    blob = await provider.add_path(src)
    # A ticket listing two addresses where nothing listens (as after the provider exited).
    ticket = Ticket(
        provider.peer_id,
        [f"[::1]:{closed_port('::1')}", f"127.0.0.1:{closed_port('127.0.0.1')}"],
        blob.hash,
        blob.size,
    )
    fetcher = await make_node(handshake_timeout=30.0)
    took, error = await elapsed(fetcher.fetch(ticket, tmp_path / "dest"))
    assert isinstance(error, Unreachable), error
    assert took < 3.0


# -- 2. a provider that said it is shutting down is not dialed again -------------------------
# 256 MiB, stopped at 1/16 verified on disk: the fetch is surely mid-way when the provider
# goes. (Not through a rate-limited relay: its queue can drop the CONNECTION_CLOSE.)

SIZE = 256 * MiB


async def test_a_provider_that_closes_mid_fetch_ends_it_at_once(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_random(src, SIZE)
    provider = await Node.bind(Identity.generate(), "[::1]:0")
    ticket = provider.ticket(await provider.add_path(src))
    # A long handshake timeout and many reconnects: each new dial would have waited 30 s.
    fetcher = await make_node(handshake_timeout=30.0)
    # Served slowly, so the drop lands mid-fetch however fast this machine is.
    testing.set_provider_faults(provider._core, testing.SLOW)
    fetching, _ = await fetch_until(
        fetcher, ticket, dest, SIZE // 16, group_size=16 << 10, request_size=MiB, reconnects=5
    )
    await provider.close()
    took, error = await elapsed(fetching)
    assert isinstance(error, ConnectionLost), error
    assert error.code == NODE_CLOSED and error.by_peer and "node closed" in str(error)
    assert took < 3.0


async def test_a_provider_that_closes_is_dropped_and_the_others_finish(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_random(src, SIZE)
    leaving = await Node.bind(Identity.generate(), "[::1]:0")
    staying = await make_node(addr="[::1]:0")
    tickets = [p.ticket(await p.add_path(src)) for p in (leaving, staying)]
    fetcher = await make_node()
    fetching, _ = await fetch_until(
        fetcher, tickets, dest, SIZE // 16, group_size=16 << 10, request_size=MiB
    )
    await leaving.close()
    result = await asyncio.wait_for(fetching, 60)
    assert result.size == SIZE
    assert "node closed" in result.dropped[leaving.peer_id]


async def test_a_killed_provider_is_dialed_again(
    make_node: NodeFactory, spawn_peer: SpawnPeer, tmp_path: Path
) -> None:
    """No close was said: the fetch reconnects (resume after a restart), and each dial to
    the dead port fails at once, so the attempts are spent on the backoff, not on handshake
    timeouts."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_random(src, SIZE)
    provider = await spawn_peer(serve=str(src))
    fetcher = await make_node(handshake_timeout=30.0, liveness=1.0)
    fetching, _ = await fetch_until(
        fetcher,
        Ticket.parse(provider.info["ticket"]),
        dest,
        SIZE // 16,
        group_size=16 << 10,
        request_size=MiB,
        reconnects=3,
        backoff=0.2,
    )
    await provider.kill()
    took, error = await elapsed(fetching)
    # Noticed within the liveness period, then three dials refused at once, 0.2 + 0.4 + 0.8 s
    # apart: each would have taken the 30 s handshake timeout.
    assert isinstance(error, Unreachable), error
    assert took < 10.0


# -- 3. liveness --------------------------------------------------------------------------


async def test_ping_with_a_timeout_raises_timeout_and_the_session_goes_on(
    make_node: NodeFactory,
) -> None:
    a = await make_node()
    b = await make_node()
    async with UdpRelay(("::1", b.port)) as relay:
        ab, _ = await asyncio.wait_for(
            asyncio.gather(a.connect(b.peer_id, relay.addr), b.accept()), 20
        )
        assert await ab.ping(timeout=10) > 0
        relay.blackhole = True
        took, error = await elapsed(ab.ping(timeout=0.5))
        assert isinstance(error, Timeout) and isinstance(error, TimeoutError), error
        # Without the timeout it waited for the 30 s idle timeout.
        assert 0.4 < took < 3.0
        relay.blackhole = False
        assert await ab.ping(timeout=10) > 0


async def test_a_killed_peer_is_timed_out_within_the_liveness_period(
    make_node: NodeFactory, spawn_peer: SpawnPeer
) -> None:
    peer = await spawn_peer()
    node = await make_node()  # idle timeout 30 s
    session = await node.connect(peer.peer_id, peer.addr)
    session.set_liveness(1.0)
    assert session.liveness == 1.0
    assert await session.ping(timeout=10) > 0
    pending = asyncio.create_task(session.accept_stream())
    await peer.kill()
    took, error = await elapsed(pending)
    assert isinstance(error, ConnectionLost), error
    assert error.code == TIMED_OUT and not error.by_peer and "timed out" in error.reason
    assert took < 5.0  # the idle timeout would have taken 30 s
    # Later calls say the same.
    with pytest.raises(ConnectionLost) as later:
        await session.ping()
    assert later.value.code == TIMED_OUT
    code, _, by_peer = await session.wait_closed()
    assert code == TIMED_OUT and not by_peer


async def test_a_node_liveness_watches_the_sessions_it_accepts(
    make_node: NodeFactory, spawn_peer: SpawnPeer
) -> None:
    node = await make_node(liveness=1.0)
    peer = await spawn_peer(dial=[str(node.peer_id), loopback(node)])
    session = await asyncio.wait_for(node.accept(), 20)
    assert session.remote_peer_id == peer.peer_id and session.liveness == 1.0
    await peer.kill()
    took, error = await elapsed(session.accept_stream())
    assert isinstance(error, ConnectionLost) and error.code == TIMED_OUT, error
    assert took < 5.0


async def test_liveness_keeps_a_quiet_live_session(make_node: NodeFactory) -> None:
    """Nothing to send for many liveness periods (and the keep-alive far longer): the
    liveness PINGs keep the session up."""
    a = await make_node(keep_alive=20.0, liveness=1.0)
    b = await make_node(keep_alive=20.0)
    ab, ba = await connect_pair(a, b)
    await asyncio.sleep(4.0)
    assert await ab.ping(timeout=10) > 0
    assert await ba.ping(timeout=10) > 0
    ab.set_liveness(None)
    assert ab.liveness is None


async def test_the_idle_timeout_is_reported_as_timed_out(make_node: NodeFactory) -> None:
    a = await make_node(idle_timeout=1.0, keep_alive=0.3)
    b = await make_node()
    async with UdpRelay(("::1", b.port)) as relay:
        ab, _ = await asyncio.wait_for(
            asyncio.gather(a.connect(b.peer_id, relay.addr), b.accept()), 20
        )
        relay.blackhole = True
        with pytest.raises(ConnectionLost) as info:
            await asyncio.wait_for(ab.accept_stream(), 10)
        assert info.value.code == TIMED_OUT and not info.value.by_peer


async def test_bad_liveness_and_ping_timeouts_are_value_errors(make_node: NodeFactory) -> None:
    with pytest.raises(ValueError, match="liveness"):
        await make_node(liveness=0.0)
    with pytest.raises(ValueError, match="liveness"):
        await make_node(liveness=0.01)
    ab, _ = await connect_pair(await make_node(), await make_node())
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="liveness"):
            ab.set_liveness(bad)
        with pytest.raises(ValueError, match="timeout"):
            await ab.ping(timeout=bad)
    assert ab.liveness is None


# -- 4. 0-RTT does not prove liveness -------------------------------------------------------


async def _known_peer_gone_silent(a: Node, b: Node, relay: UdpRelay) -> None:
    """a holds b's resumption tickets (dialed through the relay), then b goes silent."""
    ours, theirs = await asyncio.wait_for(
        asyncio.gather(a.connect(b.peer_id, relay.addr), b.accept()), 20
    )
    await ours.close()
    await theirs.wait_closed()
    relay.blackhole = True


async def test_a_0rtt_session_to_a_silent_peer_fails_naming_it(make_node: NodeFactory) -> None:
    a = await make_node(handshake_timeout=1.0)
    b = await make_node()
    async with UdpRelay(("::1", b.port)) as relay:
        await _known_peer_gone_silent(a, b, relay)
        session = await asyncio.wait_for(a.connect(b.peer_id, relay.addr), 5)
        assert session.early_data == "pending"  # returned before anyone answered

        async def first_use() -> bytes:
            stream = await session.open_stream()
            await stream.write(b"hello?")
            return await stream.read()

        took, error = await elapsed(first_use())
        assert isinstance(error, Unreachable), error
        assert str(b.peer_id.short()) in str(error) and relay.addr in str(error)
        assert "did not answer" in str(error)
        assert took < 5.0


async def test_a_0rtt_session_to_a_closed_port_fails_at_once(make_node: NodeFactory) -> None:
    a = await make_node(handshake_timeout=30.0)
    b = await Node.bind(Identity.generate(), "[::1]:0")
    await connect_pair(a, b)
    addr = loopback(b)
    await b.close()  # its port is closed now: the kernel answers ICMP port unreachable
    session = await a.connect(b.peer_id, addr)
    assert session.early_data == "pending"
    took, error = await elapsed(session.wait_established())
    assert isinstance(error, Unreachable) and "port unreachable" in str(error), error
    assert took < 3.0


# -- 5. a node cannot dial itself -----------------------------------------------------------


async def test_dialing_this_nodes_own_peer_id_fails_at_once(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    node = await make_node(handshake_timeout=30.0)
    with pytest.raises(InvalidPeerId, match="own peer id"):
        await node.connect(node.peer_id, loopback(node))
    src = tmp_path / "src"
    write_random(src, 10_000)
    ticket = node.ticket(await node.add_path(src))
    took, error = await elapsed(node.fetch(ticket, tmp_path / "dest"))
    assert isinstance(error, InvalidPeerId), error
    assert took < 3.0
    assert not (tmp_path / "dest").exists()
