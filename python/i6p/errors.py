"""Exceptions raised by i6p.

Every failure the engine reports arrives as one of these classes (the Rust extension imports
them from here), so applications catch ``i6p.errors.*`` and never engine internals. Every
error raised for bad input is an ``I6PError``; those about a value are also ``ValueError``s,
those about a file also ``OSError``s (with ``errno``, ``strerror`` and ``filename``).
"""

from __future__ import annotations

import errno as _errno
from typing import Any

__all__ = [
    "BlobNotFound",
    "ConnectionLost",
    "CoordinationRefused",
    "DestinationExists",
    "DialBackRefused",
    "DiskFull",
    "ErasureError",
    "FileError",
    "FileExists",
    "FileNotFound",
    "HandshakeError",
    "I6PError",
    "IncompleteRead",
    "InsecureKeyFile",
    "IntegrityError",
    "InvalidAddress",
    "InvalidArgument",
    "InvalidCode",
    "InvalidCollection",
    "InvalidHash",
    "InvalidKey",
    "InvalidPeerId",
    "InvalidTicket",
    "IsADirectory",
    "MissingExtra",
    "NodeClosed",
    "NotADirectory",
    "PeerIdMismatch",
    "PermissionDenied",
    "ProtocolError",
    "RelayRefused",
    "SourceChanged",
    "StreamError",
    "StreamReset",
    "StreamTooLong",
    "Timeout",
    "TransferRefused",
    "TransportError",
    "Unreachable",
]


class I6PError(Exception):
    """Base class of every i6p error."""


class InvalidKey(I6PError, ValueError):
    """A key file or key bytes are not a usable Ed25519 private key."""


class InvalidAddress(I6PError, ValueError):
    """An address string could not be parsed or resolved."""


class InvalidPeerId(I6PError, ValueError):
    """A peer id that is not 64 hex characters (or 32 bytes, or a 32-byte public key), or
    one that cannot be dialed: this node's own."""


class InvalidTicket(I6PError, ValueError):
    """A ticket string or its parts that do not parse; the message says what is wrong."""


class InvalidHash(I6PError, ValueError):
    """A blob hash that is not 64 hex characters."""


class InvalidCode(I6PError, ValueError):
    """A close, reset or stop code that is reserved for i6p (1-15) or out of range (close:
    above 2^32 - 1; reset and stop: above 2^62 - 1, QUIC's largest), or negative."""


class InvalidArgument(I6PError, ValueError):
    """A value given to i6p is out of range or not one it knows (an option, a timeout, a
    byte range, a blob this node does not serve); the message names it."""


class MissingExtra(I6PError, ImportError):
    """A feature needs an optional part of the package that is not installed (the benchmark
    report's plots need ``pip install 'i6p[plot]'``); the message says what to install."""


class HandshakeError(I6PError):
    """The QUIC/TLS handshake or the HELLO exchange did not complete."""


class PeerIdMismatch(HandshakeError):
    """The peer at the dialed address proved a different identity than the one asked for.

    Raised before any application byte is exchanged.
    """

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        #: The PeerId the dialer asked for (hex).
        self.expected = expected
        #: The PeerId the remote key hashes to (hex).
        self.actual = actual


class Unreachable(HandshakeError):
    """The peer could not be reached: the network answered the dial with an ICMP port, host
    or network unreachable (reported at once, not at the handshake timeout), or a session
    returned in 0-RTT never heard from its peer. The message names the peer, the address
    and the cause."""


class PeerNotFound(Unreachable):
    """No address is known for the peer (``connect`` was given none, and the address book
    has none): give one, or meet the peer once so the book learns where it is."""


class RelayRefused(HandshakeError):
    """A relay, or the target through it, refused a circuit (``Node.connect_relayed``).

    ``reason`` says which: ``"not a relay"`` (the node did not opt in with ``relay=True``),
    ``"target not connected to the relay"``, ``"relay limit reached"`` (its circuits per
    node or per peer), ``"target refused"`` (the target takes no more relayed sessions), or
    ``"bad request"``. A circuit a relay ends at its byte or duration bound later ends the
    relayed session with ``ConnectionLost`` code 13 (RELAY_LIMIT) instead."""

    def __init__(self, message: str, reason: str = "", detail: str = "") -> None:
        super().__init__(message)
        #: Which refusal (see the class's doc).
        self.reason = reason
        #: The refusing side's words.
        self.detail = detail


