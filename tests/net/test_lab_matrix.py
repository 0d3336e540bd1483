"""I6P across the lab's 8 topologies (tests/net/lab.py): what the engine does today, and the
route the reachability work (issue 16) must reach in each.

Today, without coordination or relays: two open IPv6 hosts connect directly and fetch a
verified blob; a firewalled host can dial an open one (the basis of connection reversal), but
not the other way round; in every other topology a plain dial fails, in both directions,
within the handshake timeout and with a typed error, never a hang.

``test_connect_through_a_coordinator_ends_on_the_expected_route`` is the target: it is an
expected failure (strict) while ``Node.connect`` has no ``via`` (or ``Node.bind`` no
``relay``), so the day it passes the marker must go.
"""

from __future__ import annotations

import inspect
from typing import Any

import i6p
import pytest

from .lab import TOPOLOGIES, Lab
from .lab_peers import (
    Peer,
    connect,
    connect_via,
    join,
    serve_blob,
    start_node,
    verified_fetch,
)

DIAL_TIMEOUT = 2.0  # handshake_timeout of the dials expected to fail
SLACK = 1.5  # seconds past it a failure may take to surface (a loaded 2-core machine)
BLOB = 1 << 20

# The issue's table: the route each topology must end on.
EXPECTED_ROUTE = {
    1: "direct",
    2: "punched",
    3: "direct",  # by reversal: the open side is dialed by the firewalled one
    4: "punched",
    5: "punched",
    6: "relayed",
    7: "relayed",
    8: "relayed",
}
CAN_PUNCH = "via" in inspect.signature(i6p.Node.connect).parameters
CAN_RELAY = "relay" in inspect.signature(i6p.Node.bind).parameters


def test_the_lab_topologies_carry_the_issue_table() -> None:
    assert {n: t.expected for n, t in TOPOLOGIES.items()} == EXPECTED_ROUTE


async def dial(lab: Lab, dialer: Peer, target: Peer, to: str) -> dict[str, Any]:
    """``dialer`` dials ``target`` at its public address; the outcome, typed, and its time."""
    addr = f"{lab.public_for(to, seen_from=dialer.agent.name)}:{target.port}"
    out: dict[str, Any] = await dialer.agent.run(
        "import time\nt0 = time.monotonic()\n"
        "try:\n"
        f"    s = await {dialer.var}.connect({target.peer_id!r}, {addr!r})\n"
        "    out = {'ok': True, 'route': s.route}\n"
        "except i6p.errors.I6PError as e:\n"
        "    out = {'ok': False, 'type': type(e).__name__, 'message': str(e),\n"
        "           'mro': [c.__name__ for c in type(e).__mro__]}\n"
        "out['seconds'] = time.monotonic() - t0\nout",
        timeout=DIAL_TIMEOUT + 10,
    )
    out["addr"] = addr
    return out


async def fresh_pair(lab: Lab, tag: str) -> tuple[Peer, Peer]:
    """A new node on each side (new ports: no conntrack state left by an earlier dial)."""
    a = await start_node(lab.agent("a"), f"a_{tag}", handshake_timeout=DIAL_TIMEOUT)
    b = await start_node(lab.agent("b"), f"b_{tag}", handshake_timeout=DIAL_TIMEOUT)
    return a, b


def assert_failed_fast(out: dict[str, Any]) -> None:
    assert not out["ok"], out
    assert "HandshakeError" in out["mro"], out  # Unreachable is one too
    assert out["seconds"] <= DIAL_TIMEOUT + SLACK, out


async def test_two_open_ipv6_hosts_connect_directly_and_fetch_verified() -> None:
    async with Lab(1) as lab:
        a, b = await fresh_pair(lab, "1")
        served = await serve_blob(b, BLOB)
        session = await connect(a, b, f"[{lab.host('b').v6}]:{b.port}")
        assert session["route"] == EXPECTED_ROUTE[1], session
        got = await verified_fetch(a, served)
        assert got["bytes_fetched"] == BLOB, got


async def test_a_firewalled_host_dials_an_open_one_but_not_the_reverse() -> None:
    async with Lab(3) as lab:
        # The open side first, on fresh nodes: nothing has gone out from a's port yet.
        a, b = await fresh_pair(lab, "in")
        refused = await dial(lab, b, a, "a")
        assert_failed_fast(refused)
        a, b = await fresh_pair(lab, "out")
        served = await serve_blob(b, BLOB)
        out = await dial(lab, a, b, "b")
        assert out["ok"] and out["route"] == EXPECTED_ROUTE[3], out
        got = await verified_fetch(a, served)
        assert got["bytes_fetched"] == BLOB, got


@pytest.mark.parametrize("number", [2, 4, 5, 6, 7, 8])
async def test_a_plain_dial_fails_fast_both_ways(number: int) -> None:
    async with Lab(number) as lab:
        for dialer_side in ("a", "b"):
            a, b = await fresh_pair(lab, dialer_side)
            dialer, target = (a, b) if dialer_side == "a" else (b, a)
            assert_failed_fast(await dial(lab, dialer, target, target.agent.name))


def target_is_built(number: int) -> bool:
    return CAN_PUNCH and (CAN_RELAY or EXPECTED_ROUTE[number] != "relayed")


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(
            n,
            marks=pytest.mark.xfail(
                not target_is_built(n), reason="connect(via=) / relays not built yet", strict=True
            ),
        )
        for n in sorted(TOPOLOGIES)
    ],
)
async def test_connect_through_a_coordinator_ends_on_the_expected_route(number: int) -> None:
    async with Lab(number) as lab:
        c = await start_node(lab.agent("c"), coordinate=True, relay=True)
        a = await start_node(lab.agent("a"), coordinate=True)
        b = await start_node(lab.agent("b"), coordinate=True)
        for side in (a, b):
            await join(lab, side, c)
        # In 3 the open side (b) asks for the firewalled one: only a reversal (a dialing b)
        # gets it there; the other way round a plain dial would do.
        dialer, target = (b, a) if number == 3 else (a, b)
        served = await serve_blob(target, BLOB)
        session = await connect_via(dialer, target, c, timeout=20)
        assert session["route"] == EXPECTED_ROUTE[number], session
        got = await verified_fetch(dialer, served)
        assert got["bytes_fetched"] == BLOB, got
