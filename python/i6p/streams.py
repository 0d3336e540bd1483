"""asyncio streams over I6P: ``open_connection`` and ``start_server`` as asyncio's, where the
other end is a peer named by its identity and a **service** name instead of a host and port.

A handler written for ``asyncio.start_server`` runs unchanged: it gets a ``StreamReader`` and
a ``StreamWriter`` with asyncio's methods and errors (``IncompleteReadError``,
``LimitOverrunError``, ``ConnectionResetError``). Each connection is one QUIC stream of the
one session between the two nodes: no handshake per connection.

On the wire (docs/PROTOCOL.md, "Services"): the opener's first bytes on an application stream
are ``magic:u16=0x5356  len:u8  name``; the accepting side reads them within 10 s and hands
the stream to the service of that name, or resets and stops it with code ``SERVICE_REFUSED``
(unknown service, or a peer the service's allow-list does not name), which the opener's
reads and writes raise as ``ConnectionRefusedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from ._addr import Address
from ._discovery import _key_of, _peer_id
from .errors import (
    ConnectionLost,
    IncompleteRead,
    InvalidArgument,
    StreamError,
    StreamReset,
    StreamTooLong,
)
from .identity import PeerId, PublicKey
from .node import Node
from .session import Session, Stream

__all__ = [
    "SERVICE_BUSY",
    "SERVICE_REFUSED",
    "Server",
    "StreamReader",
    "StreamWriter",
    "open_connection",
    "start_server",
]

#: The stream code a service refusal resets and stops a stream with.
SERVICE_REFUSED = 0x5352
#: The stream code of a service at its ``max_connections``.
SERVICE_BUSY = 0x5342
#: How long the accepting side waits for a stream's service header.
HEADER_TIMEOUT = 10.0
_MAGIC = b"SV"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LIMIT = 2**16
_HIGH_WATER = 1 << 20
_CHUNK = 1 << 16

Handler = Callable[["StreamReader", "StreamWriter"], Awaitable[None] | None]


def _header(service: str) -> bytes:
    if not _NAME.fullmatch(service):
        raise InvalidArgument(f"a service name is 1-64 of A-Z a-z 0-9 . _ -, not {service!r}")
    return _MAGIC + bytes([len(service)]) + service.encode()


@contextlib.contextmanager
def _as_asyncio() -> Iterator[None]:
    """i6p's stream errors as the ones asyncio code expects."""
    try:
        yield
    except StreamReset as e:
        if e.code == SERVICE_REFUSED:
            raise ConnectionRefusedError(f"the peer refused the service: {e}") from e
        if e.code == SERVICE_BUSY:
            raise ConnectionRefusedError(f"the service is at its connection limit: {e}") from e
        raise ConnectionResetError(str(e)) from e
    except ConnectionLost as e:
        raise ConnectionResetError(str(e)) from e


class StreamReader:
    """asyncio's ``StreamReader`` methods over one I6P stream."""

    def __init__(self, stream: Stream, limit: int = _LIMIT) -> None:
        self._stream = stream
        self._limit = limit
        self._eof = False

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``b""`` at the end); with ``n < 0``, everything to the end."""
        if n == 0:
            return b""
        with _as_asyncio():
            if n > 0:
                data = await self._stream.read(n)
                self._eof = not data
                return data
            parts: list[bytes] = []
            while chunk := await self._stream.read(_CHUNK):
                parts.append(chunk)
        self._eof = True
        return b"".join(parts)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` if the stream ends first."""
        parts: list[bytes] = []
        got = 0
        with _as_asyncio():
            while got < n:
                chunk = await self._stream.read(n - got)
                if not chunk:
                    self._eof = True
                    raise asyncio.IncompleteReadError(b"".join(parts), n)
                parts.append(chunk)
                got += len(chunk)
        return b"".join(parts)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """The bytes up to and including ``separator``; ``asyncio.IncompleteReadError`` at the
        end, ``asyncio.LimitOverrunError`` past the reader's limit (the bytes stay)."""
        with _as_asyncio():
            try:
                return await self._stream.readuntil(separator, limit=self._limit)
            except IncompleteRead as e:
                self._eof = True
                raise asyncio.IncompleteReadError(e.partial, None) from e
            except StreamTooLong as e:
                raise asyncio.LimitOverrunError(str(e), self._limit) from e

    async def readline(self) -> bytes:
        """One line with its ``b"\\n"``; the last bytes without one at the end, then ``b""``.
        ``ValueError`` past the limit, as asyncio's."""
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            return e.partial
        except asyncio.LimitOverrunError as e:
            raise ValueError(e.args[0]) from e

    def at_eof(self) -> bool:
        """True once a read met the end of the stream."""
        return self._eof

    def exception(self) -> BaseException | None:
        return None

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class _Transport:
    """The little of asyncio's transport that stream code reaches for."""

    def __init__(self, writer: StreamWriter) -> None:
        self._writer = writer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        """Resets the stream at once (the peer's reads raise ``ConnectionResetError``)."""
        self._writer._abort()


