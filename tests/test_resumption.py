"""Session resumption and 0-RTT: real nodes, real handshakes, real captured packets.

Where the outcome depends on early data reaching the listener before the handshake
completes, the peers talk through the impairment relay with a delay, so the client's Finished
comes one round trip after its first flight, as on a real link."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from i6p import Identity, Node, Session
from i6p.errors import PeerIdMismatch

from .conftest import NodeFactory, connect_pair, loopback, wait_until
from .impair_relay import ImpairRelay
from .udp_relay import UdpRelay

DELAY_MS = 40  # each way: an 80 ms round trip


async def _first_session(a: Node, b: Node, addr: str | None = None) -> None:
    """A full handshake from a to b, which leaves a holding b's resumption tickets."""
    ours, theirs = await asyncio.wait_for(
        asyncio.gather(a.connect(b.peer_id, addr or loopback(b)), b.accept()), 20
    )
    assert not ours.resumed and ours.early_data == "none"
    assert not theirs.resumed
    # Tickets come right after the handshake; the HELLO exchange waited longer than that.
    assert await wait_until(lambda: a.resumption_state[0] >= 1, 5)
    await ours.close()
    await theirs.wait_closed()


async def _reconnect(a: Node, b: Node, addr: str) -> tuple[Session, Session]:
    ours = await asyncio.wait_for(a.connect(b.peer_id, addr), 20)
    # On bare loopback the handshake may be done by now; through a relay it never is.
    assert ours.early_data in ("pending", "accepted"), "a known peer is reconnected in 0-RTT"
    await asyncio.wait_for(ours.ping(), 20)
    await asyncio.wait_for(ours.wait_established(), 20)
    theirs = await asyncio.wait_for(b.accept(), 20)
    return ours, theirs


async def test_second_connect_is_resumed_and_its_first_ping_is_early_data(
    make_node: NodeFactory,
) -> None:
    a, b = await make_node(), await make_node(capabilities={"side": "b"})
    async with ImpairRelay(loopback(b), delay_ms=DELAY_MS) as relay:
        await _first_session(a, b, relay.addr)
        ours, theirs = await _reconnect(a, b, relay.addr)
        assert ours.resumed and ours.early_data_accepted
        assert theirs.resumed and theirs.early_data_accepted
        # The PING was answered before the listener's handshake completed: in 0.5-RTT.
        assert theirs.early_requests == 1
        assert b.early_requests == 1
        # The HELLO exchange still ran: the peer's signed capabilities are there.
        assert ours.remote_capabilities == {"side": "b", "coordinate": "1", "dialback": "1"}
        assert ours.remote_peer_id == b.peer_id and theirs.remote_peer_id == a.peer_id
        # Streams work both ways on the resumed session.
        stream = await ours.open_stream()
        await stream.write(b"after resumption")
        await stream.finish()
        got = await asyncio.wait_for(theirs.accept_stream(), 10)
        assert await got.read() == b"after resumption"


