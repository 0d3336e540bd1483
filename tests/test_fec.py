"""FEC mode: blobs fetched as erasure-coded shards in QUIC datagrams, through loss."""

from __future__ import annotations

from pathlib import Path

import pytest
from i6p import Ticket

from .conftest import NodeFactory
from .impair_relay import ImpairRelay
from .test_transfer import GROUP, b3_file, write_random


@pytest.mark.parametrize(
    "size", [1, GROUP - 1, GROUP + 1, 5 * GROUP + 12345], ids=["1", "group-1", "group+1", "odd"]
)
async def test_fec_round_trip_on_loopback(
    make_node: NodeFactory, tmp_path: Path, size: int
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, size)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    result = await fetcher.fetch(ticket, dest, mode="fec")
    assert (result.hash, result.size) == (expected, size)
    assert b3_file(dest) == expected


async def test_fec_fetch_through_five_percent_loss(make_node: NodeFactory, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 24 << 20
    expected = write_random(src, size)
    # BBR: CUBIC takes random loss for congestion and crawls at 5 % in either mode.
    provider, fetcher = await make_node(congestion="bbr"), await make_node(congestion="bbr")
    blob = await provider.add_path(src)
    async with ImpairRelay(
        f"[::1]:{provider.port}", delay_ms=5, loss=0.05, seed=7, max_seconds=120
    ) as relay:
        ticket = Ticket(provider.peer_id, [relay.addr], blob.hash, blob.size)
        result = await fetcher.fetch(ticket, dest, mode="fec")
    assert result.hash == expected and b3_file(dest) == expected
    # Shards were lost on the way (5 % of datagrams), and the fetch still got everything.
    assert relay.stats["up"]["dropped_loss"] + relay.stats["down"]["dropped_loss"] > 0
