//! The control messages after HELLO: PEER_INFO, PING/PONG and CLOSE.

use crate::error::Result;
use crate::wire::{put_socket_addr, put_string, Reader};
use std::net::SocketAddr;

/// The longest CLOSE reason, in bytes of UTF-8.
pub const MAX_CLOSE_REASON: usize = 1024;

/// PEER_INFO: the address at which the sender sees the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The receiver's address as observed by the sender.
    pub observed_addr: SocketAddr,
}

impl PeerInfo {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(23);
        put_socket_addr(&mut out, &self.observed_addr);
        out
    }

    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "peer_info");
        let observed_addr = r.socket_addr()?;
        r.finish()?;
        Ok(Self { observed_addr })
    }
}

/// PING and PONG share one payload: a nonce the PONG echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Chosen by the pinger, echoed by the ponger.
    pub nonce: u64,
}

impl Ping {
    /// Encodes the payload.
    pub fn encode(&self) -> [u8; 8] {
        self.nonce.to_be_bytes()
    }

    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "ping");
        let nonce = r.u64()?;
        r.finish()?;
        Ok(Self { nonce })
    }
}

/// CLOSE: the sender is about to close the connection with this code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Application close code (0 = normal).
    pub code: u32,
    /// Human-readable reason, at most [`MAX_CLOSE_REASON`] bytes.
    pub reason: String,
}

impl Close {
    /// Encodes the payload; a reason over the limit is cut at a character boundary.
    pub fn encode(&self) -> Vec<u8> {
        let reason = truncate_utf8(&self.reason, MAX_CLOSE_REASON);
        let mut out = Vec::with_capacity(6 + reason.len());
        out.extend_from_slice(&self.code.to_be_bytes());
        put_string(&mut out, reason, 2);
        out
    }

    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "close");
        let code = r.u32()?;
        let reason = r.string(2, MAX_CLOSE_REASON)?;
        r.finish()?;
        Ok(Self { code, reason })
    }
}

/// The longest prefix of `s` that fits in `max` bytes without splitting a character.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let p = PeerInfo {
            observed_addr: "[2001:db8::1]:443".parse().unwrap(),
        };
        assert_eq!(PeerInfo::decode(&p.encode()).unwrap(), p);
        let ping = Ping {
            nonce: u64::MAX - 3,
        };
        assert_eq!(Ping::decode(&ping.encode()).unwrap(), ping);
        let c = Close {
            code: 7,
            reason: "bye".into(),
        };
        assert_eq!(Close::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let c = Close {
            code: 1,
            reason: "é".repeat(600),
        };
        let back = Close::decode(&c.encode()).unwrap();
        assert_eq!(back.reason.len(), 1024);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert!(PeerInfo::decode(&[5, 0, 0]).is_err());
        assert!(PeerInfo::decode(&[4, 1, 2, 3]).is_err());
        assert!(Ping::decode(&[0; 7]).is_err());
        assert!(Ping::decode(&[0; 9]).is_err());
        assert!(Close::decode(&[0, 0, 0, 1, 0xff, 0xff]).is_err());
        assert!(Close::decode(&[0, 0, 0, 1, 0, 2, 0xc3, 0x28]).is_err());
    }
}
