"""Symmetric sessions between real nodes on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from i6p import Session
from i6p.errors import ConnectionLost, NodeClosed, StreamError, StreamReset, StreamTooLong

from .conftest import NodeFactory, connect_pair, loopback, wait_until
from .udp_relay import UdpRelay


async def echo_once(session: Session) -> None:
    stream = await session.accept_stream()
    data = await stream.read()
    await stream.write(data)
    await stream.finish()


async def test_sessions_both_ways_with_capabilities(make_node: NodeFactory) -> None:
    a = await make_node(capabilities={"side": "a", "blobs": "1"})
    b = await make_node(capabilities={"side": "b"})
    ab, ba = await connect_pair(a, b)
    assert ab.remote_peer_id == b.peer_id and ba.remote_peer_id == a.peer_id
    # Every node coordinates and offers dial-back by default, and says so.
    assert ab.remote_capabilities == {"side": "b", "coordinate": "1", "dialback": "1"}
    assert ba.remote_capabilities == {"side": "a", "blobs": "1", "coordinate": "1", "dialback": "1"}
    assert ab.is_dialer and not ba.is_dialer
    assert ab.route == ba.route == "direct"
    assert ab.remote_addr == loopback(b)
    assert ba.remote_addr.startswith("[::1]:")
    assert any(addr.endswith(f":{b.port}") for addr in ab.remote_listen_addrs)
    # The other direction: b dials a. Both sessions carry what is under way; then one
    # session per pair: the one dialed by the larger PeerId closes once quiet (DUPLICATE).
    b2, a2 = await connect_pair(b, a)
    assert b2.remote_peer_id == a.peer_id and a2.remote_peer_id == b.peer_id
    assert a2.remote_capabilities == {"side": "b", "coordinate": "1", "dialback": "1"}
    for ours, theirs in [(ab, ba), (ba, ab), (b2, a2), (a2, b2)]:
        stream = await ours.open_stream()
        await stream.write(b"ping from " + str(ours.remote_peer_id).encode())
        await stream.finish()
        incoming = await theirs.accept_stream()
        assert await incoming.read() == b"ping from " + str(ours.remote_peer_id).encode()
    loser = b2 if str(a.peer_id) < str(b.peer_id) else ab
    code, _, _ = await asyncio.wait_for(loser.wait_closed(), timeout=10)
    assert code == 11


async def test_observed_address_arrives(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    await wait_until(lambda: bool(ab.observed_addr and ba.observed_addr), 5)
    assert ab.observed_addr == ba.remote_addr
    assert ba.observed_addr == ab.remote_addr


async def test_ping_and_stats(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    rtts = [await ab.ping() for _ in range(5)] + [await ba.ping()]
    assert all(0 < rtt < 1 for rtt in rtts)
    stats = ab.stats()
    assert stats["packets_sent"] > 0 and stats["bytes_received"] > 0
    assert 0 < stats["rtt"] < 1
    assert set(stats) == {
        "rtt",
        "cwnd",
        "bytes_sent",
        "bytes_received",
        "packets_sent",
        "packets_received",
        "packets_lost",
        "bytes_lost",
        "mtu",
        "black_holes",
    }


async def test_64_mib_through_one_stream_is_byte_exact(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    block = os.urandom(1 << 20)
    sent = hashlib.sha256()

    async def send() -> None:
        stream = await ab.open_stream()
        view = memoryview(bytearray(block))
        for i in range(64):
            # Vary the data per block and mix buffer types.
            view[:8] = i.to_bytes(8, "big")
            data: bytes | bytearray | memoryview = [bytes(view), bytearray(view), view][i % 3]
            sent.update(data)
            await stream.write(data)
        await stream.finish()

    async def receive() -> tuple[int, bytes]:
        stream = await ba.accept_stream()
        got, total = hashlib.sha256(), 0
        async for chunk in stream:
            got.update(chunk)
            total += len(chunk)
        return total, got.digest()

    _, (total, digest) = await asyncio.wait_for(asyncio.gather(send(), receive()), 120)
    assert total == 64 << 20
    assert digest == sent.digest()


async def test_500_concurrent_streams_echo(pair: tuple[Session, Session]) -> None:
    ab, ba = pair

    async def server() -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(500):
                stream = await ba.accept_stream()
                tg.create_task(echo(stream))

    async def echo(stream: object) -> None:
        from i6p import Stream

        assert isinstance(stream, Stream)
        await stream.write(await stream.read())
        await stream.finish()

    async def client(i: int) -> None:
        stream = await ab.open_stream()
        payload = f"stream {i} ".encode() * (1 + i % 50)
        await stream.write(payload)
        await stream.finish()
        assert await stream.read() == payload

    server_task = asyncio.create_task(server())
    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(500))), 120)
    await asyncio.wait_for(server_task, 30)


async def test_streams_that_ended_give_their_credit_back(pair: tuple[Session, Session]) -> None:
    """After 200 request/response streams (each answered after the request's end, so the
    answer's acknowledgement frees the stream last), the peer can still hold 1,024 streams
    open at once: quinn owes back up to 1/8 of its limit, which the node's limit covers."""
    ab, ba = pair
    for i in range(200):
        stream = await ab.open_stream()
        await stream.write(b"%d" % i)
        await stream.finish()
        served = await ba.accept_stream()
        await served.write(await served.read())
        await served.finish()
        assert await stream.read() == b"%d" % i
    held = []
    for _ in range(1024):
        stream = await asyncio.wait_for(ab.open_stream(), 5)
        await stream.write(b"x")
        held.append(stream)
    accepted = [await asyncio.wait_for(ba.accept_stream(), 5) for _ in range(1024)]
    assert [await s.readexactly(1) for s in accepted] == [b"x"] * 1024


async def test_readexactly_and_early_end(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    stream = await ab.open_stream()
    await stream.write(b"0123456789")
    await stream.finish()
    incoming = await ba.accept_stream()
    assert await incoming.readexactly(4) == b"0123"
    assert await incoming.read(3) == b"456"
    with pytest.raises(StreamError, match="3 of 5"):
        await incoming.readexactly(5)
    # Nothing is lost: the bytes that did arrive are still there.
    assert await incoming.read() == b"789"
    assert await incoming.read() == b""


async def test_read_limit_and_reset(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    stream = await ab.open_stream()
    await stream.write(b"x" * 1000)
    await stream.finish()
    incoming = await ba.accept_stream()
    with pytest.raises(StreamError, match="limit of 100"):
        await incoming.read(limit=100)
    stream2 = await ab.open_stream()
    await stream2.write(b"partial")
    incoming2 = await ba.accept_stream()
    assert await incoming2.read(7) == b"partial"
    await stream2.reset(77)
    with pytest.raises(StreamReset) as info:
        await incoming2.read()
    assert info.value.code == 77


async def test_read_to_the_end_is_bounded_by_default(pair: tuple[Session, Session]) -> None:
    """The peer decides how much a stream carries: read() stops at 16 MiB with a typed error
    that says how to take more, keeps what arrived, and a larger limit reads it all."""
    ab, ba = pair
    payload = os.urandom(20 << 20)

    async def send() -> None:
        stream = await ab.open_stream()
        await stream.write(payload)
        await stream.finish()

    sender = asyncio.create_task(send())
    incoming = await ba.accept_stream()
    with pytest.raises(StreamTooLong, match=r"limit=") as info:
        await asyncio.wait_for(incoming.read(), 60)
    assert info.value.limit == 16 << 20
    assert isinstance(info.value, StreamError)
    # Nothing was lost: a larger limit reads the whole stream.
    assert await asyncio.wait_for(incoming.read(-1, limit=32 << 20), 60) == payload
    await asyncio.wait_for(sender, 60)


async def test_close_reason_reaches_the_peer(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    pending = asyncio.create_task(ba.accept_stream())
    await ab.close(42, "finished for today")
    with pytest.raises(ConnectionLost) as info:
        await asyncio.wait_for(pending, 10)
    assert (info.value.code, info.value.reason, info.value.by_peer) == (
        42,
        "finished for today",
        True,
    )
    assert await ba.wait_closed() == (42, "finished for today", True)
    with pytest.raises(ConnectionLost) as local:
        await ab.open_stream()
    assert not local.value.by_peer and "finished for today" in local.value.reason
    with pytest.raises(ValueError, match="reserved"):
        await ab.close(3, "reserved code")


async def test_closing_a_node_ends_its_sessions(make_node: NodeFactory) -> None:
    a = await make_node()
    b = await make_node()
    ab, ba = await connect_pair(a, b)
    pending_remote = asyncio.create_task(ab.accept_stream())
    pending_local = asyncio.create_task(ba.accept_stream())
    pending_accept = asyncio.create_task(b.accept())
    await asyncio.sleep(0.05)
    await b.close()
    assert b.closed
    with pytest.raises(ConnectionLost) as remote:
        await asyncio.wait_for(pending_remote, 10)
    assert remote.value.by_peer and remote.value.reason == "node closed"
    with pytest.raises(ConnectionLost) as local:
        await asyncio.wait_for(pending_local, 10)
    assert not local.value.by_peer
    with pytest.raises(NodeClosed):
        await asyncio.wait_for(pending_accept, 10)
    with pytest.raises(NodeClosed):
        await b.connect(a.peer_id, loopback(a))


async def test_a_silent_peer_is_connection_lost(make_node: NodeFactory) -> None:
    a = await make_node(idle_timeout=1.0, keep_alive=0.3)
    b = await make_node()
    async with UdpRelay(("::1", b.port)) as relay:
        ab, _ = await asyncio.wait_for(
            asyncio.gather(a.connect(b.peer_id, relay.addr), b.accept()), 20
        )
        assert await ab.ping() > 0
        relay.blackhole = True  # the peer goes silent: no close frame, nothing at all
        with pytest.raises(ConnectionLost, match="idle timeout") as info:
            await asyncio.wait_for(ab.accept_stream(), 10)
        assert not info.value.by_peer


async def test_ipv4_peer_reaches_dual_stack_node(make_node: NodeFactory) -> None:
    a = await make_node()
    b = await make_node()
    ab, ba = await asyncio.wait_for(
        asyncio.gather(a.connect(b.peer_id, f"127.0.0.1:{b.port}"), b.accept()), 20
    )
    assert ab.remote_addr == f"127.0.0.1:{b.port}"
    assert ba.remote_addr.startswith("127.0.0.1:")
    v4 = await make_node(addr="127.0.0.1:0")
    cd, dc = await asyncio.wait_for(
        asyncio.gather(v4.connect(b.peer_id, f"127.0.0.1:{b.port}"), b.accept()), 20
    )
    assert await cd.ping() > 0
    assert dc.remote_peer_id == v4.peer_id


async def test_hostnames_resolve(make_node: NodeFactory) -> None:
    a = await make_node()
    b = await make_node()
    ab, _ = await asyncio.wait_for(
        asyncio.gather(a.connect(str(b.peer_id), f"localhost:{b.port}"), b.accept()), 20
    )
    assert ab.remote_peer_id == b.peer_id


async def test_many_streams_opened_at_once_with_more_data_than_the_window(
    pair: tuple[Session, Session],
) -> None:
    """64 streams opened together, each sending 2 MiB (more than the connection's receive
    window in all): the peer delivers streams in the order they were opened, so a stream's
    first byte must not wait behind later streams' data (it would, until the 10 s kind
    timeout dropped it, when the data of streams opened later filled the window first)."""
    ab, ba = pair
    body = os.urandom(2 << 20)

    async def send() -> None:
        stream = await ab.open_stream()
        await stream.write(body)
        await stream.finish()

    async def receive() -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(64):
                stream = await ba.accept_stream()
                tg.create_task(check(stream))

    async def check(stream: object) -> None:
        from i6p import Stream

        assert isinstance(stream, Stream)
        assert await stream.read(limit=4 << 20) == body

    await asyncio.wait_for(asyncio.gather(receive(), *(send() for _ in range(64))), 8)
