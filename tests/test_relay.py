"""Relayed sessions on three real nodes on ::1 (A, relay R, B): A reaches B through R end to
end (route "relayed" on both sides, streams both ways, a verified fetch by ticket), refusals
are typed, the relay's byte bound ends the circuit with code 13 and the error says so, and a
relay that flips bits or misroutes cannot make A accept bad data or the wrong identity."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import blake3
import pytest
from i6p import Limits, Node, Session
from i6p._core import testing
from i6p.errors import ConnectionLost, PeerIdMismatch, RelayRefused

from .conftest import NodeFactory, connect_pair

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _release_sessions() -> object:
    yield
    HELD.clear()


async def relayed(a: Node, b: Node, via: Session) -> tuple[Session, Session]:
    ours, theirs = await asyncio.wait_for(
        asyncio.gather(a.connect_relayed(b.peer_id, via), b.accept()), timeout=20
    )
    HELD.extend((ours, theirs))
    return ours, theirs


#: Sessions the tests keep open (an application dropping its last handle closes a session).
HELD: list[Session] = []


async def hold(a: Node, b: Node) -> Session:
    """A session from a to b, both ends kept open; a's end."""
    ours, theirs = await connect_pair(a, b)
    HELD.extend((ours, theirs))
    return ours


async def three(
    make_node: NodeFactory, relay: Node | None = None
) -> tuple[Node, Node, Node, Session]:
    """A and B, each with a session to the relay; A's session to it."""
    # Relayed sessions stay relayed here (on ::1 an upgrade always finds a direct path).
    a = await make_node(addr="[::1]:0", upgrade=False)
    b = await make_node(addr="[::1]:0")
    r = relay or await make_node(addr="[::1]:0", relay=True)
    a_r = await hold(a, r)
    await hold(b, r)
    return a, r, b, a_r


async def served(node: Node, tmp_path: Path, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    blob = await node.add_path(src)
    return blob.hash, data


async def test_a_reaches_b_through_the_relay_end_to_end(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    a, r, b, a_r = await three(make_node)
    assert ("relay", "1") in a_r.remote_capabilities.items()
    ab, ba = await relayed(a, b, a_r)
    assert (ab.route, ba.route) == ("relayed", "relayed")
    assert ab.remote_peer_id == b.peer_id and ba.remote_peer_id == a.peer_id

    # Application streams both ways.
    for opener, taker, word in ((ab, ba, b"from a"), (ba, ab, b"from b")):
        stream = await opener.open_stream()
        await stream.write(word)
        await stream.finish()
        back = await taker.accept_stream()
        await back.write(await back.read(-1))
        await back.finish()
        assert await stream.read(-1) == word

    # A verified fetch by ticket rides on the relayed session (B is not dialed).
    blob_hash, data = await served(b, tmp_path, 3 << 20)
    copied = r.relay_stats[1]
    dest = tmp_path / "got.bin"
    result = await a.fetch(b.ticket(blob_hash), dest, reconnects=0)
    assert result.size == len(data)
    assert blake3.blake3(dest.read_bytes()).hexdigest() == blob_hash
    assert r.relay_stats[1] - copied >= len(data)


async def test_refusals_say_why(make_node: NodeFactory) -> None:
    plain = await make_node(addr="[::1]:0")
    a, _, b, a_plain = await three(make_node, relay=plain)
    with pytest.raises(RelayRefused) as refused:
        await a.connect_relayed(b.peer_id, a_plain)
    assert refused.value.reason == "not a relay"

    r = await make_node(addr="[::1]:0", relay=True, limits=Limits(max_relay_circuits_per_peer=1))
    a_r = await hold(a, r)
    await hold(b, r)
    stranger = await make_node(addr="[::1]:0")
    with pytest.raises(RelayRefused) as refused:
        await a.connect_relayed(stranger.peer_id, a_r)
    assert refused.value.reason == "target not connected to the relay"
    first, _ = await relayed(a, b, a_r)
    with pytest.raises(RelayRefused) as refused:
        await a.connect_relayed(b.peer_id, a_r)
    assert refused.value.reason == "relay limit reached"
    assert first.route == "relayed"


async def test_the_byte_bound_ends_the_circuit_with_code_13(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    bound = 2 << 20
    relay = await make_node(addr="[::1]:0", relay=True, limits=Limits(relay_circuit_bytes=bound))
    a, r, b, a_r = await three(make_node, relay=relay)
    await relayed(a, b, a_r)
    blob_hash, _ = await served(b, tmp_path, 8 << 20)
    dest = tmp_path / "cut.bin"
    with pytest.raises(ConnectionLost) as lost:
        await a.fetch(b.ticket(blob_hash), dest, reconnects=0)
    assert lost.value.code == 13, lost.value
    assert "limit" in str(lost.value)
    assert not dest.exists()
    assert r.relay_stats[1] <= bound


async def test_a_relay_that_flips_bits_costs_retransmissions_only(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    from i6p import Identity

    core = await testing.bind_relay_testing(Identity.generate()._core, "[::1]:0", flip_every=5)
    relay = Node(core, Identity.generate())
    try:
        a, _, b, a_r = await three(make_node, relay=relay)
        ab, _ = await relayed(a, b, a_r)
        blob_hash, _ = await served(b, tmp_path, 3 << 20)
        dest = tmp_path / "flipped.bin"
        await a.fetch(b.ticket(blob_hash), dest, reconnects=0)
        # Every byte written is right: QUIC dropped the damaged packets.
        assert blake3.blake3(dest.read_bytes()).hexdigest() == blob_hash
        assert ab.stats()["packets_lost"] > 0
    finally:
        await relay.close()


async def test_a_relay_that_misroutes_gets_a_peer_id_mismatch(make_node: NodeFactory) -> None:
    from i6p import Identity

    c = await make_node(addr="[::1]:0")
    core = await testing.bind_relay_testing(
        Identity.generate()._core, "[::1]:0", misroute_to=c.peer_id
    )
    relay = Node(core, Identity.generate())
    try:
        a, _, b, a_r = await three(make_node, relay=relay)
        await hold(c, relay)
        with pytest.raises(PeerIdMismatch) as wrong:
            await a.connect_relayed(b.peer_id, a_r)
        assert (wrong.value.expected, wrong.value.actual) == (str(b.peer_id), str(c.peer_id))
    finally:
        await relay.close()


def test_relay_bounds_are_finite_unless_the_operator_says_unlimited() -> None:
    d = Limits()
    assert d.relay_circuit_bytes is not None and d.relay_circuit_duration is not None
    assert d.max_relay_circuits > 0 and d.max_relay_circuits_per_peer > 0
    u = Limits(relay_circuit_bytes="unlimited", relay_circuit_duration="unlimited")
    assert u.relay_circuit_bytes is None and u.relay_circuit_duration is None
    with pytest.raises(ValueError):
        Limits(relay_circuit_bytes=0)
