"""Stream reads and writes at engine speed: readinto() into caller memory, reads that take
everything that has arrived, writes that complete without a hand-off when the stream has
room, and the same answers whether or not a call had to wait."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from i6p import Session
from i6p._core import testing
from i6p.errors import ConnectionLost, StreamError, StreamReset

from .conftest import NodeFactory, connect_pair


async def test_readinto_fills_bytearrays_and_memoryviews_byte_exact(
    pair: tuple[Session, Session],
) -> None:
    ab, ba = pair
    payload = os.urandom(3 << 20)

    async def send() -> None:
        stream = await ab.open_stream()
        view = memoryview(payload)
        for at in range(0, len(payload), 100_000):
            await stream.write(view[at : at + 100_000])
        await stream.finish()

    async def receive() -> bytes:
        stream = await ba.accept_stream()
        out = bytearray()
        whole = bytearray(65536)
        part = memoryview(bytearray(70_000))[1000:50_000]
        turn = 0
        while True:
            target = whole if turn % 2 else part
            n = await stream.readinto(target)
            if n == 0:
                return bytes(out)
            assert 0 < n <= len(target)
            out += target[:n]
            turn += 1

    _, got = await asyncio.wait_for(asyncio.gather(send(), receive()), 60)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


async def test_readinto_reads_what_arrived_and_keeps_the_rest(
    pair: tuple[Session, Session],
) -> None:
    ab, ba = pair
    stream = await ab.open_stream()
    await stream.write(b"0123456789")
    incoming = await ba.accept_stream()
    buffer = bytearray(b"." * 4)
    assert await incoming.readinto(buffer) == 4
    assert buffer == b"0123"
    # A buffer larger than what arrived takes what is there and leaves the rest untouched.
    big = bytearray(b"." * 16)
    assert await incoming.readinto(big) == 6
    assert big == b"456789" + b"." * 10
    # An empty buffer reads nothing, even with nothing buffered.
    assert await incoming.readinto(bytearray()) == 0
    # A read that has to wait completes once bytes come.
    waiting = asyncio.ensure_future(incoming.readinto(big))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await stream.write(b"abc")
    assert await asyncio.wait_for(waiting, 10) == 3
    assert big[:3] == b"abc"
    await stream.finish()
    # The end of the stream is 0, again and again; read() agrees.
    assert await incoming.readinto(big) == 0
    assert await incoming.readinto(big) == 0
    assert await incoming.read(5) == b""


async def test_readinto_and_read_share_one_buffer_in_order(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    stream = await ab.open_stream()
    await stream.write(b"line one\nrest of it")
    await stream.finish()
    incoming = await ba.accept_stream()
    assert await incoming.readline() == b"line one\n"
    buffer = bytearray(4)
    assert await incoming.readinto(buffer) == 4
    assert buffer == b"rest"
    assert await incoming.readexactly(3) == b" of"
    assert await incoming.read() == b" it"


async def test_readinto_refuses_buffers_it_cannot_fill(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    stream = await ab.open_stream()
    await stream.write(b"kept")
    incoming = await ba.accept_stream()
    cases: list[object] = [
        b"bytes are read-only",
        memoryview(b"so is a view of them"),
        memoryview(bytearray(16))[::2],
        "text",
        12,
        None,
    ]
    for wrong in cases:
        with pytest.raises(TypeError, match="writable, contiguous bytes-like"):
            await incoming.readinto(wrong)  # type: ignore[arg-type]
    # Nothing was taken off the stream by the refused calls.
    assert await incoming.read(4) == b"kept"


async def test_readinto_after_a_reset_or_a_closed_session_raises_typed_errors(
    make_node: NodeFactory,
) -> None:
    ab, ba = await connect_pair(await make_node(), await make_node())
    stream = await ab.open_stream()
    await stream.write(b"partial")
    incoming = await ba.accept_stream()
    buffer = bytearray(7)
    assert await incoming.readinto(buffer) == 7
    await stream.reset(77)
    for _ in range(2):  # sticky: every later read says the same
        with pytest.raises(StreamReset) as info:
            await asyncio.wait_for(incoming.readinto(buffer), 10)
        assert info.value.code == 77

    other = await ab.open_stream()
    await other.write(b"x")
    incoming = await ba.accept_stream()
    assert await incoming.readinto(buffer) == 1
    waiting = asyncio.ensure_future(incoming.readinto(buffer))
    await ab.close(42, "bye")
    with pytest.raises(ConnectionLost) as lost:
        await asyncio.wait_for(waiting, 10)
    assert lost.value.code == 42
    with pytest.raises(ConnectionLost):
        await incoming.readinto(buffer)


async def test_a_cancelled_readinto_loses_no_bytes(pair: tuple[Session, Session]) -> None:
    ab, ba = pair
    stream = await ab.open_stream()
    await stream.write(b"--")
    incoming = await ba.accept_stream()
    buffer = bytearray(64)
    assert await incoming.readinto(buffer) == 2
    delivered = bytearray()
    for i in range(40):
        waiting = asyncio.ensure_future(incoming.readinto(buffer))
        await asyncio.sleep(0)
        await stream.write(b"%02d" % i)
        await asyncio.sleep(0.0005 * (i % 4))
        waiting.cancel()
        try:
            n = await waiting
        except asyncio.CancelledError:
            continue
        delivered += buffer[:n]  # completed before the cancel landed: a good result
    await stream.finish()
    # What was not delivered is still readable, in order, nothing lost or doubled.
    delivered += await incoming.read()
    assert bytes(delivered) == b"".join(b"%02d" % i for i in range(40))


async def test_writes_take_memoryviews_and_stop_at_the_send_window(
    pair: tuple[Session, Session],
) -> None:
    """A writer whose peer does not read is held back by flow control: writes stop
    completing, they do not queue without bound."""
    ab, ba = pair
    stream = await ab.open_stream()
    block = memoryview(b"\x5a" * (1 << 20))
    written = 0

    async def write_forever() -> None:
        nonlocal written
        for _ in range(256):  # bounded: 256 MiB, far past any window
            await stream.write(block)
            written += len(block)

    writer = asyncio.ensure_future(write_forever())
    await asyncio.sleep(1.0)
    assert not writer.done()
    held = written
    # Queued at most the connection's send window (8 MiB at first, 64 MiB at the most by
    # default) and the peer's stream window: not the 256 MiB asked.
    assert held <= 64 << 20
    incoming = await ba.accept_stream()
    got = 0
    buffer = bytearray(1 << 20)
    while got < held + (4 << 20):
        got += await asyncio.wait_for(incoming.readinto(buffer), 10)
    assert written > held  # reading let the writer go on
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)


async def test_write_after_finish_or_a_stop_raises_typed_errors(
    pair: tuple[Session, Session],
) -> None:
    ab, ba = pair
    stream = await ab.open_stream()
    await stream.write(b"done")
    await stream.finish()
    with pytest.raises(StreamError):
        await stream.write(b"more")
    stopped = await ab.open_stream()
    await stopped.write(b"x")
    assert await (await ba.accept_stream()).read() == b"done"
    incoming = await ba.accept_stream()
    await incoming.stop(99)
    with pytest.raises(StreamReset) as info:
        for _ in range(100):  # the STOP_SENDING needs a round trip to arrive
            await stopped.write(b"y" * 1000)
            await asyncio.sleep(0.01)
    assert info.value.code == 99
    with pytest.raises(TypeError):
        await stopped.write("text")  # type: ignore[arg-type]


@pytest.mark.parametrize("fast", [True, False])
async def test_the_same_bytes_with_and_without_completing_at_once(
    pair: tuple[Session, Session], fast: bool
) -> None:
    ab, ba = pair
    payload = os.urandom(2 << 20)
    testing.set_stream_fast_path(fast)
    try:

        async def send() -> None:
            stream = await ab.open_stream()
            for at in range(0, len(payload), 300_000):
                await stream.write(payload[at : at + 300_000])
            await stream.finish()

        async def receive() -> bytes:
            stream = await ba.accept_stream()
            out = bytearray()
            buffer = bytearray(40_000)
            while chunk := await stream.read(50_000):
                out += chunk
                n = await stream.readinto(buffer)
                out += buffer[:n]
            return bytes(out)

        _, got = await asyncio.wait_for(asyncio.gather(send(), receive()), 60)
    finally:
        testing.set_stream_fast_path(True)
    assert got == payload


@pytest.mark.parametrize(("how", "fast"), [("readinto", True), ("readinto", False), ("read", True)])
async def test_reads_cancelled_again_and_again_mid_transfer_keep_every_byte_in_order(
    pair: tuple[Session, Session], how: str, fast: bool
) -> None:
    # Reads (into caller memory, or as bytes) are cancelled at every stage (before they run,
    # waiting in the engine, woken but not yet resumed): what a read did not return must stay
    # on the stream.
    ab, ba = pair
    payload = os.urandom(3 << 20)
    testing.set_stream_fast_path(fast)
    cancelled = 0
    try:

        async def send() -> None:
            stream = await ab.open_stream()
            for at in range(0, len(payload), 50_000):
                await stream.write(payload[at : at + 50_000])
                if at % 1_000_000 < 50_000:
                    await asyncio.sleep(0.001)  # gaps, so that reads must wait now and then
            await stream.finish()

        async def receive() -> bytes:
            nonlocal cancelled
            stream = await ba.accept_stream()
            out = bytearray()
            buffer = bytearray(100_000)
            turn = 0

            async def one_read(target: memoryview) -> bytes:
                if how == "read":
                    return await stream.read(len(target))
                n = await stream.readinto(target)
                return bytes(target[:n])

            while True:
                turn += 1
                target = memoryview(buffer)[turn % 7 : 30_000 + turn % 50_000]
                waiting = asyncio.ensure_future(one_read(target))
                for _ in range(turn % 4):
                    await asyncio.sleep(0)
                if turn % 4 != 3:  # every fourth read may finish, so the transfer goes on
                    waiting.cancel()
                try:
                    data = await waiting
                except asyncio.CancelledError:
                    cancelled += 1
                    continue
                if not data:
                    return bytes(out)
                out += data

        _, got = await asyncio.wait_for(asyncio.gather(send(), receive()), 90)
    finally:
        testing.set_stream_fast_path(True)
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert cancelled > 20, cancelled  # the cancels did land, the test exercised them


async def test_readinto_fills_only_the_viewed_part_for_one_byte_and_large_buffers(
    pair: tuple[Session, Session],
) -> None:
    ab, ba = pair
    stream = await ab.open_stream()
    await stream.write(memoryview(b"xABCDEFGH")[1:])
    await stream.write(bytearray(b"IJ"))
    incoming = await ba.accept_stream()
    one = bytearray(b"?")
    assert await incoming.readinto(one) == 1
    assert one == b"A"
    # A slice in the middle of a larger buffer: only it changes.
    backing = bytearray(b"." * 10)
    assert await incoming.readinto(memoryview(backing)[3:6]) == 3
    assert backing == b"...BCD...."
    # A two-dimensional view is filled in C order.
    square = memoryview(bytearray(4)).cast("B", (2, 2))
    assert await incoming.readinto(square) == 4
    assert square.tobytes() == b"EFGH"
    # A buffer far larger than what arrived takes it and leaves the rest untouched.
    large = bytearray(b"." * (8 << 20))
    got = 0
    while got < 2:
        got += await incoming.readinto(memoryview(large)[got:])
    assert large[:2] == b"IJ"
    assert large.count(b".") == len(large) - 2
    await stream.finish()
    assert await incoming.readinto(large) == 0
    # An empty buffer at the end, or an empty slice, reads nothing and raises nothing.
    assert await incoming.readinto(memoryview(large)[5:5]) == 0
