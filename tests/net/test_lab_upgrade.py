"""A relayed session upgrading to a punched one when the path opens (issue 16), in the lab's
topology 2 (both hosts behind stateful IPv6 firewalls, coordinator and relay on c).

Each test starts with a's router dropping everything between the two LANs, so the punches
through c fail and ``connect(via=c)`` ends relayed; then the block goes (the firewalls stay:
only a coordinated punch gets through them) and the session must move:
- by itself: the dialer's upgrade loop asks c to introduce the two again; the route becomes
  "punched" on both sides, the relay ends its circuit, a verified fetch then rides the
  punched session;
- mid-fetch: a running fetch of 64 MiB over the relay (policed to 20 MB/s by a's router,
  so it lasts seconds); ``Node.upgrade`` moves the session and the fetch completes over the
  punched one, each verified byte fetched once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from .lab import Lab
from .lab_peers import Peer, connect_via, join, serve_blob, start_node, verified_fetch
from .netns import sh

pytestmark = pytest.mark.timeout(180)

# a's router: nothing passes between the two LANs (c, on the bridge, is still reached).
BLOCK = """
table inet lab_block {
  chain block {
    type filter hook forward priority -10; policy accept;
    ip6 daddr 2001:db8:b::/64 drop
    ip6 saddr 2001:db8:b::/64 drop
  }
}
"""


# a's router: traffic with c (the relay) policed to 20 MB/s, so that a relayed fetch lasts
# seconds whatever the machine's load, and the move happens mid-fetch.
SLOW_RELAY = """
table inet lab_slow {
  chain slow {
    type filter hook forward priority -10; policy accept;
    ip6 daddr 2001:db8:ff::c limit rate over 20 mbytes/second drop
    ip6 saddr 2001:db8:ff::c limit rate over 20 mbytes/second drop
  }
}
"""


async def routes(a: Peer, b: Peer) -> tuple[str, str]:
    ours = await a.agent.run(f"sessions[{b.peer_id!r}].route")
    # b's application got the relayed session from accept(); it holds it in `held`.
    theirs = await b.agent.run(
        f"[s.route for s in held if str(s.remote_peer_id) == {a.peer_id!r}][0]"
    )
    return ours, theirs


async def hold_accepted(b: Peer) -> None:
    await b.agent.run(
        "held = []\n"
        "async def _hold():\n"
        f"    while True:\n        held.append(await {b.var}.accept())\n"
        "holder = asyncio.get_running_loop().create_task(_hold())"
    )


async def test_a_relayed_session_moves_to_a_punched_path_by_itself() -> None:
    async with Lab(2) as lab:
        a, b, c = await _setup(lab, upgrade=True)
        deadline = time.monotonic() + 30
        while (got := await routes(a, b)) != ("punched", "punched"):
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.5)
        # The relay lets its circuit go once the relayed session is quiet.
        deadline = time.monotonic() + 15
        while (await c.agent.run(f"{c.var}.relay_stats[0]")) != 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
        served = await serve_blob(b, 4 << 20)
        got_fetch = await verified_fetch(a, served)
        assert got_fetch["bytes_fetched"] == served.size
        assert await routes(a, b) == ("punched", "punched")


async def _setup(lab: Lab, upgrade: bool) -> tuple[Peer, Peer, Peer]:
    c = await start_node(lab.agent("c"), coordinate=True, relay=True)
    a = await start_node(lab.agent("a"), upgrade=upgrade)
    b = await start_node(lab.agent("b"))
    await hold_accepted(b)
    for side in (a, b):
        await join(lab, side, c)
    sh("nft", "-f", "-", ns=lab.ns("ra"), stdin=BLOCK)
    session = await connect_via(a, b, c, timeout=30)
    assert session["route"] == "relayed", session
    lab.exec("ra", "nft", "delete", "table", "inet", "lab_block")
    return a, b, c


async def test_a_running_fetch_moves_from_the_relay_to_the_punched_path() -> None:
    async with Lab(2) as lab:
        a, b, c = await _setup(lab, upgrade=False)
        sh("nft", "-f", "-", ns=lab.ns("ra"), stdin=SLOW_RELAY)
        size = 64 << 20
        served = await serve_blob(b, size)
        copied = await c.agent.run(f"{c.var}.relay_stats[1]")
        result = await a.agent.run(
            "import os, tempfile, blake3\n"
            "dest = os.path.join(tempfile.mkdtemp(prefix='i6p-lab-get-'), 'blob')\n"
            "started = asyncio.Event()\n"
            f"fetch = asyncio.get_running_loop().create_task({a.var}.fetch({served.ticket!r},"
            " dest, progress=lambda d, t: d > 0 and started.set(), reconnects=0))\n"
            "await started.wait()\n"
            f"s = sessions[{b.peer_id!r}]\n"
            f"route = await {a.var}.upgrade(s)\n"
            "moved_mid_fetch = not fetch.done()\n"
            "r = await fetch\n"
            "got = blake3.blake3(open(dest, 'rb').read()).hexdigest()\n"
            "os.unlink(dest)\n"
            "{'route': route, 'moved_mid_fetch': moved_mid_fetch, 'hash': got,\n"
            " 'bytes_fetched': r.bytes_fetched,\n"
            " 'direct_rx': s.stats()['bytes_received']}",
            timeout=120,
        )
        assert result["route"] == "punched" and result["moved_mid_fetch"], result
        assert result["hash"] == served.hash, result
        # Each verified byte once; part of them over the punched session, not the relay.
        assert result["bytes_fetched"] == size, result
        assert result["direct_rx"] > 1 << 20, result
        relayed = await c.agent.run(f"{c.var}.relay_stats[1]") - copied
        assert relayed < size, relayed
        assert await routes(a, b) == ("punched", "punched")
