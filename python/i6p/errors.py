"""Exceptions raised by i6p.

Every failure the engine reports arrives as one of these classes (the Rust extension imports
them from here), so applications catch ``i6p.errors.*`` and never engine internals.
"""

from __future__ import annotations

__all__ = [
    "BlobNotFound",
    "ConnectionLost",
    "DestinationExists",
    "DiskFull",
    "ErasureError",
    "HandshakeError",
    "I6PError",
    "IncompleteRead",
    "InsecureKeyFile",
    "IntegrityError",
    "InvalidAddress",
    "InvalidCode",
    "InvalidCollection",
    "InvalidHash",
    "InvalidKey",
    "InvalidPeerId",
    "InvalidTicket",
    "NodeClosed",
    "PeerIdMismatch",
    "ProtocolError",
    "SourceChanged",
    "StreamError",
    "StreamReset",
    "StreamTooLong",
    "TransferRefused",
    "TransportError",
]


class I6PError(Exception):
    """Base class of every i6p error."""


class InsecureKeyFile(I6PError, PermissionError):
    """A key file is readable or writable by group or others; it is not loaded."""


class InvalidKey(I6PError, ValueError):
    """A key file or key bytes are not a usable Ed25519 private key."""


class InvalidAddress(I6PError, ValueError):
    """An address string could not be parsed or resolved."""


class InvalidPeerId(I6PError, ValueError):
    """A peer id that is not 64 hex characters (or 32 bytes, or a 32-byte public key)."""


class InvalidTicket(I6PError, ValueError):
    """A ticket string or its parts that do not parse; the message says what is wrong."""


class InvalidHash(I6PError, ValueError):
    """A blob hash that is not 64 hex characters."""


class InvalidCode(I6PError, ValueError):
    """A close, reset or stop code that is reserved for i6p (1-15) or out of range (close:
    above 2^32 - 1; reset and stop: above 2^62 - 1, QUIC's largest), or negative."""


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


class ConnectionLost(I6PError):
    """The session ended: closed by either side, timed out, or the node closed."""

    def __init__(self, message: str, code: int = 0, reason: str = "", by_peer: bool = False):
        super().__init__(message)
        #: The close code (0 = normal close).
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


class NodeClosed(I6PError):
    """The node has been closed."""


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


class DiskFull(I6PError, OSError):
    """The destination's file system is full; the partial download stays resumable."""


class DestinationExists(I6PError, FileExistsError):
    """The destination file exists and ``overwrite=True`` was not given."""


class ErasureError(I6PError, ValueError):
    """Erasure coding was given parameters or shards it cannot work with: shard counts outside
    1..256, too few shards left to rebuild, shards of different lengths, or a size larger than
    the shards hold."""


class TransportError(I6PError, OSError):
    """The operating system refused a socket operation (bind, send)."""
