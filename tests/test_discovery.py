"""Reaching a peer by its identity alone (issue 18): the public key's text form, the address
book (given addresses, learned from verified sessions, kept in the state directory) and
``connect`` with no address. Real nodes on ::1 and 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import blake3
import pytest
from i6p import Identity, Node, PeerId, PublicKey, Ticket
from i6p.errors import InvalidKey, InvalidTicket, PeerIdMismatch, PeerNotFound, Unreachable

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


def _sealed_ticket(raw: bytes) -> str:
    """The text form of ticket bytes: checksum (BLAKE3's first 4 bytes), base32, prefix."""
    body = raw + blake3.blake3(raw).digest()[:4]
    return "i6p" + base64.b32encode(body).decode().rstrip("=").lower()


async def test_a_ticket_by_key_is_short_and_fetches_through_discovery(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 << 20))
    provider, fetcher = await make_node(addr="[::1]:0"), await make_node()
    blob = await provider.add_path(src)
    ticket = provider.ticket(blob, by_key=True)
    text = str(ticket)
    assert len(text) < 130 and ticket.addrs == [] and ticket.key == provider.identity.key
    assert Ticket.parse(text) == ticket and Ticket.parse(text).peer_id == provider.peer_id
    assert Ticket.by_key(provider.identity.key, blob.hash, blob.size) == ticket
    # Nothing knows where the provider is: said at once, by name.
    with pytest.raises(PeerNotFound):
        await asyncio.wait_for(fetcher.fetch(text, tmp_path / "none"), 20)
    assert not (tmp_path / "none").exists()
    fetcher.add_addrs(provider.peer_id, f"[::1]:{provider.port}")
    result = await asyncio.wait_for(fetcher.fetch(text, tmp_path / "dest"), 60)
    assert result.hash == blob.hash and (tmp_path / "dest").read_bytes() == src.read_bytes()
    # The time to the first verified byte counts from the fetch's start, discovery included.
    assert result.first_byte_s is not None and 0 < result.first_byte_s <= result.duration_s


async def test_a_fetch_by_key_is_a_transfer_the_providers_application_never_sees(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """A key ticket's provider is dialed for the transfer, as for a ticket with addresses: its
    accept() gets nothing, so an application that drops what it accepts cannot cut the fetch
    (it did, with code 9, when discovery dialed an ordinary session)."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1 << 20))
    provider, fetcher = await make_node(addr="[::1]:0"), await make_node()
    accepted: list[object] = []

    async def accept() -> None:
        while True:
            accepted.append(await provider.accept())

    task = asyncio.ensure_future(accept())
    try:
        blob = await provider.add_path(src)
        fetcher.add_addrs(provider.peer_id, f"[::1]:{provider.port}")
        ticket = provider.ticket(blob, by_key=True)
        result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest"), 60)
        assert result.hash == blob.hash and (tmp_path / "dest").read_bytes() == src.read_bytes()
        await asyncio.sleep(0.2)
        assert accepted == []
    finally:
        task.cancel()


def test_a_ticket_by_key_with_a_key_that_is_no_curve_point_is_refused() -> None:
    for y in range(2, 64):
        raw_key = bytes([y]) + bytes(31)
        try:
            PublicKey.from_bytes(raw_key)
        except InvalidKey:
            break
    else:
        raise AssertionError("no invalid point among the first y values")
    good = Ticket.by_key(Identity.generate().key, "ab" * 32, 5)
    raw = bytes([1, 5]) + raw_key + bytes.fromhex("ab" * 32) + (5).to_bytes(8, "big")
    assert Ticket.parse(_sealed_ticket(bytes([1, 5]) + bytes(good.key) + raw[34:])) == good
    with pytest.raises(InvalidTicket, match="not a valid Ed25519 public key"):
        Ticket.parse(_sealed_ticket(raw))
    with pytest.raises(InvalidTicket):
        Ticket.parse(_sealed_ticket(raw[:-1]))


async def test_providers_by_key_join_in_one_ticket_and_are_fetched_from(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(4 << 20))
    providers = [await make_node(addr="[::1]:0") for _ in range(2)]
    fetcher = await make_node()
    tickets = [p.ticket(await p.add_path(src), by_key=True) for p in providers]
    joined = Ticket.join(tickets)
    assert Ticket.parse_all(joined) == tickets
    with pytest.raises(InvalidTicket, match="cannot share a ticket"):
        Ticket.join([tickets[0], Ticket(providers[1].peer_id, ["[::1]:9"], tickets[0].hash, 1)])
    for p in providers:
        fetcher.add_addrs(p.peer_id, f"[::1]:{p.port}")
    result = await asyncio.wait_for(fetcher.fetch(joined, tmp_path / "dest"), 60)
    assert (tmp_path / "dest").read_bytes() == src.read_bytes()
    assert set(result.providers) <= {p.peer_id for p in providers} and result.providers