class StreamWriter:
    """asyncio's ``StreamWriter`` methods over one I6P stream: ``write`` buffers and a task
    sends; ``drain`` waits while more than 1 MiB is unsent (the peer's flow control holds it
    back), so backpressure reaches the writer as with TCP."""

    def __init__(self, stream: Stream, session: Session, service: str) -> None:
        self._stream = stream
        self._session = session  # held: a session no handle holds is closed
        self._service = service
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self.transport = _Transport(self)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise ConnectionResetError(str(self._error)) from self._error
        if self._closer is not None:
            raise RuntimeError("write after close() or write_eof()")
        if data:
            self._pending.append(bytes(data))
            self._pending_bytes += len(data)
            if self._sender is None or self._sender.done():
                self._sender = asyncio.ensure_future(self._send())

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        for d in data:
            self.write(d)

    async def _send(self) -> None:
        try:
            while self._pending:
                chunk = b"".join(self._pending)
                self._pending.clear()
                with _as_asyncio():
                    await self._stream.write(chunk)
                self._pending_bytes -= len(chunk)
        except (ConnectionError, StreamError) as e:
            self._error = e

    async def _flushed(self) -> None:
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)
        if self._error is not None:
            raise ConnectionResetError(str(self._error)) from self._error

    async def drain(self) -> None:
        """Waits while more than 1 MiB is unsent; raises what stopped the sending."""
        if self._pending_bytes > _HIGH_WATER:
            await self._flushed()
        elif self._error is not None:
            raise ConnectionResetError(str(self._error)) from self._error
        else:
            await asyncio.sleep(0)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Ends this side once what is written has gone (the peer reads to its end); the
        reader stays open."""
        if self._closer is None:
            self._closer = asyncio.ensure_future(self._finish())
            self._closer.add_done_callback(_retrieve)

    async def _finish(self) -> None:
        await self._flushed()
        with _as_asyncio():
            try:
                await self._stream.finish()
            except ConnectionLost as e:
                # The peer closed the session on purpose (its node or the session) before
                # acknowledging our end: as a TCP peer that closed, not an error to the
                # closer. A reset stream, a timeout or our own node closing still raises.
                if not (e.by_peer and e.code in (0, 3)):
                    raise

    def close(self) -> None:
        """As ``write_eof``: the stream's sending side ends cleanly once the buffer is sent."""
        self.write_eof()

    def is_closing(self) -> bool:
        return self._closer is not None

    async def wait_closed(self) -> None:
        """Waits until the close has been acknowledged or the peer closed the session;
        raises ``ConnectionResetError`` if the stream was reset or the session failed first
        (timed out, or this node closed)."""
        if self._closer is not None:
            await asyncio.shield(self._closer)

    def _abort(self) -> None:
        """Resets the stream both ways (what is unsent is dropped)."""
        self._pending.clear()
        self._pending_bytes = 0
        if self._sender is not None:
            self._sender.cancel()
        self._closer = asyncio.ensure_future(self._reset())
        self._closer.add_done_callback(_retrieve)

    async def _reset(self) -> None:
        with contextlib.suppress(StreamError, ConnectionLost):
            await self._stream.reset(0)
        with contextlib.suppress(StreamError, ConnectionLost):
            await self._stream.stop(0)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peer_id"`` (the peer's verified ``PeerId``), ``"peername"`` (its address as
        ``(host, port)``), ``"service"``, ``"session"``, ``"stream"``."""
        if name == "peer_id":
            return self._session.remote_peer_id
        if name == "peername":
            host, _, port = self._session.remote_addr.rpartition(":")
            return (host.strip("[]"), int(port))
        if name == "service":
            return self._service
        if name == "session":
            return self._session
        if name == "stream":
            return self._stream
        return default

    async def __aenter__(self) -> StreamWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


def _retrieve(task: asyncio.Task[None]) -> None:
    """Marks a close's outcome seen: ``wait_closed`` raises it to whoever asks; a writer
    nobody waits on is not an error to log."""
    if not task.cancelled():
        task.exception()


# One session per (node, peer), whichever side dialed it: many streams, one handshake;
# connections opened together wait for the same dial, and a session the peer dialed to this
# node's services serves this node's connections to the peer too. Weak on the node, so a
# closed node's sessions go with it.
_SESSIONS: weakref.WeakKeyDictionary[Node, dict[PeerId, asyncio.Future[Session]]] = (
    weakref.WeakKeyDictionary()
)


async def _session_to(
    node: Node,
    peer: PeerId | PublicKey | str,
    addrs: Address | Sequence[Address] | None,
    via: Session | PeerId | str | None = None,
) -> Session:
    key = _peer_id(peer)
    peer = _key_of(peer) or key  # dialed by its key when given one (DHT lookup)
    known = _SESSIONS.setdefault(node, {})
    dial = known.get(key)
    if dial is not None and _usable(dial):
        return await asyncio.shield(dial)
    dial = known[key] = asyncio.ensure_future(_dial(node, peer, addrs, via))
    try:
        return await asyncio.shield(dial)
    except BaseException:
        if known.get(key) is dial:
            del known[key]
        raise


async def _dial(
    node: Node,
    peer: PeerId | PublicKey,
    addrs: Address | Sequence[Address] | None,
    via: Session | PeerId | str | None,
) -> Session:
    """A new session to ``peer``, whose streams the node's services are offered as well."""
    session = await node.connect(peer, addrs, via=via)
    router = _ROUTERS.get(node)
    if router is not None:
        router.watch(session)
    return session