async def test_listener_restart_with_state_dir_still_resumes(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """The listener's tickets survive its restart (same identity, same state dir).

    The dialer's side of a restart cannot be done: rustls 0.23 has no way to save a client
    ticket, so a restarted dialer always does a full handshake first."""
    identity = Identity.generate()
    state = tmp_path / "state"
    a = await make_node()
    b = await Node.bind(identity, "[::1]:0", state_dir=state)
    port = b.port
    try:
        await _first_session(a, b)
        files = list(state.glob("*.tickets"))  # beside the address book
        assert len(files) == 1
        assert files[0].stat().st_mode & 0o777 == 0o600
        assert state.stat().st_mode & 0o777 == 0o700
    finally:
        await b.close()
    b = await Node.bind(identity, f"[::1]:{port}", state_dir=state)
    try:
        ours = await asyncio.wait_for(a.connect(b.peer_id, loopback(b)), 20)
        await asyncio.wait_for(ours.ping(), 10)
        await asyncio.wait_for(ours.wait_established(), 10)
        theirs = await asyncio.wait_for(b.accept(), 10)
        assert ours.resumed and theirs.resumed
        assert ours.early_data_accepted
    finally:
        await b.close()


async def test_a_tampered_ticket_file_is_ignored(make_node: NodeFactory, tmp_path: Path) -> None:
    identity = Identity.generate()
    state = tmp_path / "state"
    a = await make_node()
    b = await Node.bind(identity, "[::1]:0", state_dir=state)
    try:
        await _first_session(a, b)
    finally:
        await b.close()
    (path,) = state.glob("*.tickets")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40
    path.write_bytes(bytes(data))
    b = await Node.bind(identity, "[::1]:0", state_dir=state)
    try:
        assert b.resumption_state[1] == 0, "nothing from a damaged file is trusted"
        ours = await asyncio.wait_for(a.connect(b.peer_id, loopback(b)), 20)
        await asyncio.wait_for(ours.ping(), 10)
        await asyncio.wait_for(ours.wait_established(), 10)
        theirs = await asyncio.wait_for(b.accept(), 10)
        assert not ours.resumed and ours.early_data == "rejected"
        assert not theirs.resumed and b.early_requests == 0
    finally:
        await b.close()
    # Garbage of any size is refused the same way.
    path.write_bytes(os.urandom(300))
    b = await Node.bind(identity, "[::1]:0", state_dir=state)
    assert b.resumption_state[1] == 0
    await b.close()


async def test_a_replay_of_captured_early_data_is_refused(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    # a -> capturing relay -> delay relay -> b: the capture sees the client's first flight,
    # and the delay lets its early data reach b before the handshake completes.
    async with ImpairRelay(loopback(b), delay_ms=DELAY_MS) as delay:
        host, _, port = delay.addr.rpartition(":")
        async with UdpRelay((host.strip("[]"), int(port))) as relay:
            await _first_session(a, b, relay.addr)
            relay.capture()
            ours, theirs = await _reconnect(a, b, relay.addr)
            assert ours.early_data_accepted and b.early_requests == 1
            flight = relay.captured
            assert len(flight) >= 2, "the ClientHello and at least one 0-RTT packet"
            tickets_before = b.resumption_state[1]
            # An attacker sends the captured first flight again, from elsewhere.
            await relay.replay(flight)
            await asyncio.sleep(4 * DELAY_MS / 1000 + 0.5)
            assert b.early_requests == 1, "replayed early data was processed"
            assert b.resumption_state[1] == tickets_before, "the replay resumed nothing"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(b.accept(), 1.0)
            # The real session is unaffected.
            await asyncio.wait_for(ours.ping(), 10)
            del theirs


async def test_only_replay_safe_requests_are_processed_as_early_data(
    make_node: NodeFactory,
) -> None:
    a, b = await make_node(), await make_node()
    async with ImpairRelay(loopback(b), delay_ms=DELAY_MS) as relay:
        await _first_session(a, b, relay.addr)
        ours = await asyncio.wait_for(a.connect(b.peer_id, relay.addr), 20)
        assert ours.early_data == "pending"
        ping = asyncio.ensure_future(ours.ping())
        # An application stream written in 0-RTT: not replay-safe.
        stream = await ours.open_stream()
        await stream.write(b"not idempotent")
        finish = asyncio.ensure_future(stream.finish())
        await asyncio.wait_for(ours.wait_established(), 20)
        await asyncio.wait_for(ping, 20)
        await asyncio.wait_for(finish, 20)
        theirs = await asyncio.wait_for(b.accept(), 10)
        assert ours.early_data_accepted
        # Only the PING was served early; the stream reached the application after the
        # handshake completed (the session is handed over only once established).
        assert b.early_requests == 1
        got = await asyncio.wait_for(theirs.accept_stream(), 10)
        assert theirs.handshake_done
        assert await got.read() == b"not idempotent"


async def test_a_ticket_for_one_peer_is_never_used_with_another(make_node: NodeFactory) -> None:
    a, b, c = await make_node(), await make_node(), await make_node()
    await _first_session(a, b)
    # Dialing b's PeerId at c's address: a 0-RTT attempt with b's ticket reaches c, which
    # cannot read it; the full handshake then shows c's certificate and the dial fails.
    ours = await asyncio.wait_for(a.connect(b.peer_id, loopback(c)), 20)
    with pytest.raises(PeerIdMismatch):
        await asyncio.wait_for(ours.wait_established(), 20)
    assert c.early_requests == 0
    # A dial to c itself is a full handshake: b's tickets are filed under b.
    mine, theirs = await connect_pair(a, c)
    assert not mine.resumed and mine.early_data == "none" and not theirs.resumed
    # b's tickets are still good for b.
    ours, _ = await _reconnect(a, b, loopback(b))
    assert ours.resumed


async def test_zero_rtt_can_be_turned_off(make_node: NodeFactory) -> None:
    a, b = await make_node(zero_rtt=False), await make_node()
    await _first_session(a, b)
    ours, theirs = await connect_pair(a, b)
    assert ours.early_data == "none" and ours.resumed and theirs.resumed
