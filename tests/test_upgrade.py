"""A relayed session moves to a direct path when one forms (issue 16), on real nodes on ::1:
A reaches B through relay R, then R introduces them again and they punch. On ::1 every node
is reachable, so the punch always succeeds: these tests check what happens when it does (the
session's handles on both sides follow the new connection, the relayed one closes, a running
fetch moves without fetching anything twice). Paths that never form are the namespace lab's
(tests/net: topologies 6-8 stay relayed)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import blake3
import pytest
from i6p import Node, Session
from i6p.errors import InvalidArgument

from .conftest import NodeFactory, connect_pair

pytestmark = pytest.mark.timeout(120)

#: Sessions the tests keep open (an application dropping its last handle closes a session).
HELD: list[Session] = []


@pytest.fixture(autouse=True)
def _release_sessions() -> object:
    yield
    HELD.clear()


async def relayed_pair(
    make_node: NodeFactory, upgrade: bool
) -> tuple[Node, Node, Node, Session, Session]:
    """A (which dials), relay R and B; A's and B's ends of a relayed session."""
    # Automatic dial-backs would count against nothing here but add sessions; punching on
    # ::1 needs none.
    a = await make_node(addr="[::1]:0", upgrade=upgrade, dial_back=False)
    b = await make_node(addr="[::1]:0", dial_back=False)
    r = await make_node(addr="[::1]:0", relay=True, dial_back=False)
    for x in (a, b):
        HELD.extend(await connect_pair(x, r))
    a_r = next(s for s in HELD if s.remote_peer_id == r.peer_id and s.is_dialer)
    ab, ba = await asyncio.wait_for(
        asyncio.gather(a.connect_relayed(b.peer_id, a_r), b.accept()), timeout=20
    )
    HELD.extend((ab, ba))
    assert (ab.route, ba.route) == ("relayed", "relayed")
    return a, r, b, ab, ba


async def until(check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def echo_both_ways(ab: Session, ba: Session) -> None:
    for opener, taker, word in ((ab, ba, b"from a"), (ba, ab, b"from b")):
        stream = await opener.open_stream()
        await stream.write(word)
        await stream.finish()
        back = await asyncio.wait_for(taker.accept_stream(), 10)
        await back.write(await back.read(-1))
        await back.finish()
        assert await stream.read(-1) == word


async def test_a_relayed_session_upgrades_by_itself_and_both_handles_follow(
    make_node: NodeFactory,
) -> None:
    a, r, b, ab, ba = await relayed_pair(make_node, upgrade=True)
    # The first attempt comes 2 s after the relayed session formed.
    await until(lambda: ab.route != "relayed" and ba.route != "relayed", 15)
    assert ab.route == ba.route and ab.route in ("punched", "direct")
    assert ab.remote_peer_id == b.peer_id and ba.remote_peer_id == a.peer_id
    # The same objects now carry streams over the direct connection, both ways.
    await echo_both_ways(ab, ba)
    # The new connection is not a new session to B's application.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(b.accept(), 0.5)
    # The relayed session closes once quiet: the relay carries no circuit any more, and the
    # handles keep working.
    await until(lambda: r.relay_stats[0] == 0, 10)
    await echo_both_ways(ab, ba)
    assert ab.route == ba.route != "relayed"


async def test_a_running_fetch_moves_to_the_direct_path_and_fetches_nothing_twice(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    a, r, b, ab, _ = await relayed_pair(make_node, upgrade=False)
    size = 192 << 20
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    blob = await b.add_path(src)
    dest = tmp_path / "got.bin"
    copied = r.relay_stats[1]
    done = [0]
    fetch = asyncio.create_task(
        a.fetch(b.ticket(blob), dest, progress=lambda d, _t: done.__setitem__(0, d), reconnects=0)
    )
    await until(lambda: done[0] > 0 or fetch.done(), 30)
    route = await a.upgrade(ab)
    assert not fetch.done(), "the fetch ended before the session moved"
    assert route in ("punched", "direct") and ab.route == route
    result = await fetch
    relayed_share = r.relay_stats[1] - copied
    assert blake3.blake3(dest.read_bytes()).hexdigest() == blob.hash
    # Nothing verified was fetched again: the fetch counts every group byte it received.
    assert result.bytes_fetched == size
    # It did move: part of it came over the direct connection, not through the relay.
    assert relayed_share < size
    assert ab.stats()["bytes_received"] > 1 << 20
    await until(lambda: r.relay_stats[0] == 0, 10)


async def test_only_the_dialer_of_a_relayed_session_can_upgrade_it(
    make_node: NodeFactory,
) -> None:
    a, _, b, ab, ba = await relayed_pair(make_node, upgrade=False)
    with pytest.raises(InvalidArgument, match="dialed"):
        await b.upgrade(ba)
    assert ba.route == "relayed"
    # A session that is not relayed is left as it is.
    assert await a.upgrade(HELD[0]) == "direct"
    assert await a.upgrade(ab) in ("punched", "direct")


async def test_dropping_the_moved_session_closes_the_direct_one_too(
    make_node: NodeFactory,
) -> None:
    a, r, _, ab, ba = await relayed_pair(make_node, upgrade=False)
    assert await a.upgrade(ab) in ("punched", "direct")
    await until(lambda: r.relay_stats[0] == 0, 10)
    # The application lets go of its (moved) session: the connection it reached goes too,
    # as a session the application forgot never stays open (code 9, abandoned).
    HELD.remove(ab)
    del ab
    code, _, by_peer = await asyncio.wait_for(ba.wait_closed(), 15)
    assert (code, by_peer) == (9, True)