def _adopt(node: Node, session: Session) -> None:
    """Uses a session the peer dialed for this node's connections to it, unless one is open."""
    known = _SESSIONS.setdefault(node, {})
    dial = known.get(session.remote_peer_id)
    if dial is None or not _usable(dial):
        adopted: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        adopted.set_result(session)
        known[session.remote_peer_id] = adopted


def _usable(dial: asyncio.Future[Session]) -> bool:
    """A dial still going, or one that gave a session that is open."""
    if not dial.done():
        return True
    return not dial.cancelled() and dial.exception() is None and not dial.result().closed


async def open_connection(
    node: Node,
    peer: PeerId | PublicKey | str,
    service: str,
    addrs: Address | Sequence[Address] | None = None,
    *,
    via: Session | PeerId | str | None = None,
    limit: int = _LIMIT,
) -> tuple[StreamReader, StreamWriter]:
    """A connection to ``service`` on ``peer``: a new stream on the one session this node
    keeps with the peer, dialed when there is none as ``node.connect(peer, addrs, via=via)``
    dials (``via``: a coordinator, for a peer behind a firewall or NAT). A refused service
    shows as ``ConnectionRefusedError`` on the first read or drain (the header goes without
    a round trip)."""
    header = _header(service)
    session = await _session_to(node, peer, addrs, via)
    stream = await session.open_stream()
    await stream.write(header)
    return StreamReader(stream, limit), StreamWriter(stream, session, service)


class Server:
    """A service on a node, as asyncio's ``Server``: ``async with``, ``serve_forever``,
    ``close``, ``wait_closed``."""

    def __init__(
        self,
        router: _Router,
        service: str,
        handler: Handler,
        allow: set[PeerId] | None,
        limit: int,
        max_connections: int | None,
    ) -> None:
        self._router = router
        self.service = service
        self._handler = handler
        self._allow = allow
        self._limit = limit
        self._max_connections = max_connections
        self._serving = True
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()

    def allows(self, peer: PeerId) -> bool:
        return self._serving and (self._allow is None or peer in self._allow)

    def full(self) -> bool:
        """At ``max_connections`` handlers running: a new connection is refused as busy."""
        return self._max_connections is not None and len(self._tasks) >= self._max_connections

    @property
    def connections(self) -> int:
        """Connections being handled now."""
        return len(self._tasks)

    def _run(self, stream: Stream, session: Session) -> None:
        reader = StreamReader(stream, self._limit)
        writer = StreamWriter(stream, session, self.service)

        async def handle() -> None:
            try:
                result = self._handler(reader, writer)
                if result is not None:
                    await result
            except Exception as e:  # reported and the stream reset, as asyncio's server does
                asyncio.get_running_loop().call_exception_handler(
                    {
                        "message": "Unhandled exception in client_connected_cb",
                        "exception": e,
                        "stream": stream,
                    }
                )
                writer._abort()

        task = asyncio.ensure_future(handle())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        """Stops taking new connections for the service (they are refused from now on);
        connections being handled go on."""
        if self._serving:
            self._serving = False
            self._router.remove(self)
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve_forever(self) -> None:
        """Serves until cancelled or closed; closes the service on the way out."""
        try:
            await self._closed.wait()
        finally:
            self.close()

    async def start_serving(self) -> None:
        """Already serving since ``start_server`` (as asyncio's, for symmetry)."""

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


