"""Address reflection and dial-back between real nodes on ::1: after sessions with two peers a
node trusts its observed address and their dial-backs find it public, without a dial-back ever
reaching ``accept``; refusals are typed; the bound is part of ``i6p.Limits``."""

from __future__ import annotations

import asyncio
import socket

import pytest
from i6p import Limits, Reachability
from i6p.errors import DialBackRefused, InvalidArgument

from .conftest import NodeFactory, loopback, wait_until


async def test_two_peers_make_the_address_trusted_and_public(make_node: NodeFactory) -> None:
    a, b, c = await make_node(), await make_node(), await make_node()
    assert a.reachability() == []
    # Held: a session whose last object goes is closed, and a closed one helps no more.
    sessions = [await a.connect(n.peer_id, loopback(n)) for n in (b, c)]

    def firm() -> bool:
        report = a.reachability()
        return bool(report) and report[0].reached == 2

    assert await wait_until(firm, 10), a.reachability()
    [ours] = a.reachability()
    assert isinstance(ours, Reachability)
    assert ours.addr == loopback(a)
    assert (ours.status, ours.mapping, ours.reporters, ours.trusted) == ("public", "eim", 2, True)
    assert ours.unreached == 0
    assert a.is_public()
    assert repr(ours).startswith(f"Reachability(addr='{loopback(a)}', status='public', ")
    # The dial-backs came in as connections (b's at its first report, then b's and c's once
    # the address was trusted; b's second is refused if its first still runs), and none
    # reached accept().
    assert 2 <= a.load.admitted <= 3
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(a.accept(), 0.5)
    assert all(s.remote_peer_id in (b.peer_id, c.peer_id) for s in sessions)


async def test_one_peer_is_a_hint_and_dial_back_on_demand_says_public(
    make_node: NodeFactory,
) -> None:
    # No automatic dial-back: this test asks for its own.
    a, b = await make_node(dial_back=False), await make_node()
    session = await a.connect(b.peer_id, loopback(b))
    assert await wait_until(lambda: bool(a.reachability()), 5)
    [hint] = a.reachability()
    assert (hint.reporters, hint.trusted, hint.status) == (1, False, "unknown")
    assert not a.is_public()
    assert await session.dial_back() is True
    [ours] = a.reachability()
    assert (ours.status, ours.reached, ours.trusted) == ("public", 1, False)
    # One helper that reached the address is enough to let peers dial it directly.
    assert a.is_public()
    with pytest.raises(AttributeError):
        ours.status = "filtered"  # type: ignore[misc]
    # A new socket: what peers saw of the old one no longer holds.
    await a.rebind()
    assert a.reachability() == []
    assert await session.dial_back() is True
    [moved] = a.reachability()
    assert moved.addr == loopback(a) != ours.addr


async def test_a_second_dial_back_with_the_same_peer_is_refused_while_one_runs(
    make_node: NodeFactory,
) -> None:
    a, b = await make_node(dial_back=False), await make_node()
    session = await a.connect(b.peer_id, loopback(b))
    # A port nobody answers on: the first dial-back runs its whole 3 s timeout.
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as silent:
        silent.bind(("::1", 0))
        port = silent.getsockname()[1]
        first = asyncio.create_task(session.dial_back(port))
        await asyncio.sleep(0.2)
        with pytest.raises(DialBackRefused) as refused:
            await session.dial_back(port)
        assert refused.value.reason == "busy"
        assert await first is False
    with pytest.raises(InvalidArgument):
        await session.dial_back(70000)


def test_the_dial_back_bound_is_part_of_the_resource_policy() -> None:
    assert Limits().max_dial_backs == 4
    assert Limits(max_dial_backs=1).max_dial_backs == 1
    assert "max_dial_backs=1" in repr(Limits(max_dial_backs=1))
    with pytest.raises(InvalidArgument):
        Limits(max_dial_backs=0)