class CoordinationRefused(HandshakeError):
    """A coordinator (``connect(peer, via=...)``) refused to introduce this node to the peer:
    it does not coordinate (``coordinate=False``), has no live session with the peer, or is
    at its limit of introductions. The message says which."""


class Timeout(I6PError, TimeoutError):
    """A wait the caller bounded ran out (``Session.ping(timeout=...)``); the session goes
    on. A session ended for silence raises ``ConnectionLost`` with code 8 instead."""


class ConnectionLost(I6PError):
    """The session ended: closed by either side, timed out, or the node closed."""

    def __init__(self, message: str, code: int = 0, reason: str = "", by_peer: bool = False):
        super().__init__(message)
        #: The close code (0 = normal close, 3 = node closed, 8 = timed out: the peer was
        #: silent for the idle timeout or the session's liveness period).
        self.code = code
        #: The reason given by whoever closed, or a description of the failure.
        self.reason = reason
        #: True when the peer ended the session.
        self.by_peer = by_peer


class ProtocolError(I6PError):
    """The peer sent something the protocol does not allow."""


class InvalidCollection(ProtocolError):
    """A provider's collection listing breaks the rules (a path that is absolute, has ``..``
    or empty components, a control character or a backslash, a path listed twice, a file
    that is also a directory, over the bounds). Refused before anything is written."""


class NodeClosed(ConnectionLost):
    """The node has been closed: raised by every operation on it, and by those of its
    sessions and streams (for which it is the ``ConnectionLost`` that ended them). ``code`` is
    3, the close code a closing node sends its peers."""

    def __init__(
        self, message: str = "node is closed", code: int = 3, reason: str = "node closed"
    ) -> None:
        super().__init__(message, code, reason, by_peer=False)


class StreamError(I6PError):
    """A stream operation failed (ended early, over a limit, already finished)."""


class StreamReset(StreamError):
    """The peer reset (or stopped) the stream with an application code."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        #: The peer's application error code.
        self.code = code


class StreamTooLong(StreamError):
    """``read()`` to the end found more than its ``limit``, or ``readuntil``/``readline``
    found no separator within theirs; what arrived stays readable.

    Pass a larger ``limit=...``, or read the stream in chunks (``async for``).
    """

    def __init__(self, message: str, limit: int = 0) -> None:
        super().__init__(message)
        #: The limit the stream went past, in bytes.
        self.limit = limit


class IncompleteRead(StreamError):
    """The stream ended before ``readuntil`` found its separator (as asyncio's
    ``IncompleteReadError``): the bytes that did arrive are ``partial``, taken off the stream."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        #: The bytes read before the end of the stream.
        self.partial = partial


class IntegrityError(I6PError):
    """A provider kept serving data that does not match the blob's hash.

    Nothing unverified was written; the partial download stays resumable from another provider.
    """

    def __init__(self, message: str, provider: str = "", failures: int = 0, detail: str = ""):
        super().__init__(message)
        #: PeerId (hex) of the provider that served the bad data.
        self.provider = provider
        #: How many chunk groups failed verification.
        self.failures = failures
        #: The last failure, in words.
        self.detail = detail


