"""``Node``: one UDP socket and one identity, from which sessions are dialed and accepted."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from . import _core
from ._addr import Address, resolve
from .identity import Identity, PeerId
from .session import Session

__all__ = ["Node"]


class Node:
    """A peer on the network.

    Create one with ``await Node.bind(identity)``; use ``async with`` to close it.
    """

    __slots__ = ("_core", "_identity")

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
        max_streams: int = 1024,
    ) -> Node:
        """Binds a UDP socket (dual-stack on ``[::]``) and starts accepting sessions.

        ``capabilities`` are announced to every peer in the HELLO (names up to 64 bytes,
        values up to 1024 bytes, at most 64 entries).
        """
        caps = [(str(k), str(v)) for k, v in (capabilities or {}).items()]
        core = await _core.Node.bind(
            identity._core,
            await resolve(addr),
            caps,
            handshake_timeout=handshake_timeout,
            idle_timeout=idle_timeout,
            keep_alive=keep_alive,
            max_streams=max_streams,
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

    async def connect(self, peer_id: PeerId | str, addr: Address) -> Session:
        """Opens a session with ``peer_id`` at ``addr``.

        Raises ``PeerIdMismatch`` if the node there has another identity, ``HandshakeError``
        if no session could be set up in time.
        """
        if isinstance(peer_id, str):
            peer_id = PeerId.parse(peer_id)
        return Session(await self._core.connect(peer_id, await resolve(addr)))

    async def accept(self) -> Session:
        """Waits for the next peer to open a session with this node."""
        return Session(await self._core.accept())

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
