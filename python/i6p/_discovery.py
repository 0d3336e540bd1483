"""What a node knows of where its peers are: the address book, mDNS, and the Mainline DHT
(the discovery half of ``Node``, kept here so node.py stays about sessions and transfers)."""

from __future__ import annotations

from collections.abc import Sequence

from . import _core
from ._core import DhtRecord
from .identity import PeerId, PublicKey
from .transfer import Contact

__all__ = ["Discovery"]


class Discovery:
    """The discovery methods of ``Node``."""

    __slots__ = ()
    _core: _core.Node

    def add_addrs(self, peer_id: PeerId | PublicKey | str, addrs: str | Sequence[str]) -> int:
        """Tells the address book where ``peer_id`` can be reached (``"[2001:db8::1]:4433"``
        or ``"192.0.2.1:4433"`` forms); returns how many addresses it kept (not an
        unspecified or multicast address, nor port 0).

        Addresses are hints: TLS still checks the identity at whatever address is dialed.
        The book keeps at most 16 addresses per peer and 4,096 peers (the least recently
        seen go first); with ``state_dir`` it is kept in ``address-book`` there (mode 0600).
        """
        given = [addrs] if isinstance(addrs, str) else list(addrs)
        return self._core.add_addrs(_peer_id(peer_id), given)

    def known_addrs(self, peer_id: PeerId | PublicKey | str) -> list[str]:
        """What the address book knows of ``peer_id``, most recently seen first."""
        return self._core.known_addrs(_peer_id(peer_id))

    def lookup(self, peer_id: PeerId | PublicKey | str) -> dict[str, list[str]]:
        """What each discovery source knows of ``peer_id``: ``"book"`` (the address book)
        and ``"mdns"`` (announcements heard on the LAN; empty without ``mdns=True``)."""
        peer = _peer_id(peer_id)
        return {"book": self._core.known_addrs(peer), "mdns": self._core.mdns_addrs(peer)}

    async def dht_lookup(self, key: PublicKey | str) -> DhtRecord | None:
        """The newest record the DHT holds for ``key``, verified (signed by that key, valid
        now) and decoded, or None (``InvalidArgument`` without ``dht=True``). Takes about 2 s:
        the lookup waits for the DHT's answers."""
        return await self._core.dht_lookup(PublicKey.parse(key) if isinstance(key, str) else key)

    @property
    def dht_published(self) -> int | None:
        """The sequence number of the last record this node published in the DHT (None
        before the first, and without ``dht=True``)."""
        return self._core.dht_published

    async def dht_publish(self) -> int:
        """Publishes this node's DHT record now (the node also does at bind, on change and
        every 30 minutes); returns its sequence number."""
        return await self._core.dht_publish()

    def set_dht_contacts(self, contacts: Sequence[Contact | str]) -> None:
        """Names these rendezvous or relay nodes (``Contact``s, or their text from ``i6p
        rendezvous``) in this node's DHT record, in place of the ones before, and publishes
        it again at once: a peer that resolves the key and cannot reach an address then asks
        them (at most 4; ``InvalidArgument`` beyond, and without ``dht=True``). The node
        should keep a session with each of them, as ``i6p send --rendezvous`` does."""
        self._core.set_dht_contacts(_contacts(contacts))

    def forget_addrs(self, peer_id: PeerId | PublicKey | str) -> bool:
        """Forgets what the address book knows of ``peer_id``; True if it knew something."""
        return self._core.forget_addrs(_peer_id(peer_id))


def _peer_id(peer: PeerId | PublicKey | str) -> PeerId:
    """The PeerId of a PeerId, a PublicKey, or either's text form (64 hex characters, or 52
    z-base-32 ones)."""
    if isinstance(peer, PublicKey):
        return peer.peer_id
    if isinstance(peer, str):
        text = peer.strip()
        return PublicKey.parse(text).peer_id if len(text) == 52 else PeerId.parse(text)
    return peer


def _key_of(peer: PeerId | PublicKey | str) -> PublicKey | None:
    """The public key of a PublicKey or its text form (a PeerId has none to give)."""
    if isinstance(peer, PublicKey):
        return peer
    if isinstance(peer, str) and len(peer.strip()) == 52:
        return PublicKey.parse(peer.strip())
    return None


def _contacts(contacts: Sequence[Contact | str]) -> list[Contact]:
    """Contacts, or their text form, as ``Contact``s (a typo is an ``InvalidTicket``)."""
    return [Contact.parse(c) if isinstance(c, str) else c for c in contacts]
