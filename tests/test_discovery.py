"""Reaching a peer by its identity alone (issue 18): the public key's text form, the address
book (given addresses, learned from verified sessions, kept in the state directory) and
``connect`` with no address. Real nodes on ::1 and 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from i6p import Identity, Node, PeerId, PublicKey
from i6p.errors import InvalidKey, PeerIdMismatch, PeerNotFound, Unreachable

from .conftest import NodeFactory


def test_a_public_key_has_a_short_text_form_that_gives_its_peer_id() -> None:
    identity = Identity.generate()
    key = identity.key
    text = str(key)
    assert len(text) == 52 and text == text.lower()
    assert PublicKey.parse(text.upper()) == key
    assert PublicKey.from_bytes(identity.public_key) == key
    assert bytes(key) == identity.public_key
    assert key.peer_id == identity.peer_id == PeerId.from_public_key(identity.public_key)
    assert repr(key) == f"PublicKey('{text}')"
    for bad in (text[:-1], text + "y", "l" + text[1:], text[:-1] + "b", ""):
        with pytest.raises(InvalidKey):
            PublicKey.parse(bad)
    with pytest.raises(InvalidKey):
        PublicKey.from_bytes(b"\x01" * 31)


async def test_connect_without_an_address_uses_the_book_and_says_when_it_knows_none(
    make_node: NodeFactory,
) -> None:
    a, b = await make_node(), await make_node(addr="[::1]:0")
    with pytest.raises(PeerNotFound) as caught:
        await a.connect(b.peer_id)
    assert isinstance(caught.value, Unreachable) and b.peer_id.short() in str(caught.value)
    # Given addresses are kept, undialable ones are not; a stale one does not stop the dial.
    kept = a.add_addrs(b.peer_id, ["[::]:5", "[ff02::1]:5", "[::1]:9", f"[::1]:{b.port}"])
    assert kept == 2
    assert a.known_addrs(b.peer_id) == ["[::1]:9", f"[::1]:{b.port}"]
    accepting = asyncio.ensure_future(b.accept())
    session = await asyncio.wait_for(a.connect(str(b.identity.key)), 20)
    assert session.remote_peer_id == b.peer_id
    await asyncio.wait_for(accepting, 10)
    assert a.forget_addrs(b.peer_id) and a.known_addrs(b.peer_id) == []
    assert not a.forget_addrs(b.peer_id)


async def test_a_verified_session_teaches_both_books_where_the_peer_is(
    make_node: NodeFactory,
) -> None:
    a, b = await make_node(), await make_node(addr="[::]:0")
    ours, theirs = await asyncio.wait_for(
        asyncio.gather(a.connect(b.peer_id, f"127.0.0.1:{b.port}"), b.accept()), 20
    )
    await ours.wait_established()
    await theirs.wait_established()
    assert f"127.0.0.1:{b.port}" in a.known_addrs(b.peer_id)
    assert b.known_addrs(a.peer_id), "the listener learned nothing of its dialer"
    await ours.close()
    # A fresh session by key alone, from what the first one taught.
    accepting = asyncio.ensure_future(b.accept())
    again = await asyncio.wait_for(a.connect(b.identity.key), 20)
    assert again.remote_peer_id == b.peer_id
    await asyncio.wait_for(accepting, 10)


async def test_an_address_of_another_node_fails_the_identity_check(
    make_node: NodeFactory,
) -> None:
    a, b, c = await make_node(), await make_node(addr="[::1]:0"), await make_node(addr="[::1]:0")
    a.add_addrs(b.peer_id, f"[::1]:{c.port}")  # a lie: c lives there
    with pytest.raises((PeerIdMismatch, Unreachable)):
        await asyncio.wait_for(a.connect(b.peer_id), 20)


async def test_the_book_survives_a_restart_in_the_state_dir_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    identity, peer = Identity.generate(), Identity.generate().peer_id
    node = await Node.bind(identity, "[::1]:0", state_dir=state)
    try:
        node.add_addrs(peer, ["[2001:db8::1]:4433", "192.0.2.1:4433"])
    finally:
        await node.close()
    book = state / "address-book"
    assert stat.S_IMODE(os.stat(book).st_mode) == 0o600
    again = await Node.bind(identity, "[::1]:0", state_dir=state)
    try:
        assert sorted(again.known_addrs(peer)) == ["192.0.2.1:4433", "[2001:db8::1]:4433"]
    finally:
        await again.close()
