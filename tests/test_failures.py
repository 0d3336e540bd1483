"""Failures a new user meets first: they come at once, typed, inside the i6p error hierarchy
(issue 15, first part: parse errors, closed nodes, dials the socket cannot send)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from i6p import Identity, PeerId, Ticket
from i6p.errors import (
    I6PError,
    InvalidAddress,
    InvalidHash,
    InvalidPeerId,
    InvalidTicket,
    NodeClosed,
)

from .conftest import NodeFactory
from .test_transfer import write_random


@pytest.mark.parametrize(
    ("parse", "error"),
    [
        (lambda: PeerId.parse("zz"), InvalidPeerId),
        (lambda: PeerId.parse("ab" * 31), InvalidPeerId),
        (lambda: PeerId.from_bytes(b"short"), InvalidPeerId),
        (lambda: PeerId.from_public_key(b"\x01" * 31), InvalidPeerId),
        (lambda: Ticket.parse("i6p-not-a-ticket"), InvalidTicket),
        (lambda: Ticket.parse(""), InvalidTicket),
        (lambda: Ticket(PeerId.parse("ab" * 32), ["[::1]:1"], "xyz", 1), InvalidHash),
        (lambda: Ticket(PeerId.parse("ab" * 32), ["no address"], "ab" * 32, 1), InvalidAddress),
    ],
)
def test_parse_errors_are_i6p_errors_and_value_errors(parse: object, error: type) -> None:
    with pytest.raises(error) as caught:
        parse()  # type: ignore[operator]
    # One `except` catches every bad input the package reports, and so does ValueError.
    assert isinstance(caught.value, I6PError) and isinstance(caught.value, ValueError)
    assert str(caught.value)


async def test_a_closed_node_hands_out_and_serves_nothing(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    node = await make_node()
    src = tmp_path / "blob"
    write_random(src, 1000)
    blob = await node.add_path(src)
    assert node.ticket(blob).hash == blob.hash
    await node.close()
    with pytest.raises(NodeClosed):
        await node.add_path(src)
    with pytest.raises(NodeClosed):
        node.ticket(blob)  # a ticket to a dead node would name a dead address
    with pytest.raises(NodeClosed):
        node.remove(blob)
    with pytest.raises(NodeClosed):
        node.allow_peers(None)
    with pytest.raises(NodeClosed):
        await node.connect(Identity.generate().peer_id, "[::1]:9")


async def test_a_dial_the_socket_cannot_send_fails_at_once(make_node: NodeFactory) -> None:
    v6 = await make_node(addr="[::1]:0")
    target = await make_node(addr="127.0.0.1:0")
    start = time.monotonic()
    with pytest.raises(InvalidAddress, match="IPv4 but this node is bound to IPv6"):
        await v6.connect(target.peer_id, f"127.0.0.1:{target.port}")
    with pytest.raises(InvalidAddress, match="bound to loopback"):
        await v6.connect(target.peer_id, "[2001:db8::1]:9")
    with pytest.raises(InvalidAddress, match="IPv6 but this node is bound to IPv4"):
        await target.connect(v6.peer_id, f"[::1]:{v6.port}")
    # Each used to wait out the 10 s handshake timeout.
    assert time.monotonic() - start < 1.0
