//! One conversion from engine errors to the exception classes of `i6p.errors`.
//!
//! The classes are defined in Python and imported lazily, so errors can be built on engine
//! threads without the GIL and raised later where it is held.

use i6p_core::codes::{self, ErrorCode};
use i6p_core::CoreError;
use i6p_net::NetError;
use pyo3::PyErr;

mod py {
    pyo3::import_exception!(i6p.errors, PeerIdMismatch);
    pyo3::import_exception!(i6p.errors, ConnectionLost);
    pyo3::import_exception!(i6p.errors, ProtocolError);
    pyo3::import_exception!(i6p.errors, HandshakeError);
    pyo3::import_exception!(i6p.errors, NodeClosed);
    pyo3::import_exception!(i6p.errors, StreamReset);
    pyo3::import_exception!(i6p.errors, StreamError);
    pyo3::import_exception!(i6p.errors, StreamTooLong);
    pyo3::import_exception!(i6p.errors, InvalidAddress);
    pyo3::import_exception!(i6p.errors, InvalidKey);
    pyo3::import_exception!(i6p.errors, PeerNotFound);
    pyo3::import_exception!(i6p.errors, InvalidPeerId);
    pyo3::import_exception!(i6p.errors, InvalidTicket);
    pyo3::import_exception!(i6p.errors, InvalidHash);
    pyo3::import_exception!(i6p.errors, TransportError);
    pyo3::import_exception!(i6p.errors, IntegrityError);
    pyo3::import_exception!(i6p.errors, FileError);
    pyo3::import_exception!(i6p.errors, InvalidArgument);
    pyo3::import_exception!(i6p.errors, BlobNotFound);
    pyo3::import_exception!(i6p.errors, TransferRefused);
    pyo3::import_exception!(i6p.errors, SourceChanged);
    pyo3::import_exception!(i6p.errors, DestinationExists);
    pyo3::import_exception!(i6p.errors, ErasureError);
    pyo3::import_exception!(i6p.errors, InvalidCode);
    pyo3::import_exception!(i6p.errors, IncompleteRead);
    pyo3::import_exception!(i6p.errors, Unreachable);
    pyo3::import_exception!(i6p.errors, Timeout);
    pyo3::import_exception!(i6p.errors, DialBackRefused);
    pyo3::import_exception!(i6p.errors, RelayRefused);
    pyo3::import_exception!(i6p.errors, CoordinationRefused);
}

/// The Python exception for an engine error.
pub(crate) fn to_py(e: NetError) -> PyErr {
    let msg = e.to_string();
    match e {
        NetError::PeerIdMismatch { expected, actual } => {
            py::PeerIdMismatch::new_err((msg, expected.to_string(), actual.to_string()))
        }
        // The session ended because this side's node closed: what ended it is the node.
        NetError::ConnectionLost {
            code,
            reason,
            by_peer: false,
        } if code == u64::from(codes::NODE_CLOSED) => py::NodeClosed::new_err((msg, code, reason)),
        NetError::ConnectionLost {
            code,
            reason,
            by_peer,
        } => py::ConnectionLost::new_err((msg, code, reason, by_peer)),
        NetError::Protocol(_) | NetError::BadFrame(_) => py::ProtocolError::new_err(msg),
        NetError::Handshake(_) | NetError::Busy(_) | NetError::Tls(_) => {
            py::HandshakeError::new_err(msg)
        }
        NetError::InvalidAddress(_) => py::InvalidAddress::new_err(msg),
        NetError::Unreachable(_) => py::Unreachable::new_err(msg),
        NetError::NotFound(_) => py::PeerNotFound::new_err(msg),
        NetError::CoordinationRefused(_) => py::CoordinationRefused::new_err(msg),
        NetError::Timeout(_) => py::Timeout::new_err(msg),
        NetError::DialBackRefused { reason, .. } => py::DialBackRefused::new_err((msg, reason)),
        NetError::OwnPeerId(_) => py::InvalidPeerId::new_err(msg),
        NetError::Config(_) | NetError::BadRange(_) => py::InvalidArgument::new_err(msg),
        NetError::NodeClosed => py::NodeClosed::new_err(msg),
        NetError::StreamReset(code) => py::StreamReset::new_err((msg, code)),
        NetError::Stream(_) => py::StreamError::new_err(msg),
        NetError::ReadLimit(limit) => py::StreamTooLong::new_err((
            format!(
                "{msg}: pass read(-1, limit=...) to accept more, or read it in chunks \
                 (async for chunk in stream)"
            ),
            limit,
        )),
        NetError::Io(_) | NetError::Os(_) | NetError::Incomplete(_) => {
            py::TransportError::new_err(msg)
        }
        NetError::Core(c) => core_to_py(c),
        NetError::Integrity {
            provider,
            failures,
            detail,
        } => py::IntegrityError::new_err((msg, provider.to_string(), failures, detail)),
        NetError::Refused { code, message } if code == ErrorCode::NotFound as u16 => {
            py::BlobNotFound::new_err((msg, code, message))
        }
        NetError::Refused { code, message } if code == ErrorCode::SourceChanged as u16 => {
            py::SourceChanged::new_err((msg, code, message))
        }
        NetError::Refused { code, message } => py::TransferRefused::new_err((msg, code, message)),
        NetError::File { .. } => file_error(&e),
        NetError::RelayRefused { reason, message } => {
            py::RelayRefused::new_err((msg, reason.name(), message))
        }
        NetError::DestinationExists(path) => py::DestinationExists::new_err((
            EEXIST,
            "exists; pass overwrite=True to replace it",
            path,
        )),
    }
}

