//! The error type of the networking crate.

use i6p_core::{CoreError, PeerId};
use thiserror::Error;

/// Result alias for the networking crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Everything that can go wrong on a node, a session or a stream.
#[derive(Debug, Error, Clone)]
pub enum NetError {
    /// The peer at the dialed address proved a different identity than the one asked for.
    #[error("peer id mismatch: expected {expected}, the peer at that address is {actual}")]
    PeerIdMismatch {
        /// The PeerId the dialer asked for.
        expected: PeerId,
        /// The PeerId the remote certificate hashes to.
        actual: PeerId,
    },
    /// The session ended; `code` and `reason` say why and who ended it.
    #[error("connection lost: {reason} (code {code})")]
    ConnectionLost {
        /// The application close code (0 = normal), or a transport-level code.
        code: u64,
        /// Why, in words.
        reason: String,
        /// True when the peer (not this node) ended the session.
        by_peer: bool,
    },
    /// The peer broke the protocol (malformed, oversized or unauthenticated frames).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The QUIC or TLS handshake failed, or timed out.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer refused the connection before any handshake work: it is at its limit of
    /// connections or handshakes in progress (see `Limits`). A later dial may succeed.
    #[error("handshake failed: {0}")]
    Busy(String),
    /// Local TLS or certificate setup failed.
    #[error("tls: {0}")]
    Tls(String),
    /// A configuration value is out of range or unknown.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An address string could not be parsed.
    #[error("invalid address {0}")]
    InvalidAddress(String),
    /// The node has been closed.
    #[error("node is closed")]
    NodeClosed,
    /// The stream was reset or stopped by the peer.
    #[error("stream reset by peer (code {0})")]
    StreamReset(u64),
    /// A read exceeded the caller's limit, or a stream ended early.
    #[error("{0}")]
    Stream(String),
    /// A read to the end of a stream found more than the caller's limit (in bytes); what
    /// arrived stays readable.
    #[error("stream exceeds the read limit of {0} bytes")]
    ReadLimit(usize),
    /// A provider kept serving data that does not match the blob's hash.
    #[error("integrity error: provider {provider} served {failures} chunk groups that failed verification ({detail})")]
    Integrity {
        /// The provider that served the bad data.
        provider: PeerId,
        /// How many groups failed.
        failures: u32,
        /// The last failure, in words.
        detail: String,
    },
    /// The provider refused the request.
    #[error("provider refused: {message}")]
    Refused {
        /// The provider's error code (1 not found, 2 forbidden, 3 unavailable, 4 bad request,
        /// 5 busy).
        code: u16,
        /// The provider's message.
        message: String,
    },
    /// The destination's file system is full; the partial download stays resumable.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// The destination exists and overwriting was not asked for.
    #[error("{0} already exists (pass overwrite=True to replace it)")]
    DestinationExists(String),
    /// An operating-system error.
    #[error("i/o error: {0}")]
    Io(String),
    /// A decoding or key error from the core.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<std::io::Error> for NetError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}
