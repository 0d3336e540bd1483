"""``Session`` and ``Stream``: a symmetric session with one peer, and its byte streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import TypedDict

from . import _core
from .errors import IncompleteRead
from .identity import PeerId

__all__ = ["Session", "SessionStats", "Stream"]

_CHUNK = 1 << 20
#: The most ``Stream.read()`` returns by default when reading to the end (16 MiB).
READ_LIMIT = 16 << 20
#: The longest line ``Stream.readline()``/``readuntil()`` return by default (64 KiB, as asyncio).
LINE_LIMIT = 64 << 10


class SessionStats(TypedDict):
    """Figures from the QUIC connection."""

    rtt: float
    cwnd: int
    bytes_sent: int
    bytes_received: int
    packets_sent: int
    packets_received: int
    packets_lost: int
    bytes_lost: int
    mtu: int
    """The largest UDP payload this side sends on the path now (path MTU discovery's
    finding; 1,200 after a black hole)."""
    black_holes: int
    """Times the path was taken for a black hole (its large packets lost) and fell back."""


class Stream:
    """A bidirectional byte stream within a session.

    A stream opened with ``open_stream`` is visible to the peer's ``accept_stream`` at once,
    before any byte is written. Iterating with ``async for`` yields chunks until the end.

    Endings are honest: once the peer resets the stream, every later read (``read``,
    ``readexactly``, ``readuntil``, ``async for``) raises ``StreamReset`` with its code, and
    once it stops it, every later write does. A stream dropped (collected) or left by an
    exception (``async with``) without ``finish()`` is reset with code 9 (ABANDONED), so the
    peer's read raises ``StreamReset`` instead of seeing a clean end. ``async with stream:``
    finishes it on a normal exit (unless it was already finished or reset).
    """

    __slots__ = ("_core",)

    def __init__(self, core: _core.Stream) -> None:
        self._core = core

    @property
    def id(self) -> int:
        """The QUIC stream id."""
        return self._core.id

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Sends all of ``data``, waiting for flow-control credit as needed.

        ``bytes`` and memoryviews of ``bytes`` go to the engine without a copy; other
        buffers are copied once. A write the stream has room for completes without waiting
        (the send window bounds what is queued, so a fast writer still waits for its peer).
        """
        await self._core.write(data)

    async def finish(self) -> None:
        """Ends the sending side; returns once the peer acknowledged every byte."""
        await self._core.finish()

    async def read(self, n: int = -1, *, limit: int = READ_LIMIT) -> bytes:
        """Up to ``n`` bytes as they arrive, ``b""`` at the end of the stream: everything
        that has arrived, up to ``n``, in one ``bytes``; without waiting when there is some.

        With ``n < 0``, reads until the end, raising ``StreamTooLong`` (a ``StreamError``)
        past ``limit`` bytes, 16 MiB by default: the peer decides how much a stream carries.
        """
        if n < 0:
            return await self._core.read(n, limit=limit)
        core = self._core
        # Bytes are taken off the stream only by this task, after its wait: a cancel that
        # lands while it waits (or just after the wait ended) leaves them for the next read.
        while (data := core.read_now(n)) is None:
            await core.readable()
        return data

    async def readinto(self, buffer: bytearray | memoryview) -> int:
        """Reads into ``buffer`` and returns how many bytes: as many as have arrived, up to
        ``len(buffer)``, at least one; 0 at the end of the stream (or for an empty buffer).

        ``buffer`` is any writable, contiguous bytes-like object (a ``bytearray``, a
        ``memoryview`` of one or a slice of it); the bytes go into it without a ``bytes``
        object on the way. Raises ``TypeError`` for a read-only or non-contiguous buffer,
        ``StreamReset`` once the peer reset the stream. Like ``read``, it completes without
        waiting when data is there, and a read that is cancelled takes nothing off the stream.
        """
        core = self._core
        while (n := core.readinto_now(buffer)) is None:
            await core.readable()
        return n

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; raises ``StreamError`` if the stream ends first."""
        return await self._core.readexactly(n)

    async def readuntil(self, sep: bytes = b"\n", *, limit: int = LINE_LIMIT) -> bytes:
        """The bytes up to and including ``sep``; what follows it stays buffered for the next
        read of any kind.

        Past ``limit`` bytes without ``sep``, raises ``StreamTooLong`` and keeps the bytes
        buffered (at most about ``limit`` are held). If the stream ends first, raises
        ``IncompleteRead`` (as asyncio's ``IncompleteReadError``) with the bytes that arrived
        as its ``partial`` (they are taken off the stream).
        """
        return await self._core.readuntil(bytes(sep), limit)

    async def readline(self, *, limit: int = LINE_LIMIT) -> bytes:
        """One line, with its ``b"\n"``; as asyncio, the last line without one at the end of
        the stream, then ``b""``. ``StreamTooLong`` past ``limit`` bytes without a newline."""
        try:
            return await self._core.readuntil(b"\n", limit)
        except IncompleteRead as e:
            return e.partial

    async def reset(self, code: int = 0) -> None:
        """Abandons sending; the peer's reads raise ``StreamReset`` with ``code``.

        ``code`` is 0 or 16 ..= 2**62 - 1; 1-15 are i6p's own (``InvalidCode`` otherwise).
        """
        await self._core.reset(code)

    async def stop(self, code: int = 0) -> None:
        """Asks the peer to stop sending; its writes raise ``StreamReset`` with ``code``
        (0 or 16 ..= 2**62 - 1, as ``reset``)."""
        await self._core.stop(code)

    async def splice_tcp(self, tcp: _core.TcpConnection) -> tuple[int, int]:
        """Carries a TCP connection (from ``i6p._core.TcpListener`` or ``TcpConnection.connect``)
        over this stream both ways, copied in the engine, until both directions ended: the
        end of one side ends that direction of the other (a half-close stays a half-close),
        and a failure of either resets both (the TCP socket with RST). Returns the bytes
        carried (to the stream, to TCP); the stream is the splice's until then."""
        return await self._core.splice_tcp(tcp)

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            await self._core.abandon()
        elif not self._core.send_ended:
            await self._core.finish()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.read(_CHUNK):
            yield chunk

    def __repr__(self) -> str:
        return f"Stream(id={self.id})"


class Session:
    """A session with one peer. Either side may open and accept streams.

    The session stays open while the application holds it or any of its streams; once the
    last of them is dropped it is closed with code 9 (ABANDONED). ``async with session:``
    closes it on exit: with code 0 normally, with code 9 and the exception's type as the
    reason when an exception leaves the block.
    """

    __slots__ = ("_core",)

    def __init__(self, core: _core.Session) -> None:
        self._core = core

    @property
    def remote_peer_id(self) -> PeerId:
        """The peer's PeerId, verified in the TLS handshake."""
        return self._core.remote_peer_id

    @property
    def remote_addr(self) -> str:
        """The peer's current address."""
        return self._core.remote_addr

    @property
    def remote_capabilities(self) -> dict[str, str]:
        """The capabilities the peer announced in its HELLO."""
        return dict(self._core.remote_capabilities)

    @property
    def remote_listen_addrs(self) -> list[str]:
        """The addresses the peer says it listens on."""
        return self._core.remote_listen_addrs

    @property
    def observed_addr(self) -> str | None:
        """This node's address as the peer sees it (from its PEER_INFO), once known."""
        return self._core.observed_addr

    @property
    def is_dialer(self) -> bool:
        """True on the side that called ``connect``."""
        return self._core.is_dialer

    @property
    def route(self) -> str:
        """How the session's packets travel: ``"direct"`` (a dial to a known address),
        ``"punched"`` (a coordinated simultaneous open) or ``"relayed"`` (through a relay that
        sees only PeerIds and ciphertext)."""
        return self._core.route

    @property
    def resumed(self) -> bool:
        """True when the TLS handshake resumed an earlier session (known once it is done)."""
        return self._core.resumed

    @property
    def early_data(self) -> str:
        """``"none"``, ``"pending"`` (sent, handshake not done), ``"accepted"`` or
        ``"rejected"`` (what it carried was sent again after the handshake)."""
        return self._core.early_data

    @property
    def early_data_accepted(self) -> bool:
        """True when 0-RTT data was accepted on this session."""
        return self._core.early_data == "accepted"

    @property
    def early_requests(self) -> int:
        """Requests (PING, GET) this side served before the TLS handshake completed."""
        return self._core.early_requests

    @property
    def closed(self) -> bool:
        """True once the session is closing or closed (a CLOSE sent or received, or the
        connection ended): no new stream can be opened on it."""
        return self._core.closed

    @property
    def handshake_done(self) -> bool:
        """True once the TLS handshake is complete."""
        return self._core.handshake_done

    async def wait_established(self) -> None:
        """Waits for the HELLO exchange; a session opened in 0-RTT finishes it in the
        background, so its peer's capabilities and listen addresses come with it."""
        await self._core.wait_established()

    async def open_stream(self) -> Stream:
        """Opens a new bidirectional stream."""
        return Stream(await self._core.open_stream())

    async def accept_stream(self) -> Stream:
        """Waits for the peer to open a stream; streams come in the order the peer opened
        them."""
        return Stream(await self._core.accept_stream())

    # The bound is kept in the engine, whose error names the peer; asyncio.timeout() works too.
    async def ping(self, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """Sends a PING and returns the round-trip time in seconds.

        With ``timeout`` (seconds), raises ``i6p.errors.Timeout`` (also a ``TimeoutError``)
        when no PONG came in that time; the session goes on. Without one, a PING to a peer
        that died waits until the session ends (the idle timeout, 30 s by default, or the
        session's ``liveness``) and raises ``ConnectionLost``.
        """
        return await self._core.ping(timeout)

    async def dial_back(self, port: int | None = None) -> bool:
        """Asks the peer to dial this node back from another port, at the IP it observes for
        us and at ``port`` (default: the port it observes). True when its handshake got
        through (the address takes unsolicited connections), False when it did not (filtered).
        The answer feeds ``Node.reachability()``.

        Raises ``i6p.errors.DialBackRefused`` when the peer refuses (``reason`` "busy",
        "unsupported") or one is already running with it.
        """
        return await self._core.dial_back(port)

    @property
    def liveness(self) -> float | None:
        """Seconds of silence after which the session is taken for dead, or ``None``."""
        return self._core.liveness

    def set_liveness(self, seconds: float | None) -> None:
        """Ends the session when the peer is silent for ``seconds`` (at least 0.1).

        While the session is quiet, PINGs go out on its control stream (after a quarter of
        ``seconds`` without anything from the peer); a peer that answers nothing for
        ``seconds`` is taken for dead: the session is closed locally and pending and later
        calls raise ``ConnectionLost`` with code 8 ("timed out"). ``None`` turns it off (the
        QUIC idle timeout still applies). ``Node.bind(liveness=...)`` sets it for every
        session of a node.
        """
        self._core.set_liveness(seconds)

    async def close(self, code: int = 0, reason: str = "") -> None:
        """Ends the session; the peer's pending calls raise ``ConnectionLost(code, reason)``.

        ``code`` is 0 or 16 ..= 2**32 - 1 (the CLOSE frame carries 32 bits); 1-15 are
        reserved for i6p itself. Anything else raises ``InvalidCode`` (a ``ValueError``).
        """
        await self._core.close(code, reason)

    async def wait_closed(self) -> tuple[int, str, bool]:
        """Waits for the session to end; returns ``(code, reason, by_peer)``."""
        return await self._core.wait_closed()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self._core.close(0, "")
        else:
            await self._core.abandon(f"application error: {exc_type.__name__}")

    def stats(self) -> SessionStats:
        """RTT, bytes and packets sent, received and lost, from the QUIC connection."""
        return self._core.stats()  # type: ignore[return-value]

    def __repr__(self) -> str:
        return repr(self._core)
