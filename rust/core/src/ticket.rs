//! Tickets: one copy-pasteable string that says where to fetch a blob and what it is.
//!
//! Text form: `i6p` + base32 (RFC 4648, lowercase, no padding) of
//! `version:u8=1 kind:u8=1 peer_id:32 hash:32 size:u64 n_addrs:u8 address* checksum:4`,
//! where `checksum` is the first 4 bytes of BLAKE3 over everything before it. Parsing is
//! case-insensitive and ignores surrounding white space.

use crate::error::{CoreError, Result};
use crate::peer_id::PeerId;
use crate::wire::{put_socket_addr, Reader};
use std::net::SocketAddr;

/// Prefix of every ticket's text form.
pub const TICKET_PREFIX: &str = "i6p";
const VERSION: u8 = 1;
const KIND_BLOB: u8 = 1;
/// At most this many provider addresses in a ticket.
pub const MAX_TICKET_ADDRS: usize = 16;
const MAX_TICKET_TEXT: usize = 2048;

/// A blob ticket: the provider, its addresses, and the blob's hash and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The provider's identity.
    pub peer_id: PeerId,
    /// Where the provider listens.
    pub addrs: Vec<SocketAddr>,
    /// BLAKE3 hash of the blob.
    pub hash: [u8; 32],
    /// Size of the blob in bytes.
    pub size: u64,
}

fn bad(detail: impl Into<String>) -> CoreError {
    CoreError::Malformed {
        what: "ticket",
        detail: detail.into(),
    }
}

impl Ticket {
    /// The binary form, checksum included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION, KIND_BLOB];
        out.extend_from_slice(self.peer_id.as_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.size.to_be_bytes());
        let addrs = &self.addrs[..self.addrs.len().min(MAX_TICKET_ADDRS)];
        out.push(addrs.len() as u8);
        for a in addrs {
            put_socket_addr(&mut out, a);
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(&sum.as_bytes()[..4]);
        out
    }

    /// Parses the binary form.
    pub fn from_bytes(raw: &[u8]) -> Result<Self> {
        if raw.len() < 4 {
            return Err(bad("too short"));
        }
        let (body, sum) = raw.split_at(raw.len() - 4);
        if &blake3::hash(body).as_bytes()[..4] != sum {
            return Err(bad(
                "checksum mismatch: the ticket was mistyped or cut short",
            ));
        }
        let mut r = Reader::new(body, "ticket");
        let version = r.u8()?;
        if version != VERSION {
            return Err(bad(format!(
                "version {version} is not supported (this is version 1)"
            )));
        }
        let kind = r.u8()?;
        if kind != KIND_BLOB {
            return Err(bad(format!("kind {kind} is not a blob ticket")));
        }
        let peer_id = PeerId::from_bytes(r.array()?);
        let hash = r.array()?;
        let size = r.u64()?;
        let n = usize::from(r.u8()?);
        if n > MAX_TICKET_ADDRS {
            return Err(bad(format!("{n} addresses exceed {MAX_TICKET_ADDRS}")));
        }
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            addrs.push(r.socket_addr()?);
        }
        r.finish()?;
        Ok(Self {
            peer_id,
            addrs,
            hash,
            size,
        })
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() > MAX_TICKET_TEXT {
            return Err(bad("longer than any valid ticket"));
        }
        let lower = text.to_ascii_lowercase();
        let body = lower
            .strip_prefix(TICKET_PREFIX)
            .ok_or_else(|| bad(format!("expected it to start with {TICKET_PREFIX:?}")))?;
        let raw = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| {
                bad(format!(
                    "not base32 at position {}",
                    e.position + TICKET_PREFIX.len()
                ))
            })?;
        Self::from_bytes(&raw)
    }
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = data_encoding::BASE32_NOPAD.encode(&self.to_bytes());
        write!(f, "{TICKET_PREFIX}{}", body.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ticket {
        Ticket {
            peer_id: PeerId::from_public_key(&[1; 32]),
            addrs: vec![
                "[::1]:4433".parse().unwrap(),
                "192.0.2.1:9".parse().unwrap(),
            ],
            hash: [7; 32],
            size: 123_456_789,
        }
    }

    #[test]
    fn text_round_trip() {
        let t = sample();
        let text = t.to_string();
        assert!(text.starts_with("i6p"));
        assert_eq!(Ticket::parse(&text).unwrap(), t);
        assert_eq!(
            Ticket::parse(&format!("  {}\n", text.to_uppercase())).unwrap(),
            t
        );
    }

    #[test]
    fn every_single_typo_is_caught() {
        let text = sample().to_string();
        let alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        for pos in 3..text.len() {
            for c in alphabet.chars().step_by(5) {
                if text.as_bytes()[pos] as char == c {
                    continue;
                }
                let mut typo = text.clone();
                typo.replace_range(pos..pos + 1, &c.to_string());
                assert!(Ticket::parse(&typo).is_err(), "typo at {pos} accepted");
            }
        }
        assert!(Ticket::parse(&text[..text.len() - 1]).is_err());
        assert!(Ticket::parse("").is_err());
        assert!(Ticket::parse("xyz").is_err());
        assert!(Ticket::parse("i6p!!!!").is_err());
    }
}
