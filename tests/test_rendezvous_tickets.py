"""Contacts of rendezvous nodes, and tickets that name them (kinds 0x81-0x84)."""

from __future__ import annotations

from pathlib import Path

import pytest
from i6p import Contact, Identity, Ticket
from i6p.errors import InvalidTicket

from .conftest import NodeFactory

HASH = "ab" * 32


def contact(relay: bool = False) -> Contact:
    return Contact(
        Identity.generate().peer_id, ["[2001:db8:ff::c]:6446", "203.0.113.3:6446"], relay
    )


def test_a_contact_round_trips_through_its_text() -> None:
    for relay in (False, True):
        c = contact(relay)
        text = str(c)
        assert text.startswith("i6p")
        back = Contact.parse(f"  {text.upper()}\n")
        assert back == c and hash(back) == hash(c)
        assert back.relay is relay
        assert back.addrs == ["[2001:db8:ff::c]:6446", "203.0.113.3:6446"]
        assert ("relay" in repr(c)) is relay


def test_a_contact_is_not_a_ticket_and_a_ticket_is_not_a_contact() -> None:
    c = contact()
    ticket = Ticket(Identity.generate().peer_id, ["[::1]:9"], HASH, 5)
    with pytest.raises(InvalidTicket, match="contact, not a blob ticket"):
        Ticket.parse(str(c))
    with pytest.raises(InvalidTicket, match="blob ticket, not a contact"):
        Contact.parse(str(ticket))
    text = str(c)
    typo = text[:-1] + ("a" if text[-1] != "a" else "b")
    with pytest.raises(InvalidTicket, match="checksum"):
        Contact.parse(typo)
    with pytest.raises(ValueError):
        Contact(c.peer_id, ["not an address"])


def test_a_ticket_names_its_rendezvous_nodes_and_reads_back() -> None:
    peer = Identity.generate().peer_id
    plain = Ticket(peer, ["[2001:db8:a::2]:5000"], HASH, 1000)
    a, b = contact(relay=True), contact()
    via = plain.with_rendezvous([a, b])
    assert plain.rendezvous == [] and via.rendezvous == [a, b]
    assert Ticket.parse(str(via)) == via
    assert Ticket.parse(str(via)).rendezvous[0].relay
    assert Ticket(peer, plain.addrs, HASH, 1000, rendezvous=[a, b]) == via
    assert "rendezvous=2" in repr(via)
    # The old kinds stay for tickets without rendezvous nodes; the new one is longer.
    assert str(plain) != str(via) and len(str(via)) > len(str(plain))
    # A file of a collection keeps the ticket's rendezvous nodes.
    assert via.for_blob("cd" * 32, 7).rendezvous == [a, b]


def test_rendezvous_lists_are_bounded_and_distinct() -> None:
    plain = Ticket(Identity.generate().peer_id, [], HASH, 1)
    five = [contact() for _ in range(5)]
    with pytest.raises(InvalidTicket, match="at most 4"):
        plain.with_rendezvous(five)
    one = contact()
    with pytest.raises(InvalidTicket, match="twice"):
        plain.with_rendezvous([one, one])


def test_joined_providers_share_the_union_of_their_rendezvous_nodes() -> None:
    a, b, c = contact(), contact(), contact()
    t1 = Ticket(Identity.generate().peer_id, ["[::1]:1"], HASH, 9, rendezvous=[a, b])
    t2 = Ticket(Identity.generate().peer_id, ["[::1]:2"], HASH, 9, rendezvous=[b, c])
    both = Ticket.parse_all(Ticket.join([t1, t2]))
    assert [t.peer_id for t in both] == [t1.peer_id, t2.peer_id]
    assert all(t.rendezvous == [a, b, c] for t in both)
    many = [
        Ticket(Identity.generate().peer_id, [], HASH, 9, rendezvous=[contact()]) for _ in range(5)
    ]
    with pytest.raises(InvalidTicket, match="rendezvous"):
        Ticket.join(many)


async def test_a_node_writes_tickets_naming_rendezvous_nodes(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    node = await make_node()
    path = tmp_path / "file"
    path.write_bytes(b"reachable through a rendezvous node")
    blob = await node.add_path(path)
    rdv = contact(relay=True)
    ticket = node.ticket(blob, rendezvous=[rdv])
    assert ticket.rendezvous == [rdv] and ticket.peer_id == node.peer_id
    assert Ticket.parse(str(ticket)) == ticket
    assert node.ticket(blob).rendezvous == []


def test_a_peers_contact_names_its_rendezvous_nodes() -> None:
    a, b = contact(relay=True), contact()
    peer = Contact(Identity.generate().peer_id, ["[2001:db8:a::2]:5000"], via=[a, b])
    assert peer.via == [a, b] and contact().via == []
    back = Contact.parse(str(peer))
    assert back == peer and back.via[0].relay
    assert "via=" in repr(peer)
    # A ticket names its provider's rendezvous nodes itself: one given a peer's contact
    # keeps the node, not the nodes behind it, and reads back the same.
    ticket = Ticket(Identity.generate().peer_id, [], HASH, 1, rendezvous=[peer])
    assert ticket.rendezvous[0].via == [] and Ticket.parse(str(ticket)) == ticket


@pytest.mark.parametrize(
    ("via", "why"),
    [
        ("self", "its own rendezvous node"),
        ("twice", "named twice"),
        ("nested", "without its own"),
        ("five", "at most 4"),
    ],
)
def test_a_contacts_rendezvous_nodes_are_bounded_distinct_and_flat(via: str, why: str) -> None:
    me = Identity.generate().peer_id
    one = contact()
    nodes = {
        "self": [Contact(me, [])],
        "twice": [one, one],
        "nested": [Contact(one.peer_id, one.addrs, via=[contact()])],
        "five": [contact() for _ in range(5)],
    }[via]
    with pytest.raises(InvalidTicket, match=why):
        Contact(me, [], via=nodes)
