//! Dial-back (stream kind [`STREAM_DIALBACK`]): a node asks a peer to dial it from another
//! port, to learn whether its address takes unsolicited inbound connections.
//!
//! The asker opens a DIALBACK stream and sends one DIALBACK_REQUEST naming the address to
//! dial; the helper answers one DIALBACK_RESULT and finishes. The IP a helper dials is always
//! the asker's IP as the helper observes it on that session ([`resolve_target`]): a request
//! naming another IP is refused, so nobody can aim a helper's packets at a third party. The
//! dial is a QUIC handshake that requires the asker's PeerId and is closed with
//! [`codes::DIAL_BACK`](crate::codes::DIAL_BACK) right after TLS: it never becomes a session.

use crate::error::Result;
use crate::wire::{put_socket_addr, put_string, Reader};
use std::net::{IpAddr, SocketAddr};

pub use crate::kinds::{FRAME_DIALBACK_REQUEST, FRAME_DIALBACK_RESULT, STREAM_DIALBACK};

/// The longest reason of a DIALBACK_RESULT, in bytes of UTF-8.
pub const MAX_DIALBACK_REASON: usize = 256;

/// DIALBACK_REQUEST: "dial me at `target`". An unspecified IP (`::` or `0.0.0.0`) means
/// the IP the helper observes; port 0 means the port the helper observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialBackRequest {
    /// Where the asker wants to be dialed.
    pub target: SocketAddr,
}

impl DialBackRequest {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(23);
        put_socket_addr(&mut out, &self.target);
        out
    }

    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "dialback_request");
        let target = r.socket_addr()?;
        r.finish()?;
        Ok(Self { target })
    }
}

/// What a helper did with a DIALBACK_REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DialBackOutcome {
    /// The helper completed a handshake with the asker's PeerId at the address, from a port
    /// the asker had never sent to: the address takes unsolicited inbound connections.
    Reached = 0,
    /// No handshake completed in time: a firewall or NAT filters the address (or the asker
    /// is gone).
    Unreached = 1,
    /// Refused: the request named an IP other than the one the helper observes for the
    /// asker.
    OtherIp = 2,
    /// Refused: the helper is at its limit of dial-backs (for the node, or one in flight for
    /// this asker); a later request may succeed.
    Busy = 3,
    /// Refused: the helper cannot dial that address (no socket of that family, port 0).
    Unsupported = 4,
}

impl DialBackOutcome {
    /// Every outcome, in wire order.
    pub const ALL: [Self; 5] = [
        Self::Reached,
        Self::Unreached,
        Self::OtherIp,
        Self::Busy,
        Self::Unsupported,
    ];

    /// The outcome for a wire value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|o| *o as u8 == v)
    }

    /// True when the helper actually dialed (the answer says something about reachability).
    pub fn is_answer(self) -> bool {
        matches!(self, Self::Reached | Self::Unreached)
    }
}

/// DIALBACK_RESULT: the helper's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialBackResult {
    /// What the helper did.
    pub outcome: DialBackOutcome,
    /// The address the helper dialed (or, when it refused, the asker's address as it
    /// observes it): a fresh reflection for the asker.
    pub addr: SocketAddr,
    /// Why, for people; at most [`MAX_DIALBACK_REASON`] bytes.
    pub reason: String,
}

impl DialBackResult {
    /// Encodes the payload (a longer reason is cut at a character boundary).
    pub fn encode(&self) -> Vec<u8> {
        let reason = crate::messages::truncate_utf8(&self.reason, MAX_DIALBACK_REASON);
        let mut out = Vec::with_capacity(26 + reason.len());
        out.push(self.outcome as u8);
        put_socket_addr(&mut out, &self.addr);
        put_string(&mut out, reason, 2);
        out
    }

    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "dialback_result");
        let raw = r.u8()?;
        let outcome = DialBackOutcome::from_u8(raw)
            .ok_or_else(|| r.malformed(format!("unknown outcome {raw}")))?;
        let addr = r.socket_addr()?;
        let reason = r.string(2, MAX_DIALBACK_REASON)?;
        r.finish()?;
        Ok(Self {
            outcome,
            addr,
            reason,
        })
    }
}