/// errno of "File exists" (the same on every Unix).
const EEXIST: i32 = 17;

/// A file error as an `i6p.errors.FileError`, which picks its subclass by errno the way
/// `OSError` does (`FileNotFound`, `PermissionDenied`, `DiskFull`...).
fn file_error(e: &NetError) -> PyErr {
    let (NetError::File { what, path, .. }, Some((errno, strerror))) = (e, e.os_error()) else {
        return py::TransportError::new_err(e.to_string());
    };
    let path = path.to_string_lossy().into_owned();
    py::FileError::new_err((errno, strerror, path, what.clone()))
}

/// A caller's value that is out of range or unknown (also a `ValueError`).
pub(crate) fn invalid_argument(message: impl Into<String>) -> PyErr {
    py::InvalidArgument::new_err(message.into())
}

/// The Python exception for a core (decoding or key) error.
pub(crate) fn core_to_py(e: CoreError) -> PyErr {
    match e {
        CoreError::InvalidPeerId(_) => py::InvalidPeerId::new_err(e.to_string()),
        CoreError::InvalidKey(_) => py::InvalidKey::new_err(e.to_string()),
        CoreError::InvalidErasureParams { .. }
        | CoreError::TooFewShards { .. }
        | CoreError::ShardCount { .. }
        | CoreError::ShardSize { .. }
        | CoreError::StripeSize { .. }
        | CoreError::UnsupportedCpu(_)
        | CoreError::Malformed { what: "stripe", .. } => py::ErasureError::new_err(e.to_string()),
        other => py::ProtocolError::new_err(other.to_string()),
    }
}

/// A peer id that does not parse (also a `ValueError`).
pub(crate) fn invalid_peer_id(message: String) -> PyErr {
    py::InvalidPeerId::new_err(message)
}

/// A ticket that does not parse (also a `ValueError`).
pub(crate) fn invalid_ticket(message: String) -> PyErr {
    py::InvalidTicket::new_err(message)
}

/// A blob hash that does not parse (also a `ValueError`).
pub(crate) fn invalid_hash(message: String) -> PyErr {
    py::InvalidHash::new_err(message)
}

/// An address that does not parse (also a `ValueError`).
pub(crate) fn invalid_address(message: String) -> PyErr {
    py::InvalidAddress::new_err(message)
}

/// A close, reset or stop code that is reserved or out of range (also a `ValueError`).
pub(crate) fn invalid_code(message: String) -> PyErr {
    py::InvalidCode::new_err(message)
}

/// No separator within a `readuntil` limit: a `StreamTooLong`, the bytes stay buffered.
pub(crate) fn no_separator(limit: usize) -> PyErr {
    py::StreamTooLong::new_err((
        format!(
            "no separator within the limit of {limit} bytes; what arrived stays readable \
             (pass a larger limit=..., or read it with read())"
        ),
        limit,
    ))
}

/// The stream ended before a `readuntil` separator: `IncompleteRead` with the bytes that
/// did arrive as its `partial`.
pub(crate) fn incomplete_read(partial: bytes::Bytes) -> PyErr {
    let msg = format!(
        "stream ended after {} bytes without the separator",
        partial.len()
    );
    py::IncompleteRead::new_err((msg, crate::buffers::PyBytesOut(partial)))
}
