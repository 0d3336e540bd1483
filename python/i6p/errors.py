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
    "InsecureKeyFile",
    "IntegrityError",
    "InvalidAddress",
    "InvalidHash",
    "InvalidKey",
    "InvalidPeerId",
    "InvalidTicket",
    "NodeClosed",
    "PeerIdMismatch",
    "ProtocolError",
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


class InsecureKeyFile(I6PError, PermissionError):
    """A key file is readable or writable by group or others; it is not loaded."""


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
    """``read()`` to the end found more than its ``limit``; what arrived stays readable.

    Pass a larger ``read(-1, limit=...)``, or read the stream in chunks (``async for``).
    """

    def __init__(self, message: str, limit: int = 0) -> None:
        super().__init__(message)
        #: The limit the stream went past, in bytes.
        self.limit = limit


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