class _Router:
    """Takes a node's incoming sessions (its ``accept``) and the sessions ``open_connection``
    dialed, and hands each stream the peer opens on them to the service its header names."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.services: dict[str, Server] = {}
        # Tasks of its sessions and of streams waiting for their header: held, as asyncio
        # keeps only weak references to tasks.
        self._sessions: set[asyncio.Task[None]] = set()
        self._watched: set[int] = set()  # id() of the sessions whose streams it takes
        self._task = asyncio.ensure_future(self._accept())
        for dial in _SESSIONS.get(node, {}).values():
            if dial.done() and _usable(dial):
                self.watch(dial.result())

    def watch(self, session: Session) -> None:
        """Takes the streams the peer opens on ``session`` (once per session)."""
        if id(session) in self._watched:
            return
        self._watched.add(id(session))
        task = asyncio.ensure_future(self._streams(session))
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        task.add_done_callback(lambda _: self._watched.discard(id(session)))

    def remove(self, server: Server) -> None:
        if self.services.get(server.service) is server:
            del self.services[server.service]

    async def _accept(self) -> None:
        try:
            with contextlib.suppress(ConnectionLost):
                async for session in self.node:
                    _adopt(self.node, session)
                    self.watch(session)
        finally:
            # The node closed: let it go (the table's value would hold its key for ever).
            if _ROUTERS.get(self.node) is self:
                del _ROUTERS[self.node]

    async def _streams(self, session: Session) -> None:
        with contextlib.suppress(ConnectionLost):
            while True:
                stream = await session.accept_stream()
                task = asyncio.ensure_future(self._dispatch(stream, session))
                self._sessions.add(task)
                task.add_done_callback(self._sessions.discard)

    async def _dispatch(self, stream: Stream, session: Session) -> None:
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                head = await stream.readexactly(3)
                if head[:2] != _MAGIC or not 1 <= head[2] <= 64:
                    raise ValueError("not a service header")
                name = (await stream.readexactly(head[2])).decode("ascii")
        except (TimeoutError, ValueError, UnicodeDecodeError, StreamError, ConnectionLost):
            await _refuse(stream)
            return
        server = self.services.get(name)
        if server is None or not server.allows(session.remote_peer_id):
            await _refuse(stream)
            return
        if server.full():
            await _refuse(stream, SERVICE_BUSY)
            return
        server._run(stream, session)


async def _refuse(stream: Stream, code: int = SERVICE_REFUSED) -> None:
    with contextlib.suppress(StreamError, ConnectionLost):
        await stream.stop(code)
        await stream.reset(code)


_ROUTERS: weakref.WeakKeyDictionary[Node, _Router] = weakref.WeakKeyDictionary()


async def start_server(
    handler: Handler,
    node: Node,
    service: str,
    *,
    allow: Iterable[PeerId | str] | None = None,
    limit: int = _LIMIT,
    max_connections: int | None = None,
) -> Server:
    """Serves ``service`` on ``node``: ``handler(reader, writer)`` runs for each connection,
    as with ``asyncio.start_server``. ``allow`` (PeerIds) limits the service to those peers;
    others are refused, per service. One node hosts any number of services.
    ``max_connections`` bounds the handlers running at once (from every peer together);
    past it a connection is refused with code ``SERVICE_BUSY`` (``ConnectionRefusedError``
    at the opener). Without it, only the node's limits bound them (streams per session,
    sessions per peer).

    The node's incoming sessions go to its services from the first ``start_server`` on: do
    not call ``node.accept()`` on it as well."""
    _header(service)
    router = _ROUTERS.get(node)
    if router is None:
        router = _ROUTERS[node] = _Router(node)
    if service in router.services:
        raise InvalidArgument(f"service {service!r} is already served on this node")
    allowed = (
        None if allow is None else {PeerId.parse(p) if isinstance(p, str) else p for p in allow}
    )
    if max_connections is not None and max_connections < 1:
        raise InvalidArgument(f"max_connections must be at least 1, not {max_connections}")
    server = Server(router, service, handler, allowed, limit, max_connections)
    router.services[service] = server
    return server
