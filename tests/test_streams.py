"""asyncio streams over I6P (issue 20): an unmodified asyncio handler, named services with
their own allow-lists, half-close, asyncio's errors, many connections on one session."""

from __future__ import annotations

import asyncio
import os
import random

import pytest
from i6p import Node, open_connection, start_server
from i6p.errors import InvalidArgument, StreamReset
from i6p.streams import SERVICE_REFUSED

from .conftest import NodeFactory, wait_until


async def echo_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An echo handler written for asyncio.start_server, unmodified."""
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def echo_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads to the end (the client's write_eof), then answers with what it read."""
    data = await reader.read()
    writer.write(len(data).to_bytes(8, "big") + data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_an_unmodified_asyncio_handler_serves_a_peer(make_node: NodeFactory) -> None:
    # The same handler first on asyncio's own TCP server: it is asyncio code as it stands.
    tcp = await asyncio.start_server(echo_lines, "::1", 0)
    async with tcp:
        port = tcp.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("::1", port)
        w.write(b"tcp\n")
        assert await r.readline() == b"TCP\n"
        w.close()
    server_node, client_node = await make_node(addr="[::1]:0"), await make_node()
    server = await start_server(echo_lines, server_node, "echo")
    async with server:
        reader, writer = await open_connection(
            client_node, server_node.peer_id, "echo", f"[::1]:{server_node.port}"
        )
        for line in (b"hello\n", b"over i6p\n"):
            writer.write(line)
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 10) == line.upper()
        assert writer.get_extra_info("peer_id") == server_node.peer_id
        assert writer.get_extra_info("peername") == ("::1", server_node.port)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert reader.at_eof()
        await writer.wait_closed()


async def test_services_are_named_and_each_has_its_allow_list(make_node: NodeFactory) -> None:
    server_node = await make_node(addr="[::1]:0")
    friend, stranger = await make_node(), await make_node()
    open_to_all = await start_server(echo_lines, server_node, "public")
    friends_only = await start_server(echo_lines, server_node, "private", allow=[friend.peer_id])
    with pytest.raises(InvalidArgument, match="already served"):
        await start_server(echo_lines, server_node, "public")
    with pytest.raises(InvalidArgument, match="service name"):
        await start_server(echo_lines, server_node, "no spaces")
    addr = f"[::1]:{server_node.port}"

    async def ask(node: Node, service: str) -> bytes:
        reader, writer = await open_connection(node, server_node.peer_id, service, addr)
        writer.write(b"ping\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 10)

    assert await ask(friend, "private") == b"PING\n"
    assert await ask(stranger, "public") == b"PING\n"
    for node, service in ((stranger, "private"), (friend, "nothing-here")):
        with pytest.raises(ConnectionRefusedError):
            await ask(node, service)
    friends_only.close()
    await friends_only.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await ask(friend, "private")
    assert await ask(friend, "public") == b"PING\n"
    open_to_all.close()


async def test_half_close_and_asyncio_errors(make_node: NodeFactory) -> None:
    server_node, client_node = await make_node(addr="[::1]:0"), await make_node()
    await start_server(echo_all, server_node, "all")
    addr = f"[::1]:{server_node.port}"
    reader, writer = await open_connection(client_node, server_node.peer_id, "all", addr)
    body = os.urandom(300_000)
    writer.writelines([body[:1000], body[1000:]])
    writer.write_eof()  # half-close: the server reads to the end, then answers
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(8), 10), "big")
    assert size == len(body) and await reader.readexactly(size) == body
    with pytest.raises(asyncio.IncompleteReadError) as short:
        await reader.readexactly(1)
    assert short.value.partial == b"" and reader.at_eof()
    # A line past the reader's limit: asyncio's LimitOverrunError, then ValueError for readline.
    reader, writer = await open_connection(client_node, server_node.peer_id, "all", addr, limit=64)
    writer.write(b"x" * 200)
    writer.write_eof()
    with pytest.raises(asyncio.LimitOverrunError):
        await asyncio.wait_for(reader.readuntil(b"\n"), 10)
    with pytest.raises(ValueError):
        await reader.readline()


async def test_many_connections_share_one_session_and_every_byte_arrives(
    make_node: NodeFactory,
) -> None:
    server_node, client_node = await make_node(addr="[::1]:0"), await make_node()
    await start_server(echo_all, server_node, "all")
    addr = f"[::1]:{server_node.port}"
    rng = random.Random(20)

    async def one(size: int) -> object:
        body = rng.randbytes(size)
        reader, writer = await open_connection(client_node, server_node.peer_id, "all", addr)
        writer.write(body)
        await writer.drain()
        writer.write_eof()
        got = await reader.read()
        assert got == size.to_bytes(8, "big") + body
        return writer.get_extra_info("session")

    sessions = await asyncio.wait_for(
        asyncio.gather(*(one(rng.randrange(0, 200_000)) for _ in range(100))), 120
    )
    assert len({id(s) for s in sessions}) == 1  # one session, a stream per connection


