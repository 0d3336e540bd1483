"""Transfers ride on the node's sessions: one connection per provider for any number of
concurrent fetches, an application session reused when there is one, and sessions dialed
only for transfers never handed to the provider's ``accept()``."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
from i6p import Identity, Node, Ticket

from .conftest import NodeFactory, connect_pair, fetch_until, loopback, wait_until
from .impair_relay import ImpairRelay
from .test_transfer import b3_file, write_random

KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture
def make_node(make_node: NodeFactory) -> NodeFactory:
    """Nodes that ask for no dial-backs: these tests count the connections a node admitted
    as the sessions its peers dialed, and a dial-back is an admitted connection too."""

    async def factory(identity: Identity | None = None, **kwargs: object) -> Node:
        return await make_node(identity, **{"dial_back": False, **kwargs})

    return factory


async def serve(provider: Node, tmp_path: Path, sizes: list[int]) -> list[tuple[Ticket, str]]:
    """Adds a random file of each size; returns (ticket, hash) of each."""
    served = []
    for i, size in enumerate(sizes):
        src = tmp_path / f"src{i}"
        expected = write_random(src, size)
        served.append((provider.ticket(await provider.add_path(src)), expected))
    return served


async def nothing_accepted(node: Node) -> bool:
    """True if no session reaches ``accept()`` within a second."""
    try:
        await asyncio.wait_for(node.accept(), 1.0)
    except TimeoutError:
        return True
    return False


async def test_concurrent_fetches_share_one_connection_and_never_reach_accept(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider, fetcher = await make_node(), await make_node()
    served = await serve(provider, tmp_path, [1 * MiB + i * 7919 for i in range(6)])
    results = await asyncio.wait_for(
        asyncio.gather(
            *(fetcher.fetch(t, tmp_path / f"dest{i}") for i, (t, _) in enumerate(served))
        ),
        60,
    )
    for i, ((_, expected), result) in enumerate(zip(served, results, strict=True)):
        assert result.hash == expected and b3_file(tmp_path / f"dest{i}") == expected
    # Six fetches, one dial: one handshake where there were six.
    assert provider.load.admitted == 1, provider.load
    assert provider.load.connections == 1, "the transfer session outlives a fetch a while"
    assert await nothing_accepted(provider), "a session opened for transfers reached accept()"
    # The application's own session is still delivered (a dial of its own).
    ours, theirs = await asyncio.wait_for(
        asyncio.gather(fetcher.connect(provider.peer_id, loopback(provider)), provider.accept()),
        20,
    )
    assert theirs.remote_peer_id == fetcher.peer_id
    assert provider.load.admitted == 2
    await asyncio.wait_for(ours.ping(), 10)


async def test_a_fetch_rides_on_the_application_session(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider, fetcher = await make_node(), await make_node()
    ((ticket, expected),) = await serve(provider, tmp_path, [3 * MiB + 5])
    ours, _ = await connect_pair(fetcher, provider)
    result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest"), 60)
    assert result.hash == expected
    got = await asyncio.wait_for(fetcher.read_range(ticket, 1 * MiB, 100 * KiB), 20)
    assert got == (tmp_path / "src0").read_bytes()[1 * MiB : 1 * MiB + 100 * KiB]
    assert provider.load.admitted == 1, "the fetch dialed a connection of its own"
    # The transfers left the application's session as it was: open and usable.
    await asyncio.wait_for(ours.ping(), 10)
    assert await nothing_accepted(provider)


async def test_dropping_the_application_session_waits_for_the_fetch_riding_on_it(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """The application lets go of its session mid-fetch: the fetch finishes on it (no second
    dial), and the session is closed as abandoned (code 9) once the fetch is done."""
    provider, fetcher = await make_node(), await make_node()
    size = 16 * MiB
    ((ticket, expected),) = await serve(provider, tmp_path, [size])
    # At 20 MB/s the fetch takes most of a second, so the drop lands in its middle.
    async with ImpairRelay(f"[::1]:{provider.port}", rate=20e6, max_seconds=60) as relay:
        ours, theirs = await asyncio.wait_for(
            asyncio.gather(fetcher.connect(provider.peer_id, relay.addr), provider.accept()), 20
        )
        task, _ = await fetch_until(fetcher, ticket, tmp_path / "dest", size // 8)
        del ours
        gc.collect()
        result = await asyncio.wait_for(task, 60)
    assert result.hash == expected
    assert provider.load.admitted == 1, "the drop cut the fetch's session, which dialed again"
    code, _, by_peer = await asyncio.wait_for(theirs.wait_closed(), 20)
    assert (code, by_peer) == (9, True)


async def test_a_closed_application_session_is_not_reused(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider, fetcher = await make_node(), await make_node()
    ((ticket, expected),) = await serve(provider, tmp_path, [1 * MiB])
    ours, _ = await connect_pair(fetcher, provider)
    await ours.close()
    result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest"), 30)
    assert result.hash == expected
    assert provider.load.admitted == 2, "the fetch needed a session of its own"
    assert await nothing_accepted(provider)


async def test_a_session_the_provider_opened_carries_the_fetch(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """Sessions are symmetric: the fetcher accepted this one, and fetches over it."""
    provider, fetcher = await make_node(), await make_node()
    ((ticket, expected),) = await serve(provider, tmp_path, [2 * MiB])
    theirs, ours = await connect_pair(provider, fetcher)
    result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest"), 60)
    assert result.hash == expected
    assert provider.load.admitted == 0 and fetcher.load.admitted == 1
    await asyncio.wait_for(theirs.ping(), 10)
    del ours


async def test_read_ranges_share_the_transfer_session(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider, fetcher = await make_node(), await make_node()
    ((ticket, _),) = await serve(provider, tmp_path, [4 * MiB])
    data = (tmp_path / "src0").read_bytes()
    offsets = [0, 1 * MiB - 3, 2 * MiB, 3 * MiB + 17, 4 * MiB - 100]
    got = await asyncio.wait_for(
        asyncio.gather(*(fetcher.read_range(ticket, o, 100) for o in offsets)), 30
    )
    assert got == [data[o : o + 100] for o in offsets]
    got = await asyncio.wait_for(fetcher.read_range(ticket, 5, 10), 30)
    assert got == data[5:15]
    assert provider.load.admitted == 1, provider.load
    assert await nothing_accepted(provider)


async def test_a_transfer_session_is_closed_once_idle_and_dialed_again(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider, fetcher = await make_node(), await make_node()
    ((ticket, expected),) = await serve(provider, tmp_path, [1 * MiB])
    await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest1"), 30)
    assert provider.load.connections == 1
    # Closed after its idle grace (5 s), well before the 30 s idle timeout would end it.
    assert await wait_until(lambda: provider.load.connections == 0, 20), provider.load
    result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest2"), 30)
    assert result.hash == expected
    assert provider.load.admitted == 2, "a closed session must not be reused"


async def test_a_fetch_after_the_provider_restarts_dials_anew(tmp_path: Path) -> None:
    identity, state = Identity.generate(), tmp_path / "state"
    provider = await Node.bind(identity, "[::1]:0", state_dir=state, dial_back=False)
    port = provider.port
    fetcher = await Node.bind(Identity.generate(), "[::1]:0", dial_back=False)
    try:
        ((ticket, expected),) = await serve(provider, tmp_path, [1 * MiB])
        await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest1"), 30)
        await provider.close()
        provider = await Node.bind(identity, f"[::1]:{port}", state_dir=state, dial_back=False)
        await provider.add_path(tmp_path / "src0")
        result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest2"), 30)
        assert result.hash == expected and b3_file(tmp_path / "dest2") == expected
        assert provider.load.admitted == 1
        assert await nothing_accepted(provider)
    finally:
        await provider.close()
        await fetcher.close()


async def test_a_serving_only_node_shares_one_connection_too(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider = await make_node(accept_sessions=False)
    fetcher = await make_node()
    served = await serve(provider, tmp_path, [512 * KiB, 700 * KiB, 1 * MiB])
    results = await asyncio.wait_for(
        asyncio.gather(
            *(fetcher.fetch(t, tmp_path / f"dest{i}") for i, (t, _) in enumerate(served))
        ),
        60,
    )
    assert [r.hash for r in results] == [h for _, h in served]
    assert provider.load.admitted == 1
    with pytest.raises(ValueError, match="does not accept sessions"):
        await provider.accept()


async def test_fec_fetches_share_the_session(make_node: NodeFactory, tmp_path: Path) -> None:
    provider, fetcher = await make_node(), await make_node()
    served = await serve(provider, tmp_path, [2 * MiB, 2 * MiB + 1])
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                fetcher.fetch(t, tmp_path / f"dest{i}", mode="fec")
                for i, (t, _) in enumerate(served)
            )
        ),
        60,
    )
    assert [r.hash for r in results] == [h for _, h in served]
    assert provider.load.admitted == 1
    assert await nothing_accepted(provider)
