//! The error type of the networking crate.
//!
//! Errors that have a cause keep it as a typed source (`#[source]`/`#[from]`): a peer's frame
//! that does not decode is [`NetError::BadFrame`] with the [`CoreError`] inside, an
//! operating-system failure is [`NetError::Os`] with the `io::Error` inside. `NetError` is
//! `Clone` (a session's failure is handed to every caller), so an `io::Error` is held in an
//! `Arc`. A failed file operation is [`NetError::File`], with the path and the operating
//! system's error, so Python gets an `OSError` with `errno` and `filename`.

use i6p_core::{CoreError, PeerId};
use quinn::ConnectionError;
use std::io;
use std::path::{Path, PathBuf};
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
    /// No discovery source knows an address for the peer.
    #[error("{0}")]
    NotFound(String),
    /// A coordinator (or the target it asked) refused to introduce this node to a peer:
    /// coordination is off there, it has no session with the peer, or it is at a limit.
    #[error("coordination refused: {0}")]
    CoordinationRefused(String),
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
    /// A file operation failed: what was being done, on which path, and the operating
    /// system's error (a full disk is ENOSPC or EDQUOT; the partial download stays resumable).
    #[error("{what} {}: {source}", path.display())]
    File {
        /// What was being done, e.g. "cannot open the partial download".
        what: String,
        /// The file or directory at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
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
    /// A dial-back was refused, by the helper or (one already running with that peer, or
    /// at the node's limit) by this node. `reason` is "other_ip", "busy" or "unsupported".
    #[error("dial-back refused ({reason}): {message}")]
    DialBackRefused {
        /// Why, as a stable name.
        reason: &'static str,
        /// Why, in words.
        message: String,
    },
    /// A relay, or the target through it, refused a circuit; the reason says which.
    #[error("relay refused the circuit: {}: {message}", reason.name())]
    RelayRefused {
        /// Why (not a relay, target not connected, relay limit, target refused, bad request).
        reason: i6p_core::relay::RefusalReason,
        /// The refusing side's words.
        message: String,
    },
    /// A decoding or key error from the core.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<std::io::Error> for NetError {
    fn from(e: std::io::Error) -> Self {
        Self::Os(Arc::new(e))
    }
}

impl NetError {
    /// A failed file operation: `what` was being done on `path` (or on the path the storage
    /// layer's error names, which is more precise).
    pub fn file(what: impl Into<String>, path: &Path, e: io::Error) -> Self {
        let (path, source) = crate::storage::split_path_error(e, path);
        Self::File {
            what: what.into(),
            path,
            source: Arc::new(source),
        }
    }

    /// For a file error: its errno (the operating system's, or the one its kind stands for)
    /// and its words, as Python's `OSError` has them (`strerror`).
    pub fn os_error(&self) -> Option<(i32, String)> {
        let Self::File { source, .. } = self else {
            return None;
        };
        let errno = match source.raw_os_error() {
            Some(code) => nix::errno::Errno::from_raw(code),
            None => errno_of(source.kind()),
        };
        Some((errno as i32, strerror_of(source, errno)))
    }

    /// True for a full disk or a used-up quota.
    pub fn is_disk_full(&self) -> bool {
        use nix::errno::Errno;
        let full = [Errno::ENOSPC as i32, Errno::EDQUOT as i32];
        self.os_error()
            .is_some_and(|(code, _)| full.contains(&code))
    }
}

/// The errno an error of `kind` without one stands for.
fn errno_of(kind: io::ErrorKind) -> nix::errno::Errno {
    use io::ErrorKind as K;
    use nix::errno::Errno as E;
    match kind {
        K::NotFound => E::ENOENT,
        K::PermissionDenied => E::EACCES,
        K::AlreadyExists => E::EEXIST,
        K::NotADirectory => E::ENOTDIR,
        K::IsADirectory => E::EISDIR,
        K::StorageFull => E::ENOSPC,
        K::ReadOnlyFilesystem => E::EROFS,
        K::ResourceBusy | K::WouldBlock => E::EBUSY,
        K::InvalidInput => E::EINVAL,
        _ => E::EIO,
    }
}

/// The words of an error: the operating system's for its errno, unless it has its own message
/// (a refusal's reason, without the path, which Python shows as `filename`).
fn strerror_of(e: &io::Error, errno: nix::errno::Errno) -> String {
    if let Some(refused) = crate::storage::UnsafeFile::of(e) {
        return format!("refused: {}", refused.reason);
    }
    match e.get_ref() {
        Some(message) if e.raw_os_error().is_none() => message.to_string(),
        _ => errno.desc().to_string(),
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
    fn file_errors_read_as_python_os_errors() {
        let at = Path::new("/x/dest");
        let os = |e: io::Error| NetError::file("cannot", at, e).os_error();
        let enoent = io::Error::from_raw_os_error(2);
        assert_eq!(os(enoent), Some((2, "No such file or directory".into())));
        // Without an errno: the one its kind stands for, in the system's words...
        let kind = io::Error::from(io::ErrorKind::IsADirectory);
        assert_eq!(os(kind), Some((21, "Is a directory".into())));
        // ...unless it says something of its own.
        let busy = io::Error::new(io::ErrorKind::ResourceBusy, "another fetch is writing");
        assert_eq!(os(busy), Some((16, "another fetch is writing".into())));
        let full = NetError::file("cannot write", at, io::Error::from_raw_os_error(28));
        assert!(full.is_disk_full() && full.to_string().starts_with("cannot write /x/dest: "));
        assert_eq!(NetError::NodeClosed.os_error(), None);
    }

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
