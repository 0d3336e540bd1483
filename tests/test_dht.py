"""The Mainline DHT through the Python API (issue 18), on a local DHT of 20 nodes on
127.0.0.1 (``DhtTestnet``; nothing leaves the machine): a node found and fetched from by its
key alone, with an empty address book and no mDNS; what a record says; a node without the
DHT publishes nothing there."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from i6p import DhtTestnet, Identity
from i6p.errors import InvalidArgument

from .conftest import NodeFactory


@pytest.fixture(scope="module")
def testnet() -> Iterator[DhtTestnet]:
    yield DhtTestnet(20)


async def test_a_peer_is_found_in_the_dht_by_key_and_fetched_from(
    make_node: NodeFactory, testnet: DhtTestnet, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(2 << 20))
    provider = await make_node(
        addr="[::1]:0", dht=True, dht_bootstrap=testnet.bootstrap, publish_addrs=True
    )
    fetcher = await make_node(dht=True, dht_bootstrap=testnet.bootstrap)
    blob = await provider.add_path(src)
    ticket = str(provider.ticket(blob, by_key=True))
    await asyncio.wait_for(provider.dht_publish(), 30)
    record = await asyncio.wait_for(fetcher.dht_lookup(provider.identity.key), 30)
    assert record is not None and record.key == provider.identity.key
    assert f"[::1]:{provider.port}" in record.addrs and not record.relay
    assert record.valid_for > 0 and record.seq == provider.dht_published
    assert fetcher.known_addrs(provider.peer_id) == []  # nothing but the DHT knows it
    result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest"), 60)
    assert result.hash == blob.hash and (tmp_path / "dest").read_bytes() == src.read_bytes()


async def test_a_node_without_the_dht_has_no_record_and_cannot_look_up(
    make_node: NodeFactory, testnet: DhtTestnet
) -> None:
    quiet = await make_node(addr="[::1]:0")
    looker = await make_node(dht=True, dht_bootstrap=testnet.bootstrap)
    with pytest.raises(InvalidArgument):
        await quiet.dht_lookup(Identity.generate().key)
    assert await asyncio.wait_for(looker.dht_lookup(quiet.identity.key), 30) is None
    assert quiet.dht_published is None
