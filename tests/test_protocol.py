"""Conformance of the control protocol against a peer that writes raw bytes.

A raw session is authenticated by TLS like any other, but runs no HELLO and serves no control
stream: the test writes frames itself on the first stream, which the listener treats as the
control stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct

import pytest
from i6p import Node, Session, Stream
from i6p._core import testing
from i6p.errors import ConnectionLost, StreamReset

from .conftest import NodeFactory, connect_pair, loopback

HELLO, PEER_INFO, PING, PONG, CLOSE = 0x01, 0x02, 0x03, 0x04, 0x05
PROTOCOL_ERROR = 1


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BI", kind, len(payload)) + payload


async def read_frame(stream: Stream) -> tuple[int, bytes]:
    kind, length = struct.unpack(">BI", await stream.readexactly(5))
    return kind, await stream.readexactly(length)


async def raw_session(dialer: Node, listener: Node) -> Session:
    core = await testing.connect_raw(dialer._core, listener.peer_id, loopback(listener))
    return Session(core)


async def expect_protocol_error(stream: Stream, fragment: str) -> ConnectionLost:
    with pytest.raises(ConnectionLost) as info:
        await asyncio.wait_for(stream.read(), 15)
    assert info.value.code == PROTOCOL_ERROR, info.value
    assert info.value.by_peer
    assert fragment in info.value.reason, info.value.reason
    return info.value


async def still_serving(listener: Node, make_node: NodeFactory) -> None:
    other = await make_node()
    ours, _ = await connect_pair(other, listener)
    assert await ours.ping() > 0


async def handshake(raw: Session) -> Stream:
    """A complete, valid HELLO exchange done by hand."""
    control = await raw.open_stream()
    await control.write(testing.signed_hello(raw._core, [("raw", "yes")]))
    kind, _ = await read_frame(control)
    assert kind == HELLO
    kind, payload = await read_frame(control)
    assert kind == PEER_INFO and payload[0] in (4, 6)
    return control


async def test_a_valid_raw_hello_is_accepted(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    raw = await raw_session(a, b)
    await (
        await handshake(raw)
    ).finish()  # done with it: ended, not dropped (a dropped stream is reset)
    session = await asyncio.wait_for(b.accept(), 10)
    assert session.remote_peer_id == a.peer_id
    assert session.remote_capabilities == {"raw": "yes"}


async def test_hello_replayed_from_another_connection_is_rejected(
    make_node: NodeFactory,
) -> None:
    a, b = await make_node(), await make_node()
    recorded = testing.signed_hello((await raw_session(a, b))._core)
    replay = await raw_session(a, b)
    # A HELLO signed for this connection differs: only the channel binding changed. (Taken
    # before the listener closes the connection, after which no keys can be exported.)
    assert testing.signed_hello(replay._core) != recorded
    control = await replay.open_stream()
    await control.write(recorded)
    await expect_protocol_error(control, "bad signature on hello")
    await still_serving(b, make_node)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (struct.pack(">BI", HELLO, 1 << 31), "frame too large"),
        (struct.pack(">BI", HELLO, (1 << 20) + 1), "frame too large"),
        (struct.pack(">BI", HELLO, 100) + b"x" * 10, "truncated frame: 10 of 100"),
        (b"\x01\x00\x00", "truncated frame header"),
        (frame(PING, b"12345678"), "expected hello"),
        (frame(HELLO, b""), "truncated hello"),
        (frame(HELLO, os.urandom(200)), "bad signature on hello"),
    ],
    ids=["len-2^31", "len-1MiB+1", "truncated", "short-header", "ping-first", "empty", "forged"],
)
async def test_bad_first_frames_end_the_session(
    make_node: NodeFactory, data: bytes, fragment: str
) -> None:
    a, b = await make_node(), await make_node()
    raw = await raw_session(a, b)
    control = await raw.open_stream()
    await control.write(data)
    # The listener may close before acking the FIN, or stop reading the stream first.
    with contextlib.suppress(ConnectionLost, StreamReset):
        await control.finish()
    await expect_protocol_error(control, fragment)
    await still_serving(b, make_node)


async def test_random_bytes_on_the_control_stream(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    for seed in range(5):
        raw = await raw_session(a, b)
        control = await raw.open_stream()
        await control.write(os.urandom(1000 + 997 * seed))
        # The listener may stop reading the stream before its close arrives.
        with contextlib.suppress(ConnectionLost, StreamReset):
            await control.finish()
        await expect_protocol_error(control, "protocol error")
    await still_serving(b, make_node)


async def test_unknown_frames_are_skipped_and_ping_is_answered(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    raw = await raw_session(a, b)
    control = await handshake(raw)
    accepted = await asyncio.wait_for(b.accept(), 10)
    await control.write(frame(0x7F, b"from the future" * 100) + frame(0xEE, b""))
    await control.write(frame(PING, struct.pack(">Q", 12345)))
    kind, payload = await read_frame(control)
    while kind != PONG:  # the listener may still be sending frames of its own
        kind, payload = await read_frame(control)
    assert struct.unpack(">Q", payload) == (12345,)
    # A PING the other way arrives on our raw control stream.
    ping = asyncio.create_task(accepted.ping())
    kind, payload = await read_frame(control)
    assert kind == PING
    await control.write(frame(PONG, payload))
    assert await asyncio.wait_for(ping, 10) > 0


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (struct.pack(">BI", PING, 1 << 31), "frame too large"),
        (frame(PING, b"1234567"), "truncated ping"),
        (frame(PEER_INFO, b"\x09" + bytes(18)), "unknown address family"),
        (frame(CLOSE, b"\x00\x00\x00\x01\x00\x02\xc3\x28"), "not utf-8"),
        (frame(HELLO, b"again"), "unexpected second hello"),
    ],
    ids=["oversized", "short-ping", "bad-peer-info", "bad-close", "second-hello"],
)
async def test_bad_frames_after_hello_end_the_session(
    make_node: NodeFactory, data: bytes, fragment: str
) -> None:
    a, b = await make_node(), await make_node()
    raw = await raw_session(a, b)
    control = await handshake(raw)
    accepted = await asyncio.wait_for(b.accept(), 10)
    await control.write(data)
    with pytest.raises(ConnectionLost) as local:
        await asyncio.wait_for(accepted.accept_stream(), 10)
    assert local.value.code == PROTOCOL_ERROR and not local.value.by_peer
    assert fragment in local.value.reason
    with pytest.raises(ConnectionLost) as remote:
        while True:
            await asyncio.wait_for(read_frame(control), 10)
    assert remote.value.code == PROTOCOL_ERROR and fragment in remote.value.reason
    await still_serving(b, make_node)


async def test_close_frame_carries_code_and_reason(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    raw = await raw_session(a, b)
    control = await handshake(raw)
    accepted = await asyncio.wait_for(b.accept(), 10)
    reason = b"maintenance window"
    await control.write(frame(CLOSE, struct.pack(">IH", 99, len(reason)) + reason))
    with pytest.raises(ConnectionLost) as info:
        await asyncio.wait_for(accepted.accept_stream(), 10)
    assert (info.value.code, info.value.reason, info.value.by_peer) == (
        99,
        "maintenance window",
        True,
    )


async def test_hello_timeout_ends_a_silent_dialer(make_node: NodeFactory) -> None:
    a = await make_node()
    b = await make_node(handshake_timeout=0.5)
    raw = await raw_session(a, b)
    control = await raw.open_stream()
    await control.write(b"\x01")  # one byte of a header, then nothing
    with pytest.raises(ConnectionLost) as info:
        await asyncio.wait_for(control.read(), 10)
    assert info.value.code == 2  # handshake timeout
    await still_serving(b, make_node)
