"""Streams and sessions that end honestly (issue 15): sticky resets, abandoned streams and
sessions, context managers, line reads with bounded buffering, codes, and when a stream
appears at the peer. Real nodes on loopback."""

from __future__ import annotations

import asyncio
import gc

import pytest
from i6p import Session, Stream
from i6p.errors import (
    ConnectionLost,
    I6PError,
    IncompleteRead,
    InvalidCode,
    StreamReset,
    StreamTooLong,
)

from .conftest import NodeFactory, connect_pair, loopback

#: The reset and close code of an abandoned stream or session (codes.rs ABANDONED).
ABANDONED = 9


async def accepted(session: Session) -> Stream:
    return await asyncio.wait_for(session.accept_stream(), 10)


async def test_a_reset_stream_keeps_raising_stream_reset(pair: tuple[Session, Session]) -> None:
    ours, theirs = pair
    stream = await ours.open_stream()
    await stream.write(b"part")
    incoming = await accepted(theirs)
    await stream.reset(77)
    for _ in range(3):
        with pytest.raises(StreamReset) as e:
            await asyncio.wait_for(incoming.read(), 10)
        assert e.value.code == 77
    with pytest.raises(StreamReset):
        await incoming.readexactly(1)
    with pytest.raises(StreamReset):
        await incoming.readline()
    with pytest.raises(StreamReset):
        async for _ in incoming:
            pass
    with pytest.raises(StreamReset):
        await incoming.read(-1)


async def test_bytes_buffered_before_a_reset_never_follow_it(
    pair: tuple[Session, Session],
) -> None:
    ours, theirs = pair
    stream = await ours.open_stream()
    await stream.write(b"part")
    incoming = await accepted(theirs)
    assert await asyncio.wait_for(incoming.readexactly(2), 10) == b"pa"  # "rt" stays buffered
    await stream.reset(77)
    await asyncio.sleep(0.5)
    with pytest.raises(StreamReset):
        await asyncio.wait_for(incoming.read(), 10)
    with pytest.raises(StreamReset):
        await incoming.readexactly(1)
    with pytest.raises(StreamReset):
        await incoming.read(1)


async def test_writes_after_the_peer_stopped_keep_raising(pair: tuple[Session, Session]) -> None:
    ours, theirs = pair
    stream = await ours.open_stream()
    incoming = await accepted(theirs)
    await incoming.stop(2**40)
    codes = []
    for _ in range(50):  # until the STOP_SENDING has arrived, then three more
        try:
            await stream.write(b"x" * 1000)
            await asyncio.sleep(0.05)
        except StreamReset as e:
            codes.append(e.code)
            if len(codes) == 3:
                break
    assert codes == [2**40] * 3
    with pytest.raises(StreamReset):
        await stream.finish()


async def test_a_dropped_stream_is_reset_not_finished(pair: tuple[Session, Session]) -> None:
    ours, theirs = pair
    stream = await ours.open_stream()
    await stream.write(b"half a reply")
    incoming = await accepted(theirs)
    del stream
    gc.collect()
    with pytest.raises(StreamReset) as e:
        await asyncio.wait_for(incoming.read(), 10)
    assert e.value.code == ABANDONED
    # The session itself stays open: `ours` still holds it.
    assert await ours.ping() > 0


async def test_a_stream_left_by_an_exception_is_reset(pair: tuple[Session, Session]) -> None:
    ours, theirs = pair

    async def crashing_handler() -> None:
        async with await theirs.accept_stream() as incoming:
            await incoming.readexactly(4)
            await incoming.write(b"partial re")
            raise RuntimeError("handler bug")

    task = asyncio.create_task(crashing_handler())
    stream = await ours.open_stream()
    await stream.write(b"ping")
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(task, 10)
    with pytest.raises(StreamReset) as e:
        await asyncio.wait_for(stream.read(), 10)
    assert e.value.code == ABANDONED


async def test_a_stream_left_normally_is_finished(pair: tuple[Session, Session]) -> None:
    ours, theirs = pair
    async with await ours.open_stream() as stream:
        await stream.write(b"whole reply")
    incoming = await accepted(theirs)
    assert await asyncio.wait_for(incoming.read(), 10) == b"whole reply"
    # Already finished inside the block: the exit does not finish it twice.
    async with await ours.open_stream() as stream:
        await stream.write(b"x")
        await stream.finish()
    assert await asyncio.wait_for((await accepted(theirs)).read(), 10) == b"x"


