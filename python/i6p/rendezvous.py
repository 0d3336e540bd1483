"""Rendezvous: reaching a peer behind a firewall or NAT through a node both can reach.

A *rendezvous node* (``i6p rendezvous`` on a public host) holds sessions with the peers that
connect to it, introduces two of them to each other (coordinated simultaneous open) and, if
it opted in with ``relay=True``, relays their end-to-end encrypted traffic when no direct path
forms. A provider keeps a session to its rendezvous nodes (``RendezvousLink``) and names
them in its tickets; a requester connects to one of them and asks it for an introduction
(``connect_through``).

Nothing here trusts the rendezvous node with more than addresses: every session is
authenticated end to end by the PeerId in TLS, so a lying rendezvous node can delay a
connection or make it fail, never substitute a peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from .errors import I6PError
from .node import Node
from .session import Session
from .transfer import Contact, Ticket

__all__ = ["RendezvousLink", "connect_through", "hold_sessions"]

_log = logging.getLogger("i6p.rendezvous")

#: How often a provider's session to its rendezvous node is PINGed: often enough that the
#: NAT or firewall mapping in front of the provider stays open (their UDP timeouts are
#: commonly 30 s or more), and that a dead rendezvous node is noticed.
LINK_LIVENESS = 15.0
#: The longest pause between two attempts to reconnect a lost rendezvous session.
MAX_BACKOFF = 30.0


async def hold_sessions(node: Node) -> None:
    """Accepts sessions until ``node`` closes and holds each until it ends, so the node can
    introduce (and relay for) every peer connected to it. What it holds is bounded by the
    node's limits (sessions beyond them are refused before they get here)."""
    held: set[Session] = set()

    async def hold(session: Session) -> None:
        held.add(session)
        try:
            await session.wait_closed()
        finally:
            held.discard(session)

    async with asyncio.TaskGroup() as tasks:
        async for session in node:
            tasks.create_task(hold(session))


class RendezvousLink:
    """Keeps a session to a rendezvous node open, reconnecting (with backoff) when it
    drops, so the node can introduce peers to this one at any time.

    ``async with RendezvousLink(node, contact) as link:`` connects once (raising if the
    rendezvous node cannot be reached at all), then keeps the session in the background;
    ``link.session`` is the current one (``None`` while reconnecting)."""

    def __init__(self, node: Node, contact: Contact) -> None:
        self._node = node
        self._contact = contact
        self.session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def contact(self) -> Contact:
        """The rendezvous node this link keeps a session to."""
        return self._contact

    async def __aenter__(self) -> RendezvousLink:
        self.session = await self._connect()
        self._task = asyncio.create_task(self._keep())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in (self._task, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _connect(self) -> Session:
        session = await self._node.connect(self._contact.peer_id, self._contact.addrs)
        session.set_liveness(LINK_LIVENESS)
        # With one peer no address is trusted, so nothing asks for a dial-back by itself:
        # ask the rendezvous node once, so this node knows whether peers can dial it
        # (then they do, instead of punching). At most 3 s, in the background.
        self._probe = asyncio.create_task(self._ask_dial_back(session))
        return session

    @staticmethod
    async def _ask_dial_back(session: Session) -> None:
        with contextlib.suppress(I6PError):
            await session.dial_back()

    async def _keep(self) -> None:
        pause = 1.0
        while True:
            if self.session is not None:
                await self.session.wait_closed()
                self.session = None
            try:
                self.session = await self._connect()
                pause = 1.0
            except I6PError as e:
                _log.info("rendezvous %s unreachable (%s); retrying", self._contact.peer_id, e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_BACKOFF)


async def connect_through(node: Node, ticket: Ticket) -> Session:
    """A session with the ticket's provider: at its addresses, or else through one of the
    rendezvous nodes the ticket names (introduction, simultaneous open, relay), tried in
    order. Raises the last failure, whose message says what was tried."""
    contacts = ticket.rendezvous
    if not contacts:
        return await node.connect(ticket.peer_id, ticket.addrs)
    failure: I6PError | None = None
    for contact in contacts:
        try:
            via = await node.connect(contact.peer_id, contact.addrs)
        except I6PError as e:
            failure = e
            continue
        try:
            return await node.connect(ticket.peer_id, ticket.addrs, via=via)
        except I6PError as e:
            failure = e
    assert failure is not None  # contacts was not empty
    raise failure