async def test_a_stream_without_a_service_header_is_refused(make_node: NodeFactory) -> None:
    server_node = await make_node(addr="[::1]:0")
    await start_server(echo_lines, server_node, "echo")
    client = await make_node()
    session = await client.connect(server_node.peer_id, f"[::1]:{server_node.port}")
    stream = await session.open_stream()
    await stream.write(b"GET / HTTP/1.0\r\n\r\n")
    with pytest.raises(StreamReset) as refused:
        await asyncio.wait_for(stream.read(), 20)
    assert refused.value.code == SERVICE_REFUSED


async def test_either_side_connects_over_the_one_session(make_node: NodeFactory) -> None:
    """B dials A's service; A then reaches B's service over that same session (no second
    handshake), and B's service is offered the streams of the session B dialed."""
    a, b = await make_node(), await make_node()
    seen: list[object] = []

    async def note_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("session"))
        await echo_lines(reader, writer)

    async with (
        await start_server(note_session, a, "on-a"),
        await start_server(echo_lines, b, "on-b"),
    ):
        reader, writer = await open_connection(b, a.peer_id, "on-a", f"[::1]:{a.port}")
        writer.write(b"from b\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"FROM B\n"
        writer.close()
        # No address for B: only the session B dialed can carry this.
        back_reader, back_writer = await asyncio.wait_for(open_connection(a, b.peer_id, "on-b"), 10)
        back_writer.write(b"from a\n")
        assert await asyncio.wait_for(back_reader.readline(), 10) == b"FROM A\n"
        assert back_writer.get_extra_info("session") is seen[0]
        back_writer.close()


async def test_a_peer_that_closes_after_the_last_read_is_not_an_error(
    make_node: NodeFactory,
) -> None:
    """As with TCP, a client that ends its side and closes its node at once does not make the
    server's ``wait_closed`` raise (the server's end may never be acknowledged); a node that
    closes under its own writer still does."""
    a, b = await make_node(), await make_node()
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    got_the_end = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        got_the_end.set()  # the client's node closes now: our end may go unacknowledged
        writer.close()
        try:
            await writer.wait_closed()
            outcome.set_result(None)
        except Exception as e:
            outcome.set_result(e)

    async with await start_server(answer, a, "answer"):
        _, writer = await open_connection(b, a.peer_id, "answer", f"[::1]:{a.port}")
        writer.write(b"question")
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 10)
        await asyncio.wait_for(got_the_end.wait(), 10)
        await b.close()
        assert await asyncio.wait_for(outcome, 10) is None

    c = await make_node()
    _, writer = await open_connection(c, a.peer_id, "none", f"[::1]:{a.port}")
    writer.write(os.urandom(4 << 20))
    writer.close()
    await c.close()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(writer.wait_closed(), 10)


async def test_a_service_at_max_connections_refuses_more_as_busy(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"in\n")
        await release.wait()
        writer.close()

    addr = f"[::1]:{a.port}"
    async with await start_server(hold, a, "held", max_connections=2) as server:
        held = [await open_connection(b, a.peer_id, "held", addr) for _ in range(2)]
        for reader, _ in held:
            assert await asyncio.wait_for(reader.readline(), 10) == b"in\n"
        reader, _ = await open_connection(b, a.peer_id, "held", addr)
        with pytest.raises(ConnectionRefusedError, match="connection limit"):
            await asyncio.wait_for(reader.readline(), 10)
        assert server.connections == 2
        release.set()
        for reader, _ in held:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        assert await wait_until(lambda: server.connections == 0, 10)
        release.clear()
        reader, _ = await open_connection(b, a.peer_id, "held", addr)
        assert await asyncio.wait_for(reader.readline(), 10) == b"in\n"
        release.set()
    with pytest.raises(InvalidArgument):
        await start_server(hold, a, "none", max_connections=0)


async def test_a_closed_node_with_services_is_let_go() -> None:
    import gc
    import weakref

    from i6p import Identity

    node = await Node.bind(Identity.generate(), "[::1]:0")
    await start_server(echo_lines, node, "svc")
    gone = weakref.ref(node)
    await node.close()
    await asyncio.sleep(0.2)  # the router's task sees the close
    del node
    gc.collect()
    assert gone() is None
