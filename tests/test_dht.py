"""The Mainline DHT through the Python API (issue 18), on a local DHT of 20 nodes on
127.0.0.1 (``DhtTestnet``; nothing leaves the machine): a node found and fetched from by its
key alone, with an empty address book and no mDNS; what a record says; a record naming a
rendezvous node instead of addresses; the request timeout; a node without the DHT publishes
nothing there."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from i6p import Contact, DhtTestnet, Identity, Node
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


async def test_a_record_without_addresses_leads_through_its_contact(
    make_node: NodeFactory, testnet: DhtTestnet, tmp_path: Path
) -> None:
    """The provider publishes no address, only a rendezvous node it keeps a session with
    (``set_dht_contacts``): the fetcher resolves the key, dials the contact, and the contact
    introduces it to the provider."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1 << 20))
    dht = {"dht": True, "dht_bootstrap": testnet.bootstrap, "dht_timeout": 0.3}
    rendezvous = await make_node(addr="[::1]:0")
    provider = await make_node(addr="[::1]:0", **dht)
    link = await provider.connect(rendezvous.peer_id, f"[::1]:{rendezvous.port}")
    contact = Contact(rendezvous.peer_id, [f"[::1]:{rendezvous.port}"])
    with pytest.raises(InvalidArgument, match="at most 4"):
        provider.set_dht_contacts([contact] * 5)
    provider.set_dht_contacts([str(contact)])
    blob = await provider.add_path(src)
    fetcher = await make_node(**dht)
    for _ in range(20):  # the record is published again a moment after the change
        record = await asyncio.wait_for(fetcher.dht_lookup(provider.identity.key), 30)
        if record is not None and record.contacts:
            break
    assert record is not None and record.addrs == []
    assert [str(c) for c in record.contacts] == [str(contact)]
    ticket = provider.ticket(blob, by_key=True)
    result = await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "dest"), 60)
    assert result.hash == blob.hash and (tmp_path / "dest").read_bytes() == src.read_bytes()
    # The session made through the contact was for transfers: the provider's application
    # never gets it from accept().
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(provider.accept(), timeout=0.5)
    await link.close()


@pytest.mark.parametrize("seconds", [0.0, 0.01, 11.0, -1.0])
async def test_a_request_timeout_out_of_bounds_is_refused(
    testnet: DhtTestnet, seconds: float
) -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        await Node.bind(
            Identity.generate(), dht=True, dht_bootstrap=testnet.bootstrap, dht_timeout=seconds
        )
