//! Named codes of the wire protocol, in one place: close codes (QUIC application error codes
//! of CONNECTION_CLOSE and CLOSE), stream reset and stop codes, and the refusal codes of an
//! ERROR frame ([`ErrorCode`]).
//!
//! Close codes and reset codes are separate QUIC number spaces, but I6P uses the shared
//! values (5, 6, 7) with the same meaning in both; the tests below check that no two names in
//! one space share a number unless they mean the same thing on purpose.

/// Normal close; also the stop code of a requester that no longer needs a stream's data.
pub const NORMAL: u32 = 0;
/// The peer broke the protocol.
pub const PROTOCOL_ERROR: u32 = 1;
/// The handshake (TLS or HELLO) did not complete in time.
pub const HANDSHAKE_TIMEOUT: u32 = 2;
/// The node is shutting down.
pub const NODE_CLOSED: u32 = 3;
/// The peer's protocol version is not supported.
pub const UNSUPPORTED_VERSION: u32 = 4;
/// Stream reset code: the stream's kind byte names no kind the node has a handler for.
pub const UNKNOWN_STREAM_KIND: u32 = 5;
/// Close or stream reset code: the node is at a resource limit (see `Limits`); try again
/// later.
pub const BUSY: u32 = 6;
/// Stream reset code: the requester took no data for the request's send timeout.
pub const SEND_TIMEOUT: u32 = 7;
/// Close code: the peer was silent for longer than the session allows (QUIC's idle timeout,
/// or the session's liveness period), so the session was ended locally.
pub const TIMED_OUT: u32 = 8;
/// Close or stream reset code: the application abandoned the session or stream: dropped
/// its last object, or left its `async with` by an exception, without closing (finishing)
/// it. A partial reply so ended reads as an error at the peer, never as a clean end.
pub const ABANDONED: u32 = 9;
/// Close code: a dial-back connection did its job (its TLS handshake completed) and ends;
/// it never becomes a session.
pub const DIAL_BACK: u32 = 10;
/// Close or stream reset code: a relay ended the circuit at one of its bounds (bytes or
/// duration per circuit); the relayed session over it ends with this code.
pub const RELAY_LIMIT: u32 = 13;
/// Stream reset code: the relay or the target refused the circuit (CIRCUIT_REFUSED says why).
pub const RELAY_REFUSED: u32 = 14;
/// Close code: another session of the same pair of peers is the primary one (see the
/// one-session-per-pair rule in docs/PROTOCOL.md); this one closed once its streams ended.
pub const DUPLICATE: u32 = 11;
/// Stream reset code of a COORD stream: the coordinator or the target refused or ended the
/// introduction (the REFUSE frame before it, if any, says why).
pub const COORD_REFUSED: u32 = 12;
/// Codes below this value are reserved for I6P itself (except 0).
pub const FIRST_APPLICATION_CODE: u32 = 16;
/// The largest stream reset or stop code: QUIC's largest variable-length integer.
pub const MAX_RESET_CODE: u64 = (1 << 62) - 1;
/// The largest close code: the CLOSE frame carries it in 32 bits.
pub const MAX_CLOSE_CODE: u64 = u32::MAX as u64;

/// Stream reset code: the provider cannot read the blob now (as ERROR [`ErrorCode::Unavailable`]).
pub const RESET_UNAVAILABLE: u32 = ErrorCode::Unavailable as u32;
/// Stream reset code: the request asked for something the blob does not have (as ERROR
/// [`ErrorCode::BadRequest`]).
pub const RESET_BAD_REQUEST: u32 = ErrorCode::BadRequest as u32;

/// Every close code, with its meaning's short name.
pub const CLOSE_CODES: &[(u32, &str)] = &[
    (NORMAL, "NORMAL"),
    (PROTOCOL_ERROR, "PROTOCOL_ERROR"),
    (HANDSHAKE_TIMEOUT, "HANDSHAKE_TIMEOUT"),
    (NODE_CLOSED, "NODE_CLOSED"),
    (UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION"),
    (UNKNOWN_STREAM_KIND, "UNKNOWN_STREAM_KIND"),
    (BUSY, "BUSY"),
    (SEND_TIMEOUT, "SEND_TIMEOUT"),
    (TIMED_OUT, "TIMED_OUT"),
    (ABANDONED, "ABANDONED"),
    (DIAL_BACK, "DIAL_BACK"),
    (RELAY_LIMIT, "RELAY_LIMIT"),
    (DUPLICATE, "DUPLICATE"),
];

/// Every stream reset or stop code, with its meaning's short name.
pub const RESET_CODES: &[(u32, &str)] = &[
    (NORMAL, "NORMAL"),
    (RESET_UNAVAILABLE, "UNAVAILABLE"),
    (RESET_BAD_REQUEST, "BAD_REQUEST"),
    (UNKNOWN_STREAM_KIND, "UNKNOWN_STREAM_KIND"),
    (BUSY, "BUSY"),
    (SEND_TIMEOUT, "SEND_TIMEOUT"),
    (ABANDONED, "ABANDONED"),
    (RELAY_LIMIT, "RELAY_LIMIT"),
    (RELAY_REFUSED, "RELAY_REFUSED"),
    (COORD_REFUSED, "COORD_REFUSED"),
];

/// Why a provider refused a GET: the code of an ERROR frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// The provider does not have this blob.
    NotFound = 1,
    /// The requester is not on the provider's allow-list.
    Forbidden = 2,
    /// The provider has the blob but cannot read it now.
    Unavailable = 3,
    /// The request was malformed or asked for groups beyond the blob.
    BadRequest = 4,
    /// The provider is serving as many requests as its limits allow (for the node, or for
    /// this requester); a later request may succeed.
    Busy = 5,
    /// The provider's source of the blob changed (edited, replaced or deleted) since it was
    /// added; the provider no longer serves it.
    SourceChanged = 6,
}

impl ErrorCode {
    /// Every refusal code, in wire order.
    pub const ALL: [Self; 6] = [
        Self::NotFound,
        Self::Forbidden,
        Self::Unavailable,
        Self::BadRequest,
        Self::Busy,
        Self::SourceChanged,
    ];

    /// The code for a wire value (unknown values read as `Unavailable`).
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => Self::NotFound,
            2 => Self::Forbidden,
            4 => Self::BadRequest,
            5 => Self::Busy,
            6 => Self::SourceChanged,
            _ => Self::Unavailable,
        }
    }

    /// Whether a requester may ask again later (the provider is busy or cannot read now).
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Unavailable | Self::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn assert_unique(space: &str, table: &[(u32, &str)]) {
        let mut seen: HashMap<u32, &str> = HashMap::new();
        for &(code, name) in table {
            if let Some(other) = seen.insert(code, name) {
                panic!("{space}: {name} and {other} share the code {code}");
            }
        }
    }

    #[test]
    fn no_two_codes_of_one_space_share_a_number() {
        assert_unique("close codes", CLOSE_CODES);
        assert_unique("reset codes", RESET_CODES);
        assert!(CLOSE_CODES.iter().all(|&(c, _)| c < FIRST_APPLICATION_CODE));
        assert!(RESET_CODES.iter().all(|&(c, _)| c < FIRST_APPLICATION_CODE));
    }

    #[test]
    fn refusal_codes_read_back_as_themselves() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code as u16), code);
        }
        assert_eq!(ErrorCode::from_u16(99), ErrorCode::Unavailable);
    }
}
