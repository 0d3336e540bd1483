"""The listener's HELLO goes out with its first flight (0.5-RTT): a dialer's `connect` returns
with it verified after one round trip of the TLS handshake, while the listener trusts nothing
from the dialer before the client's Finished."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import NodeFactory
from .udp_relay import UdpRelay


async def test_connect_returns_before_the_listener_hears_the_dialers_finished(
    make_node: NodeFactory,
) -> None:
    listener = await make_node(capabilities={"early": "yes"})
    dialer = await make_node(handshake_timeout=5)
    async with UdpRelay(("::1", listener.port)) as relay:
        # Only the dialer's first datagram (its ClientHello) reaches the listener: its
        # certificate, its Finished and its HELLO never do.
        relay.up_limit = 1
        accepting = asyncio.create_task(listener.accept())
        session = await asyncio.wait_for(dialer.connect(listener.peer_id, relay.addr), 10)
        # The listener's HELLO was verified: what it says came with it.
        assert session.remote_peer_id == listener.peer_id
        assert session.remote_capabilities["early"] == "yes"
        assert f"[::1]:{listener.port}" in session.remote_listen_addrs
        assert relay.dropped_up > 0
        # The listener, which never saw the dialer authenticated, delivered nothing.
        await asyncio.sleep(0.5)
        assert not accepting.done()
        assert listener.load.connections == 1
        accepting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await accepting
        await session.close()
