//! The error type of the networking crate.
//!
//! Errors that have a cause keep it as a typed source (`#[source]`/`#[from]`): a peer's frame
//! that does not decode is [`NetError::BadFrame`] with the [`CoreError`] inside, an
//! operating-system failure is [`NetError::Os`] with the `io::Error` inside. `NetError` is
//! `Clone` (a session's failure is handed to every caller), so an `io::Error` is held in an
//! `Arc`. Messages keep their old wording, so what users read does not change.

use i6p_core::{CoreError, PeerId};
use quinn::ConnectionError;
use std::sync::Arc;
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
    /// The peer sent a frame or message that does not decode; the source says why.
    #[error("protocol error: {0}")]
    BadFrame(#[source] CoreError),
    /// The QUIC or TLS handshake failed, or timed out.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The network reported the peer's address unreachable while dialing it (an ICMP error
    /// answered), or a session returned before its handshake (0-RTT) never heard from the
    /// peer. The message names the peer, the address and the cause.
    #[error("{0}")]
    Unreachable(String),
    /// A dial named this node's own PeerId.
    #[error("cannot dial this node's own peer id {0}")]
    OwnPeerId(PeerId),
    /// A wait the caller bounded (a ping's timeout, say) ran out; the session goes on.
    #[error("{0}")]
    Timeout(String),
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
        /// The provider's error code, one of [`i6p_core::codes::ErrorCode`] (1 not found,
        /// 2 forbidden, 3 unavailable, 4 bad request, 5 busy).
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
    /// An operating-system error, described in words (no source error at hand).
    #[error("i/o error: {0}")]
    Io(String),
    /// An operating-system error (file, socket).
    #[error("i/o error: {0}")]
    Os(#[source] Arc<std::io::Error>),
    /// The caller asked for bytes outside the blob (a range or groups past its end): a
    /// mistake of the local caller, not of the peer.
    #[error("{0}")]
    BadRange(String),
    /// A fetch ended with groups of the blob neither fetched nor fetchable (every provider
    /// was dropped or gave up); the partial download stays resumable.
    #[error("fetch incomplete: {0}")]
    Incomplete(String),
    /// A decoding or key error from the core.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<std::io::Error> for NetError {
    fn from(e: std::io::Error) -> Self {
        Self::Os(Arc::new(e))
    }
}

/// Words for a QUIC connection error, as a `ConnectionLost` (or handshake) error.
pub(crate) fn describe_connection_error(e: &ConnectionError) -> NetError {
    let lost = |code: u64, reason: String, by_peer: bool| NetError::ConnectionLost {
        code,
        reason,
        by_peer,
    };
    match e {
        ConnectionError::ApplicationClosed(a) => lost(
            a.error_code.into_inner(),
            String::from_utf8_lossy(&a.reason).into_owned(),
            true,
        ),
        ConnectionError::LocallyClosed => lost(0, "closed locally".into(), false),
        ConnectionError::TimedOut => lost(
            u64::from(i6p_core::codes::TIMED_OUT),
            "timed out: the peer was silent for the idle timeout".into(),
            false,
        ),
        ConnectionError::Reset => lost(0, "connection reset by peer".into(), true),
        ConnectionError::ConnectionClosed(c) => lost(
            u64::from(c.error_code),
            format!(
                "transport closed by peer: {}",
                String::from_utf8_lossy(&c.reason)
            ),
            true,
        ),
        ConnectionError::TransportError(t) => {
            lost(u64::from(t.code), format!("transport error: {t}"), false)
        }
        ConnectionError::VersionMismatch => lost(0, "no common QUIC version".into(), false),
        ConnectionError::CidsExhausted => lost(0, "connection ids exhausted".into(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn causes_stay_typed_sources_and_messages_keep_their_wording() {
        let io = NetError::from(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "disk on fire",
        ));
        assert_eq!(io.to_string(), "i/o error: disk on fire");
        let source = io
            .source()
            .and_then(|s| s.downcast_ref::<Arc<std::io::Error>>());
        assert!(source.is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied));

        let core = CoreError::Truncated("frame");
        let frame = NetError::BadFrame(core.clone());
        assert_eq!(frame.to_string(), format!("protocol error: {core}"));
        assert!(frame
            .source()
            .and_then(|s| s.downcast_ref::<CoreError>())
            .is_some());
    }
}
