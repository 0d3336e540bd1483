"""Coordinated connections through a mutual peer, on ::1 with real nodes: A knows only the
coordinator C, which has sessions with A and B; ``connect(B, via=C)`` reaches B (TLS verifies
its PeerId), refusals are typed, and simultaneous dials end in one session per pair."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from i6p import Contact, Limits, Node, Session, Ticket
from i6p.errors import CoordinationRefused, I6PError, InvalidArgument, PeerNotFound

from .conftest import NodeFactory, connect_pair, loopback

DUPLICATE = 11


# Sessions the tests hold: an application that drops its last handle on a session closes it.
HELD: list[Session] = []


async def triangle(make_node: NodeFactory, **c_options: object) -> tuple[Node, Node, Node, Session]:
    """A, B and C with sessions A-C and B-C; returns A's session with C. On loopback every
    node is reachable: A and B ask for no dial-backs, so neither learns it is public and the
    coordinated path punches (instead of dialing directly, as it would with them)."""
    a, b = await make_node(dial_back=False), await make_node(dial_back=False)
    c = await make_node(**c_options)
    ac, ca = await connect_pair(a, c)
    HELD.extend([ca, *await connect_pair(b, c)])
    return a, b, c, ac


async def test_a_peer_known_only_through_a_coordinator_serves_a_verified_fetch(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    a, b, _c, ac = await triangle(make_node)
    ab, ba = await asyncio.wait_for(
        asyncio.gather(a.connect(b.peer_id, via=ac), b.accept()), timeout=20
    )
    assert ab.remote_peer_id == b.peer_id and ba.remote_peer_id == a.peer_id
    # Both ends label the session as the dialer of the attempt that made it says (the
    # target once labelled it "direct" when it took the dial in after the asker was done).
    assert ab.route == ba.route == "punched"
    assert ac.remote_capabilities.get("coordinate") == "1"
    # A fetch from B rides on the punched session (the live session with the provider).
    data = os.urandom(3 << 20)
    (tmp_path / "src").write_bytes(data)
    ticket = b.ticket(await b.add_path(tmp_path / "src"))
    before = ab.stats()["bytes_received"]
    result = await asyncio.wait_for(a.fetch(ticket, tmp_path / "dest"), timeout=60)
    assert (tmp_path / "dest").read_bytes() == data and result.size == len(data)
    assert ab.stats()["bytes_received"] - before >= len(data)


@pytest.mark.parametrize("addrs", [["[::1]:1"], []])
async def test_a_fetch_reaches_the_provider_through_its_tickets_rendezvous_node(
    make_node: NodeFactory, tmp_path: Path, addrs: list[str]
) -> None:
    """`node.fetch` alone, with no session made first: the ticket's address does not answer
    (or there is none), so the engine goes through the rendezvous node the ticket names."""
    a, b, c, _ = await triangle(make_node)
    data = os.urandom(1 << 20)
    (tmp_path / "src").write_bytes(data)
    served = b.ticket(await b.add_path(tmp_path / "src"))
    rendezvous = Contact(c.peer_id, [loopback(c)])
    ticket = Ticket(b.peer_id, addrs, served.hash, served.size, rendezvous=[rendezvous])
    result = await asyncio.wait_for(a.fetch(ticket, tmp_path / "dest"), timeout=60)
    assert (tmp_path / "dest").read_bytes() == data and result.size == len(data)
    # The introduction asked for a session for transfers: the provider's application never
    # gets it from accept(), whichever side's dial made it.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(b.accept(), timeout=0.5)
    # Without the rendezvous node the same ticket reaches nobody.
    alone = Ticket(b.peer_id, addrs, served.hash, served.size)
    with pytest.raises(I6PError):
        await asyncio.wait_for(
            (await make_node()).fetch(alone, tmp_path / "again", reconnects=0), timeout=60
        )


async def test_the_coordinator_can_be_named_by_peer_id(make_node: NodeFactory) -> None:
    a, b, c, _ = await triangle(make_node)
    ab, _ = await asyncio.wait_for(
        asyncio.gather(a.connect(str(b.peer_id), via=str(c.peer_id)), b.accept()), timeout=20
    )
    assert ab.remote_peer_id == b.peer_id and ab.route == "punched"
    stranger = await make_node()
    with pytest.raises(InvalidArgument):
        await a.connect(b.peer_id, via=stranger.peer_id)  # no session with it


async def test_refusals_are_typed(make_node: NodeFactory) -> None:
    a, b, _c, ac = await triangle(make_node, coordinate=False)
    assert "coordinate" not in ac.remote_capabilities
    with pytest.raises(CoordinationRefused, match="CoordinationOff"):
        await a.connect(b.peer_id, via=ac)
    # A target the coordinator has no session with.
    lonely = await make_node()
    c2 = await make_node(limits=Limits(max_introductions=1, max_introductions_per_peer=1))
    assert c2.limits.max_introductions == 1
    ac2, c2a = await connect_pair(a, c2)
    HELD.append(c2a)
    with pytest.raises(CoordinationRefused, match="NoSession"):
        await a.connect(lonely.peer_id, via=ac2)
    # No address, no coordinator, and the address book has never seen b.
    with pytest.raises(PeerNotFound):
        await a.connect(b.peer_id)


async def test_plain_dials_keep_working_with_one_or_several_addresses(
    make_node: NodeFactory,
) -> None:
    # No resumption: a 0-RTT session to the dead first address would be returned at once
    # (connect_any takes the first session it gets; see the report).
    a, b = await make_node(zero_rtt=False), await make_node()
    one, b_one = await asyncio.gather(a.connect(b.peer_id, loopback(b)), b.accept())
    several, b_several = await asyncio.wait_for(
        asyncio.gather(a.connect(b.peer_id, ["[::1]:1", ("::1", b.port)]), b.accept()),
        timeout=20,
    )
    assert one.route == several.route == b_one.route == b_several.route == "direct"
    assert several.remote_peer_id == b.peer_id and b_several.remote_peer_id == a.peer_id


async def test_simultaneous_dials_end_in_one_session_per_pair(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    ab, ba, at_b, at_a = await asyncio.wait_for(
        asyncio.gather(
            a.connect(b.peer_id, loopback(b)),
            b.connect(a.peer_id, loopback(a)),
            b.accept(),
            a.accept(),
        ),
        timeout=20,
    )
    # The connection dialed by the smaller PeerId stays; the other closes with DUPLICATE.
    a_smaller = str(a.peer_id) < str(b.peer_id)
    keep, lose = (ab, ba) if a_smaller else (ba, ab)
    code, reason, _ = await asyncio.wait_for(lose.wait_closed(), timeout=10)
    assert code == DUPLICATE, reason
    assert await keep.ping() < 5
    stream = await keep.open_stream()
    await stream.write(b"still here")
    await stream.finish()
    peer_end = at_b if keep is ab else at_a
    got = await asyncio.wait_for(peer_end.accept_stream(), timeout=10)
    assert await got.read() == b"still here"