class TransferRefused(I6PError):
    """The provider refused the request (forbidden, unavailable, bad request)."""

    def __init__(self, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        #: The provider's error code.
        self.code = code
        #: The provider's message.
        self.reason = reason


class BlobNotFound(TransferRefused):
    """The provider does not have the requested blob."""


class SourceChanged(TransferRefused):
    """The provider's source file changed (edited, replaced or deleted) since it was added,
    so the provider no longer serves that blob. It is the provider's file, not the data in
    transit: asking the provider to add the file again gives a new hash and ticket."""


class ErasureError(I6PError, ValueError):
    """Erasure coding was given parameters or shards it cannot work with: shard counts outside
    1..256, too few shards left to rebuild, shards of different lengths, or a size larger than
    the shards hold."""


class TransportError(I6PError, OSError):
    """The operating system refused a socket operation (bind, send)."""


class FileError(I6PError, OSError):
    """A file operation failed: an ``OSError`` with ``errno``, ``strerror`` and ``filename``
    (the path involved), and ``context``, what i6p was doing.

    Like ``OSError``, ``FileError(errno, ...)`` makes the subclass for ``errno``, each also
    the builtin one: ``FileNotFound`` (``FileNotFoundError``), ``PermissionDenied``
    (``PermissionError``), ``NotADirectory``, ``IsADirectory``, ``FileExists``, ``DiskFull``
    (ENOSPC, EDQUOT); others stay ``FileError``.
    """

    def __new__(
        cls, errno: int | None, strerror: str, filename: str | None = None, context: str = ""
    ) -> FileError:
        if cls is FileError and errno is not None:
            cls = _BY_ERRNO.get(errno, FileError)
        return super().__new__(cls, errno, strerror, filename)

    def __init__(
        self, errno: int | None, strerror: str, filename: str | None = None, context: str = ""
    ) -> None:
        super().__init__(errno, strerror, filename)
        #: What i6p was doing, e.g. "cannot open the partial download".
        self.context = context

    def __str__(self) -> str:
        if self.errno is None:  # no errno: OSError would print "[Errno None]"
            words = self.strerror or ""
            text = words if self.filename is None else f"{words}: {self.filename!r}"
        else:
            text = super().__str__()
        return f"{self.context}: {text}" if self.context else text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errno, self.strerror, self.filename, self.context))

    @classmethod
    def of(cls, e: OSError, context: str = "") -> FileError:
        """The ``FileError`` for an ``OSError`` raised by Python's own file functions."""
        filename = None if e.filename is None else str(e.filename)
        return FileError(e.errno, e.strerror or str(e), filename, context)


class FileNotFound(FileError, FileNotFoundError):
    """A file or directory does not exist (ENOENT): a source given to ``add_path``, a
    destination's directory, a key file."""


class PermissionDenied(FileError, PermissionError):
    """The operating system, or i6p's own checks, refused access to a file (EACCES, EPERM):
    an unreadable source, an unwritable destination directory, a symbolic link or another
    user's file planted beside a destination."""


class NotADirectory(FileError, NotADirectoryError):
    """A path that should go through a directory goes through a file (ENOTDIR)."""


class IsADirectory(FileError, IsADirectoryError):
    """A directory where a file is needed (EISDIR): ``add_path`` of a directory."""


class DiskFull(FileError):
    """The destination's file system is full (ENOSPC) or the user's quota is used up (EDQUOT);
    the partial download stays resumable."""


class FileExists(FileError, FileExistsError):
    """A file is in the way (EEXIST)."""


class DestinationExists(FileExists):
    """The destination file exists and ``overwrite=True`` was not given."""


class InsecureKeyFile(PermissionDenied):
    """A key file is readable or writable by group or others; it is not loaded (EACCES)."""


_BY_ERRNO: dict[int, type[FileError]] = {
    _errno.ENOENT: FileNotFound,
    _errno.EACCES: PermissionDenied,
    _errno.EPERM: PermissionDenied,
    _errno.ENOTDIR: NotADirectory,
    _errno.EISDIR: IsADirectory,
    _errno.EEXIST: FileExists,
    _errno.ENOSPC: DiskFull,
    _errno.EDQUOT: DiskFull,
}


class DialBackRefused(I6PError):
    """A dial-back (``Session.dial_back``) was refused: by the peer, because the request named
    an IP other than the one it observes for us, or it is busy, or it cannot dial that
    address; or by this node, because one with that peer is already running."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        #: Why, as a stable name: "other_ip", "busy" or "unsupported".
        self.reason = reason