/// The address a helper dials for a request, given the asker's address as the helper
/// observes it on the session; the refusal when it must not dial.
///
/// The IP is always the observed one: a request may leave it unspecified or repeat it, and
/// any other IP is [`DialBackOutcome::OtherIp`]. IPv4-mapped IPv6 addresses compare as IPv4.
pub fn resolve_target(
    request: SocketAddr,
    observed: SocketAddr,
) -> std::result::Result<SocketAddr, DialBackOutcome> {
    let asked = canonical_ip(request.ip());
    let seen = canonical_ip(observed.ip());
    if !asked.is_unspecified() && asked != seen {
        return Err(DialBackOutcome::OtherIp);
    }
    let port = match request.port() {
        0 => observed.port(),
        p => p,
    };
    if port == 0 {
        return Err(DialBackOutcome::Unsupported);
    }
    let mut target = SocketAddr::new(seen, port);
    // A link-local peer is only reachable through the interface it came in on.
    if let (SocketAddr::V6(t), SocketAddr::V6(o)) = (&mut target, observed) {
        t.set_scope_id(o.scope_id());
    }
    Ok(target)
}

/// `ip` with an IPv4-mapped IPv6 address written as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CoreError;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn messages_round_trip() {
        for target in [a("[::]:0"), a("0.0.0.0:4433"), a("[2001:db8::1]:9")] {
            let req = DialBackRequest { target };
            assert_eq!(DialBackRequest::decode(&req.encode()).unwrap(), req);
        }
        for outcome in DialBackOutcome::ALL {
            let res = DialBackResult {
                outcome,
                addr: a("203.0.113.7:5000"),
                reason: "ünïcode why".into(),
            };
            assert_eq!(DialBackResult::decode(&res.encode()).unwrap(), res);
        }
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let req = DialBackRequest {
            target: a("[2001:db8::1]:9"),
        }
        .encode();
        for cut in 0..req.len() {
            assert!(DialBackRequest::decode(&req[..cut]).is_err());
        }
        let mut long = req.clone();
        long.push(0);
        assert!(DialBackRequest::decode(&long).is_err());
        let mut res = DialBackResult {
            outcome: DialBackOutcome::Busy,
            addr: a("198.51.100.1:1"),
            reason: String::new(),
        }
        .encode();
        res[0] = 9;
        assert!(matches!(
            DialBackResult::decode(&res),
            Err(CoreError::Malformed { .. })
        ));
    }

    #[test]
    fn an_overlong_reason_is_cut_when_sent_and_refused_when_received() {
        let res = DialBackResult {
            outcome: DialBackOutcome::Unreached,
            addr: a("198.51.100.1:1"),
            reason: "x".repeat(1000),
        };
        let back = DialBackResult::decode(&res.encode()).unwrap();
        assert_eq!(back.reason.len(), MAX_DIALBACK_REASON);
        let mut raw = vec![1u8];
        put_socket_addr(&mut raw, &a("198.51.100.1:1"));
        put_string(&mut raw, &"y".repeat(300), 2);
        assert!(DialBackResult::decode(&raw).is_err());
    }

    #[test]
    fn the_helper_dials_only_the_ip_it_observes() {
        let seen = a("203.0.113.9:40000");
        assert_eq!(resolve_target(a("0.0.0.0:0"), seen), Ok(seen));
        assert_eq!(resolve_target(a("[::]:0"), seen), Ok(seen));
        assert_eq!(
            resolve_target(a("203.0.113.9:4433"), seen),
            Ok(a("203.0.113.9:4433"))
        );
        assert_eq!(
            resolve_target(a("[::ffff:203.0.113.9]:4433"), seen),
            Ok(a("203.0.113.9:4433"))
        );
        assert_eq!(
            resolve_target(a("203.0.113.10:4433"), seen),
            Err(DialBackOutcome::OtherIp)
        );
        assert_eq!(
            resolve_target(a("[2001:db8::1]:4433"), seen),
            Err(DialBackOutcome::OtherIp)
        );
        let mapped_seen = a("[::ffff:203.0.113.9]:7");
        assert_eq!(
            resolve_target(a("0.0.0.0:0"), mapped_seen),
            Ok(a("203.0.113.9:7"))
        );
        assert_eq!(
            resolve_target(a("[::]:0"), a("[2001:db8::5]:0")),
            Err(DialBackOutcome::Unsupported)
        );
    }
}