async def test_a_dropped_session_is_closed(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    ours, theirs = await connect_pair(a, b)
    # A stream keeps its session open after the session object is gone.
    stream = await ours.open_stream()
    del ours
    gc.collect()
    await stream.write(b"still here")
    await stream.finish()
    assert await asyncio.wait_for((await accepted(theirs)).read(), 10) == b"still here"
    del stream
    gc.collect()
    code, reason, by_peer = await asyncio.wait_for(theirs.wait_closed(), 10)
    assert (code, by_peer) == (ABANDONED, True) and "dropped" in reason


async def test_session_as_a_context_manager(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    ours, theirs = await connect_pair(a, b)
    async with ours:
        assert await ours.ping() > 0
    assert (await asyncio.wait_for(theirs.wait_closed(), 10))[:1] == (0,)
    with pytest.raises(ConnectionLost):
        await ours.open_stream()

    ours, theirs = await connect_pair(a, b)
    with pytest.raises(KeyError):
        async with ours:
            raise KeyError("oops")
    code, reason, by_peer = await asyncio.wait_for(theirs.wait_closed(), 10)
    assert code == ABANDONED and by_peer and "KeyError" in reason


async def test_async_for_over_a_node_yields_sessions_until_it_closes(
    make_node: NodeFactory,
) -> None:
    a, b = await make_node(), await make_node()
    seen: list[Session] = []

    async def serve() -> None:
        async for session in b:
            seen.append(session)

    task = asyncio.create_task(serve())
    first = await a.connect(b.peer_id, loopback(b))
    c = await make_node()
    second = await c.connect(b.peer_id, loopback(b))
    for _ in range(200):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.05)
    assert {s.remote_peer_id for s in seen} == {a.peer_id, c.peer_id}
    await b.close()
    await asyncio.wait_for(task, 10)  # ends quietly
    assert first and second


async def test_readline_and_readuntil_keep_what_follows(pair: tuple[Session, Session]) -> None:
    ours, theirs = pair
    stream = await ours.open_stream()
    await stream.write(b"one\ntwo\r")
    incoming = await accepted(theirs)
    assert await incoming.readline() == b"one\n"
    reading = asyncio.create_task(incoming.readuntil(b"\r\n"))
    await asyncio.sleep(0.2)  # the separator straddles two writes
    await stream.write(b"\nthree;four;rest of it")
    await stream.finish()
    assert await asyncio.wait_for(reading, 10) == b"two\r\n"
    assert await incoming.readuntil(b";") == b"three;"
    assert await incoming.readexactly(5) == b"four;"
    assert await incoming.readline() == b"rest of it"  # at the end, the unterminated line
    assert await incoming.readline() == b""


async def test_readuntil_past_its_limit_and_at_the_end(pair: tuple[Session, Session]) -> None:
    ours, theirs = pair
    stream = await ours.open_stream()
    await stream.write(b"a" * 100)
    incoming = await accepted(theirs)
    with pytest.raises(StreamTooLong) as e:
        await asyncio.wait_for(incoming.readline(limit=50), 10)
    assert e.value.limit == 50 and "separator" in str(e.value)
    await stream.write(b"\nshort")
    await stream.finish()
    # Nothing was lost: the long line is still there, then the rest.
    assert await incoming.readline(limit=1000) == b"a" * 100 + b"\n"
    with pytest.raises(IncompleteRead) as inc:
        await asyncio.wait_for(incoming.readuntil(b"END"), 10)
    assert inc.value.partial == b"short"
    assert await incoming.read() == b""
    with pytest.raises(ValueError):
        await incoming.readuntil(b"")


async def test_operations_on_a_closed_session_say_so(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    ours, _theirs = await connect_pair(a, b)
    stream = await ours.open_stream()
    await ours.close(20, "done")
    for op in (stream.write(b"y"), stream.finish(), stream.read(), ours.open_stream()):
        with pytest.raises(ConnectionLost) as e:
            await op
        assert e.value.code == 20 and "0-RTT" not in str(e.value)
    # The same on a session closed while its 0-RTT data was still pending.
    again = await a.connect(b.peer_id, loopback(b))
    assert again.resumed or again.early_data != "none"
    stream = await again.open_stream()
    await again.close()
    for op in (stream.write(b"y"), stream.read(), again.ping()):
        with pytest.raises(ConnectionLost) as e:
            await op
        assert "0-RTT" not in str(e.value)


@pytest.mark.parametrize("code", [1, 8, 9, 15, -1, 2**32, 2**64])
async def test_reserved_and_out_of_range_close_codes_are_refused(
    pair: tuple[Session, Session], code: int
) -> None:
    ours, _ = pair
    with pytest.raises(InvalidCode) as e:
        await ours.close(code)
    assert isinstance(e.value, ValueError) and isinstance(e.value, I6PError)
    assert await ours.ping() > 0  # nothing was closed


async def test_application_close_codes_reach_the_peer(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    ours, theirs = await connect_pair(a, b)
    await ours.close(2**32 - 1, "largest")
    code, reason, by_peer = await asyncio.wait_for(theirs.wait_closed(), 10)
    assert (code, reason, by_peer) == (2**32 - 1, "largest", True)


@pytest.mark.parametrize("code", [16, 2**32, 2**62 - 1])
async def test_the_full_quic_range_of_reset_codes(pair: tuple[Session, Session], code: int) -> None:
    ours, theirs = pair
    stream = await ours.open_stream()
    incoming = await accepted(theirs)
    await stream.reset(code)
    with pytest.raises(StreamReset) as e:
        await asyncio.wait_for(incoming.read(), 10)
    assert e.value.code == code


@pytest.mark.parametrize("code", [3, 9, 15, -5, 2**62, 2**70])
async def test_reserved_and_out_of_range_reset_and_stop_codes_are_refused(
    pair: tuple[Session, Session], code: int
) -> None:
    ours, _ = pair
    stream = await ours.open_stream()
    with pytest.raises(InvalidCode):
        await stream.reset(code)
    with pytest.raises(InvalidCode):
        await stream.stop(code)
    with pytest.raises(TypeError):
        await stream.reset("16")  # type: ignore[arg-type]


async def test_a_stream_appears_at_the_peer_when_opened(pair: tuple[Session, Session]) -> None:
    ours, theirs = pair
    stream = await ours.open_stream()
    incoming = await accepted(theirs)  # no byte written yet
    assert incoming.id == stream.id
