"""``Node``: one UDP socket and one identity, from which sessions are dialed and accepted."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Unpack

from . import _core
from ._addr import Address, resolve
from ._discovery import Discovery, _contacts, _key_of, _peer_id
from .collection import fetch_tree
from .errors import InvalidArgument, InvalidTicket, NodeClosed
from .identity import Identity, PeerId, PublicKey
from .session import Session
from .transfer import (
    Blob,
    Collection,
    CollectionResult,
    Contact,
    FetchChanges,
    FetchOptions,
    FetchResult,
    Ticket,
)

#: A fetch's progress callback: ``progress(done, total)``, bytes verified on disk and the
#: blob's size (known from the ticket, so never 0 for a blob that is not empty).
Progress = Callable[[int, int], object]

Limits = _core.Limits
#: One of the node's addresses as its peers observe it (see ``Node.reachability``).
Reachability = _core.Reachability

__all__ = ["Limits", "Node", "NodeLoad", "Progress", "Reachability"]


class NodeLoad(NamedTuple):
    """What peers hold of a node right now (see ``Limits``)."""

    connections: int
    """Incoming connections, handshaking or established."""
    handshakes: int
    """Incoming handshakes in progress."""
    requests: int
    """Blob requests being served, or waiting (up to 5 s) for one of the node's slots."""
    admitted: int
    """Incoming connections let in to handshake, since the node started."""
    retried: int
    """Incoming connections asked to prove their address first (QUIC Retry), so far."""
    refused: int
    """Incoming connections refused before any handshake work, so far."""


class Node(Discovery):
    """A peer on the network.

    Create one with ``await Node.bind(identity)``; use ``async with`` to close it.
    """

    # __weakref__: i6p.streams keeps per-node state that goes with the node.
    __slots__ = ("__weakref__", "_core", "_identity")

    def __init__(self, core: _core.Node, identity: Identity) -> None:
        self._core = core
        self._identity = identity

    @classmethod
    async def bind(
        cls,
        identity: Identity,
        addr: str = "[::]:0",
        *,
        capabilities: Mapping[str, str] | None = None,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        keep_alive: float = 5.0,
        liveness: float | None = None,
        max_streams: int = 1024,
        congestion: str = "cubic",
        window: int | str = "auto",
        max_window: int = 64 << 20,
        zero_rtt: bool = True,
        state_dir: str | os.PathLike[str] | None = None,
        limits: Limits | None = None,
        accept_sessions: bool = True,
        relay: bool = False,
        coordinate: bool = True,
        dial_back: bool = True,
        upgrade: bool = True,
        max_udp_payload: int | str | None = None,
        mdns: bool = False,
        dht: bool = False,
        dht_bootstrap: Sequence[str] = (),
        publish_addrs: bool = False,
        dht_contacts: Sequence[Contact | str] = (),
        dht_timeout: float | None = None,
    ) -> Node:
        """Binds a UDP socket (dual-stack on ``[::]``) and starts accepting sessions.

        ``capabilities`` are announced to every peer in the HELLO (names up to 64 bytes,
        values up to 1024 bytes, at most 64 entries).

        Transport tuning: ``congestion`` is ``"cubic"`` (default), ``"bbr"``, ``"bounded"`` (BBR
        within an in-flight bound learned from queue build-up: for long links with shallow
        queues, where BBR overflows the queue and CUBIC takes random loss for congestion) or
        ``"newreno"``.
        Flow-control windows are auto-tuned by default: each connection starts at 8 MiB and
        grows with its measured bandwidth x round-trip time up to ``max_window`` bytes; a
        stream's window is at most 2 MiB, so links with a larger bandwidth x RTT are filled by
        several streams (as ``fetch`` does). ``window`` may instead fix the connection's
        windows to a size in bytes, or be ``"quinn"`` for quinn's defaults (1.25 MB per
        stream; for comparisons). Data left unread on streams holds window credit.

        Reconnection: a node keeps TLS resumption tickets of the peers it dialed (per
        PeerId, in memory) and, with ``zero_rtt``, a reconnect to such a peer returns its
        session at once and sends PINGs and GETs in 0-RTT. The tickets it issues to others
        are single use; with ``state_dir`` they are kept in a file there (mode 0600) and
        survive a restart with the same identity.

        ``limits`` (an ``i6p.Limits``) bounds what peers can make the node hold: incoming
        connections per node, per PeerId and per address prefix, handshakes in progress,
        sessions and streams waiting to be accepted (refused past the bound, never waited
        for), blob requests per node and per peer, how long a requester may take no data, and
        the read-ahead per request. ``Limits()`` holds the defaults.

        Timeouts (seconds): a dial fails after ``handshake_timeout`` without a session (at
        once when the network answers ICMP unreachable); a session whose peer is silent for
        ``idle_timeout`` is lost (code 8, timed out), ``keep_alive`` PINGs keeping live but
        quiet sessions open; ``liveness`` (off by default) ends every session whose peer is
        silent that long, sooner than the idle timeout (see ``Session.set_liveness``).

        ``accept_sessions=False`` makes a node that only serves: its peers' sessions serve
        their requests and are never queued for ``accept()`` (which then raises
        ``InvalidArgument``, a ``ValueError``). A node that accepts must keep up: past
        ``limits.max_queued_sessions`` waiting sessions, new ones are refused.

        ``relay=True`` opts in to relaying: peers connected to this node may ask it for a
        circuit to another of its peers (``connect_relayed``), whose traffic it copies
        without being able to read it (the relayed session is end-to-end QUIC/TLS). The
        HELLO then announces ``("relay", "1")``; circuits are bounded by ``limits``
        (``max_relay_circuits``, ``max_relay_circuits_per_peer``, ``relay_circuit_bytes``,
        ``relay_circuit_duration``: finite by default).

        ``coordinate`` (on by default) lets peers that both have a session with this node
        ask it to introduce them (``connect(peer, via=...)``), within
        ``limits.max_introductions``; the node says so in its HELLO (capability
        ``coordinate=1``). Off, it refuses every introduction (``CoordinationRefused``).

        ``dial_back`` (on by default): once two peers agree on the address they see this node
        at, the node asks them to dial it back from another port, so ``reachability()`` says
        whether unsolicited packets reach it (and peers connecting through a coordinator
        dial it directly instead of punching); ``Session.dial_back`` asks one on demand.

        ``upgrade`` (on by default): a relayed session this node dialed keeps trying for a
        direct path, through its relay as coordinator (after 2 s, then with the wait doubling
        up to 60 s). When one forms, the session moves there: its handles (this ``Session``
        object included) reach the direct session from then on, ``route`` says so, and a
        fetch running on it takes its next request there (requests in flight finish on the
        relay, so nothing is fetched twice); the relayed session closes once quiet.

        Packet sizes: path MTU discovery tries UDP payloads up to ``max_udp_payload`` bytes,
        and the node advertises it to peers (discovery never exceeds what the peer
        advertises). By default (``"auto"``) it is the largest MTU among the host's
        interfaces less the IPv6 and UDP headers (65,488 on loopback, 8,952 with jumbo
        frames), and each connection searches no higher than the MTU of the interface its
        route leaves by (so an ordinary 1,500-byte path stays at 1,452); each path then finds
        its own size (``Session.stats()["mtu"]``). An int sets it (1,200..=65,527; 1452 is
        QUIC's usual bound).

        ``mdns`` (off by default; the CLI turns it on): announce this node on the LAN
        (``_i6p._udp.local.``, named by its public key, with its port and addresses) and
        listen for the others', so ``connect(key)`` finds a peer on the same link within
        seconds, without any server. Announcements are hints: TLS checks the identity.

        ``dht`` (off by default): publish a record signed by this node's key in the
        BitTorrent Mainline DHT (BEP 44) and look peers up there: ``connect(key)`` asks it
        after the address book and mDNS (it needs the peer's ``PublicKey``, which the record
        is found by). ``dht_bootstrap`` lists ``host:port`` of DHT nodes to join through (a
        private or test DHT, ``DhtTestnet``); empty means the public DHT's usual bootstrap
        nodes. The record names the protocol version, whether the node relays, and its
        contacts; it lists this node's addresses only with ``publish_addrs=True``: anyone
        who knows the key can then see where the node is, a privacy decision, hence off.
        Records hold for 2 hours and are republished on change and every 30 minutes. The
        DHT's own traffic is IPv4; records may carry IPv6 addresses. ``dht_contacts`` (at
        most 4; see ``set_dht_contacts``) are rendezvous or relay nodes the record names.
        ``dht_timeout`` is how long each DHT request waits for its answer (0.05 to 10 s;
        None: 2 s): a lookup ends when all its requests have ended, so one silent DHT node
        holds it that long; lower it only where DHT nodes answer quickly (a testnet, a LAN).
        """
        caps = [(str(k), str(v)) for k, v in (capabilities or {}).items()]
        core = await _core.Node.bind(
            identity._core,
            await resolve(addr),
            caps,
            handshake_timeout=handshake_timeout,
            idle_timeout=idle_timeout,
            keep_alive=keep_alive,
            liveness=liveness,
            max_streams=max_streams,
            congestion=congestion,
            window=str(window),
            max_window=max_window,
            zero_rtt=zero_rtt,
            state_dir=None if state_dir is None else os.fspath(state_dir),
            limits=limits,
            accept_sessions=accept_sessions,
            relay=relay,
            coordinate=coordinate,
            dial_back=dial_back,
            upgrade=upgrade,
            max_udp_payload=max_udp_payload,
            mdns=mdns,
            dht=dht,
            dht_bootstrap=list(dht_bootstrap),
            publish_addrs=publish_addrs,
            dht_contacts=_contacts(dht_contacts),
            dht_timeout=dht_timeout,
        )
        return cls(core, identity)

    @property
    def peer_id(self) -> PeerId:
        """This node's PeerId."""
        return self._core.peer_id

    @property
    def identity(self) -> Identity:
        """This node's identity."""
        return self._identity

    @property
    def local_addr(self) -> str:
        """The address the socket is bound to, e.g. ``[::]:40123``."""
        return self._core.local_addr

    @property
    def port(self) -> int:
        """The UDP port of the socket."""
        return int(self.local_addr.rpartition(":")[2])

    @property
    def local_addrs(self) -> list[str]:
        """Addresses other nodes can dial (``[host]:port``), most widely reachable first."""
        return self._core.reachable_addrs()

    async def rebind(self, addr: str = "[::]:0") -> str:
        """Moves the node to a new UDP socket bound at ``addr`` (another port or local
        address); its sessions continue over the new path (QUIC connection migration), and
        transfers in progress complete. Returns the new local address."""
        return self._core.rebind(await resolve(addr))

    @property
    def max_udp_payload(self) -> int:
        """The largest UDP payload path MTU discovery tries and the node advertises."""
        return self._core.max_udp_payload

    @property
    def early_requests(self) -> int:
        """Requests (PING, GET) this node served as 0-RTT early data, over all sessions."""
        return self._core.early_requests

    @property
    def limits(self) -> Limits:
        """The node's resource policy."""
        return self._core.limits

    def reachability(self) -> list[Reachability]:
        """This node's addresses as its peers observe them, the most reported first.

        Each session's peer tells us the address it sees (PEER_INFO); an address is
        ``trusted`` once two peers report it, and then up to two of them are asked to dial
        it back from another port (automatically): ``status`` is "public" when a dial-back
        got through, "filtered" when they did not (a stateful firewall or NAT), "unknown"
        before any answer. ``mapping`` is "edm" when peers see different ports for one IP
        (endpoint-dependent NAT mapping), "eim" when they agree. ``rebind`` starts afresh.
        Addresses are hints from peers, which may lie; identities are checked by TLS.
        """
        return self._core.reachability()

    def is_public(self) -> bool:
        """True when an address two peers agree on was reached by their dial-backs."""
        return self._core.is_public()

    @property
    def load(self) -> NodeLoad:
        """Connections, handshakes and blob requests now; admission decisions so far."""
        return NodeLoad(*self._core.load)

    @property
    def resumption_state(self) -> tuple[int, int]:
        """(peers this node holds resumption tickets for, unused tickets it issued)."""
        return self._core.resumption_state

    @property
    def socket_buffers(self) -> tuple[int, int]:
        """The UDP socket's kernel (receive, send) buffer sizes in bytes. They start at 8 MiB
        and grow with the largest auto-tuned connection window, up to 64 MiB (past the
        kernel's ``rmem_max``/``wmem_max`` only with CAP_NET_ADMIN); Linux reports twice
        what was set."""
        return self._core.socket_buffers()

    async def connect(
        self,
        peer_id: PeerId | PublicKey | str,
        addrs: Address | Sequence[Address] | None = None,
        via: Session | PeerId | str | None = None,
    ) -> Session:
        """Opens a session with ``peer_id`` at ``addrs`` (one address, or a list tried a few
        at a time), or through a coordinator.

        ``peer_id`` may also be the peer's ``PublicKey`` (or either's text form). Without
        ``addrs`` and ``via``, the addresses come from the node's address book (see
        ``add_addrs``; every verified session also tells it where its peer was seen), then
        from mDNS with ``Node.bind(mdns=True)`` (listening up to 3 s for a peer nothing else
        knows), then, with ``dht=True`` and the peer's ``PublicKey``, from its DHT record: its
        addresses, then the contacts it names; ``PeerNotFound`` (an ``Unreachable``) when no
        source knows an address.

        ``via`` (a ``Session``, or the PeerId of a peer this node has a live session with)
        names a coordinator: a peer that also has a session with ``peer_id``. The given
        addresses are tried first (for 2 s), then the coordinator introduces the two peers:
        a public target is dialed, a public caller is dialed back (connection reversal), and
        otherwise both sides open their firewalls and NATs toward each other at the same
        moment (up to three attempts). The session's ``route`` is ``"direct"`` or
        ``"punched"``. When nothing works, ``Unreachable`` comes within seconds and says what
        was tried; ``CoordinationRefused`` when the coordinator will not introduce.

        Raises ``PeerIdMismatch`` if the node there has another identity, ``HandshakeError``
        if no session could be set up in ``handshake_timeout``, ``Unreachable`` (a
        ``HandshakeError``) at once when the network answers that nothing listens there
        (ICMP port, host or network unreachable), and ``InvalidPeerId`` for this node's own
        PeerId.

        A reconnect to a peer met before returns at once, in 0-RTT, before the peer has
        answered: it does not prove the peer is alive. If it is not, the first call that
        needs an answer fails with ``Unreachable`` naming the peer and address (at the
        handshake timeout, or at once on ICMP unreachable); ``await
        session.wait_established()`` waits for the proof.
        """
        key = _key_of(peer_id)
        peer_id = _peer_id(peer_id)
        if addrs is None:
            given: list[Address] = []
        elif isinstance(addrs, (str, tuple)):
            given = [addrs]
        else:
            given = list(addrs)
        resolved = [await resolve(a) for a in given]
        if isinstance(via, str):
            via = PeerId.parse(via)
        if isinstance(via, Session):
            core = await self._core.connect(peer_id, resolved, via=via._core)
        elif isinstance(via, PeerId):
            core = await self._core.connect(peer_id, resolved, via_peer=via)
        elif via is None:
            core = await self._core.connect(peer_id, resolved, key=key)
        else:
            raise InvalidArgument(f"via must be a Session or a PeerId, not {type(via).__name__}")
        return Session(core)

    async def connect_relayed(self, peer_id: PeerId | str, relay: Session) -> Session:
        """Opens a session with ``peer_id`` through a relay: ``relay`` is a session with a
        node that relays (bound with ``relay=True``) and has a session with the peer.

        The session is end-to-end: the same TLS identity check and HELLO as ``connect``, run
        over a circuit the relay copies without reading; ``session.route`` is ``"relayed"``
        on both sides, and the peer gets it from ``accept()``. Raises ``RelayRefused`` (its
        ``reason`` says why) when the relay or the peer refuses, ``PeerIdMismatch`` when the
        other end is not ``peer_id``. A relay that ends the circuit at its byte or duration
        bound ends the session with ``ConnectionLost`` code 13 (RELAY_LIMIT).
        """
        if isinstance(peer_id, str):
            peer_id = PeerId.parse(peer_id)
        return Session(await self._core.connect_relayed(peer_id, relay._core))

    async def upgrade(self, session: Session) -> str:
        """Tries once, now, to move a relayed session this node dialed to a direct path
        (its relay introduces the two peers again; see ``Node.bind(upgrade=...)`` for the
        attempts made on their own). Returns the session's route afterwards: ``"punched"``
        or ``"direct"`` when it moved (``session`` and the peer's handle now reach the new
        connection, and a fetch running on it continues there), ``"relayed"`` never: raises
        ``Unreachable`` when no direct path formed this time, ``InvalidArgument`` for a
        relayed session this node did not dial. A session that is not relayed is left as
        it is.
        """
        return await self._core.upgrade(session._core)

    @property
    def relay_stats(self) -> tuple[int, int, int]:
        """(circuits this node relays now, bytes they copied so far, relayed circuits this
        node is an end of)."""
        return self._core.relay_stats

    async def accept(self) -> Session:
        """Waits for the next peer to open a session with this node."""
        return Session(await self._core.accept())

    def __aiter__(self) -> AsyncIterator[Session]:
        """``async for session in node``: the accepted sessions, until the node closes."""
        return self._sessions()

    async def _sessions(self) -> AsyncIterator[Session]:
        while True:
            try:
                session = await self.accept()
            except NodeClosed:
                return
            yield session

    # -- transfers -----------------------------------------------------------------------

    async def add_path(self, path: str | os.PathLike[str]) -> Blob:
        """Hashes a file (in the engine, in parallel) and serves it to peers that ask.

        A path that cannot be served raises a ``FileError`` naming it: ``FileNotFound``,
        ``PermissionDenied``, ``IsADirectory``..."""
        digest, size, resolved = await self._core.add_path(path)
        return Blob(hash=digest, size=size, path=Path(resolved))

    async def add_dir(self, path: str | os.PathLike[str]) -> Collection:
        """Serves a directory as one collection: every regular file under it becomes a blob,
        and their listing (relative paths, sizes, hashes; held in memory) a blob whose ticket
        (``node.ticket(collection)``) names the whole tree. Symbolic links and special files
        inside it are skipped, with a warning logged; empty directories are not kept. A name
        a requester would refuse (not UTF-8, a backslash or a control character) fails the
        call, naming the file."""
        digest, size, resolved, entries = await self._core.add_dir(path)
        return Collection(
            hash=digest,
            size=size,
            path=Path(resolved),
            files=len(entries),
            bytes=sum(e[1] for e in entries),
            entries=tuple(entries),
        )

    def remove(self, blob: Blob | Collection | str) -> bool:
        """Stops serving a blob, and forgets what each peer fetched of it (``served``); True
        if it was served. For a ``Collection``, its listing stops being served (so its
        ticket no longer works); its files are blobs of their own and stay served."""
        return self._core.remove(blob if isinstance(blob, str) else blob.hash)

    def allow_peers(self, peers: Iterable[PeerId | str] | None) -> None:
        """Only these peers may fetch from this node (``None``: anyone may)."""
        if peers is None:
            self._core.set_allowed_peers(None)
        else:
            self._core.set_allowed_peers(
                [PeerId.parse(p) if isinstance(p, str) else p for p in peers]
            )

    def ticket(
        self,
        blob: Blob | Collection | str,
        *,
        rendezvous: Iterable[Contact] = (),
        by_key: bool = False,
    ) -> Ticket:
        """A ticket for a served blob: this node's PeerId and addresses, the hash and size.
        For a ``Collection`` it is a collection ticket (``ticket.collection``). ``rendezvous``
        names up to 4 nodes (``i6p rendezvous``) through which a requester behind a firewall
        or NAT can reach this node; keep a session to each so they can introduce you.

        ``by_key``: a short ticket naming this node by its public key alone (``ticket.key``),
        no address: the fetching node finds this one by discovery (its address book, mDNS,
        the DHT), so the ticket stays valid when addresses change."""
        if isinstance(blob, Collection):
            ticket = self._core.ticket(blob.hash, collection=True, by_key=by_key)
        else:
            h = blob.hash if isinstance(blob, Blob) else blob
            ticket = self._core.ticket(h, by_key=by_key)
        contacts = list(rendezvous)
        return ticket.with_rendezvous(contacts) if contacts else ticket

    def served_bytes(self, blob: Blob | str) -> int:
        """The most distinct bytes of ``blob`` any one peer acknowledged receiving."""
        return self._core.served_bytes(blob.hash if isinstance(blob, Blob) else blob)

    def served(self, blob: Blob | str) -> dict[PeerId, int]:
        """Bytes of ``blob`` each peer has acknowledged receiving (distinct bytes: a group
        sent twice counts once). This is the provider's view of progress, and it moves as
        the peer's acknowledgements arrive, not when data is queued."""
        return dict(self._core.served(blob.hash if isinstance(blob, Blob) else blob))

    async def fetch(
        self,
        ticket: Ticket | str | Iterable[Ticket | str],
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        options: FetchOptions | None = None,
        **changes: Unpack[FetchChanges],
    ) -> FetchResult:
        """Fetches the ticket's blob into ``dest``, verified and resumable.

        How the fetch runs is ``options`` (an ``i6p.FetchOptions``; ``FetchOptions()`` holds
        the engine's defaults), with any of its fields given as keyword arguments instead or
        on top: ``node.fetch(t, dest, streams=4)`` is
        ``node.fetch(t, dest, options=FetchOptions(streams=4))``. A bad value raises
        ``InvalidArgument`` (a ``ValueError``; ``TypeError`` for a wrong type) before anything
        is fetched.

        Given several tickets for the same blob (or a ticket string listing several
        providers, as ``Ticket.join`` writes), the providers are fetched from at once:
        they share the work, and one that is unreachable, disconnects, or serves data that
        fails verification (``max_failures`` times) is dropped while the others finish the
        fetch. ``result.providers`` says what each sent, ``result.dropped`` which were
        dropped and why, both keyed by ``PeerId``.

        Data goes to ``DEST.i6p-part`` with its state in ``DEST.i6p-state``; when every chunk
        group is verified the file is renamed to ``dest`` (an existing file is replaced only
        with ``overwrite``). Running the same fetch again after a crash or a dropped link
        fetches only what is missing. ``progress(done, total)`` (an ``i6p.Progress``) is called
        at most 10 times a second with bytes verified on disk and the blob's size, from the
        first call on.

        A destination whose directory is missing or cannot be written raises a ``FileError``
        (``FileNotFound``, ``NotADirectory``, ``PermissionDenied``...) before anything is
        dialed. A fetch that fails leaves ``DEST.i6p-part`` and ``DEST.i6p-state`` behind
        only if they hold verified data, for the next fetch to resume; otherwise nothing.

        Tuning: ``streams`` requests are in flight at once, each on its own stream of the one
        connection and asking for ``request_size`` bytes of consecutive chunk groups of
        ``group_size`` bytes (a power of two, 16 KiB to 4 MiB). ``i6p bench --tune`` finds good
        values for a given link.

        If the connection drops (the provider restarts, the link goes down), the fetch
        reconnects by itself, in 0-RTT when it can, and asks only for what is still missing:
        up to ``reconnects`` attempts in a row that bring nothing new, ``backoff`` seconds
        apart at first, doubling up to 5 s. ``reconnects=0`` fails at the first drop.

        ``mode="fec"`` is for lossy or long links: the provider sends the data as
        Reed-Solomon shards in QUIC datagrams (paced by the congestion controller, never
        retransmitted), stripes of k data and m parity shards, any k of which rebuild a
        stripe; only stripes that lost more than m shards are asked for again.
        ``fec_shape=(k, min_m, max_m)``: m follows the loss the receiver reports, within
        those bounds. ``shard_size`` defaults to what the path's datagrams carry. Every
        rebuilt group is verified against the root before it is written, as in plain mode.
        With several tickets, each provider serves whole batches of its own;
        ``fec_combine=True`` has each provider send its share of every stripe instead (a run
        of data shards sized to its measured rate, and interleaved parity), any k shards from
        any of them rebuilding it. A combined group that fails verification cannot be pinned
        on one provider: the fetch then stops combining, and the culprit is named by the
        batches that follow. Combining measured slower than separate batches so far (see
        ``benches/bench_fec.py``), hence off by default.
        """
        if changes:
            options = (options or FetchOptions()).replace(**changes)
        singles = [ticket] if isinstance(ticket, (str, Ticket)) else list(ticket)
        tickets = [
            one for t in singles for one in (Ticket.parse_all(t) if isinstance(t, str) else [t])
        ]
        if any(t.collection for t in tickets):
            raise InvalidTicket("this ticket names a collection (a directory): use fetch_dir")
        awaitable, live = self._core.fetch(tickets, Path(dest), options)
        if progress is None:
            return await awaitable
        task = asyncio.ensure_future(awaitable)
        try:
            while not task.done():
                progress(live.done, live.total)
                await asyncio.wait({task}, timeout=0.1)
        except BaseException:
            task.cancel()
            raise
        result = task.result()
        progress(live.done, live.total)
        return result

    async def fetch_dir(
        self,
        ticket: Ticket | str | Iterable[Ticket | str],
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        options: FetchOptions | None = None,
        **changes: Unpack[FetchChanges],
    ) -> CollectionResult:
        """Restores the tree of a collection ticket (``Node.add_dir`` on the provider) into
        the directory ``dest`` (created if missing).

        The listing is fetched and verified like any blob, then checked as the hostile input
        it may be: an absolute path, ``..`` or an empty component, a control character or a
        backslash, a path listed twice or a file that is also a directory raises
        ``errors.InvalidCollection``, and a destination where a file would go through a
        symbolic link or land on something other than a regular file raises
        ``errors.DestinationExists``, both before anything is written. Each file is then
        fetched as ``fetch`` does (verified, resumable; a few at once): running the same
        call again after a failure fetches only what is missing, and keeps files an earlier
        run completed. ``progress(done, total)`` counts bytes of the whole tree."""
        if changes:
            options = (options or FetchOptions()).replace(**changes)
        options = options or FetchOptions()
        singles = [ticket] if isinstance(ticket, (str, Ticket)) else list(ticket)
        tickets = [
            one for t in singles for one in (Ticket.parse_all(t) if isinstance(t, str) else [t])
        ]

        async def read_listing(t: Ticket, size: int) -> bytes:
            return await self.read_range(t, 0, size)

        async def fetch(ts: list[Ticket], path: Path, moved: Progress) -> FetchResult:
            return await self.fetch(ts, path, progress=moved, options=options)

        return await fetch_tree(tickets, Path(dest), read_listing, fetch, options, progress)

    async def read_range(self, ticket: Ticket | str, offset: int, length: int) -> bytes:
        """Verified bytes ``offset .. offset+length`` of the blob, fetching only the chunk
        groups they span. ``InvalidArgument`` (a ``ValueError``) if the range is empty or not
        within the blob."""
        if isinstance(ticket, str):
            ticket = Ticket.parse(ticket)
        return await self._core.read_range(ticket, offset, length)

    async def close(self) -> None:
        """Closes every session and the socket. Idempotent."""
        await self._core.close()

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._core.closed

    async def __aenter__(self) -> Node:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return repr(self._core)
