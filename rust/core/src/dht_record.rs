//! The record a node publishes in the Mainline DHT (BEP 44 mutable item, keyed by its
//! Ed25519 public key) so that others can reach it by its key alone.
//!
//! The DHT checks the signature over `seq` and the value; this module is the value:
//! `version:u8=1 protocol:u16 issued:u64 valid_for:u32 flags:u8 n_addrs:u8 address*
//! n_contacts:u8 contact*`, big-endian, addresses as in tickets. `issued` is unix seconds;
//! the record is valid for `valid_for` seconds from then. `flags` bit 0: the node relays;
//! other bits are reserved and must be zero. A contact is `peer_id:32 flags:u8 n_addrs:u8
//! address*` as in tickets, at most [`MAX_CONTACT_ADDRS`] addresses each.
//!
//! Invariant: whatever [`DhtRecord::encode`] writes is at most [`MAX_RECORD_LEN`] bytes
//! (BEP 44's bound on a value), because every list is truncated to its bound; the decoder
//! refuses a longer value before reading it and bounds every count before allocating.
//! Addresses are hints, as everywhere: TLS checks the identity at whatever address is dialed.

use crate::contact::Contact;
use crate::error::{CoreError, Result};
use crate::hello::PROTOCOL_VERSION;
use crate::ticket::{put_addrs, read_addrs};
use crate::wire::Reader;
use std::net::SocketAddr;

/// BEP 44: a mutable item's value is at most 1000 bytes.
pub const MAX_RECORD_LEN: usize = 1000;
/// At most this many listen addresses in a record.
pub const MAX_RECORD_ADDRS: usize = 8;
/// At most this many contacts (rendezvous or relay nodes) in a record.
pub const MAX_RECORD_CONTACTS: usize = 4;
/// At most this many addresses per contact in a record.
pub const MAX_CONTACT_ADDRS: usize = 4;
/// A record may claim validity for at most a week.
pub const MAX_VALIDITY_SECS: u32 = 7 * 24 * 3600;
/// How far in the future an issue time may lie (clocks disagree), in seconds.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;
const VERSION: u8 = 1;
const FLAG_RELAY: u8 = 1;
const WHAT: &str = "dht record";

fn bad(detail: impl Into<String>) -> CoreError {
    CoreError::Malformed {
        what: WHAT,
        detail: detail.into(),
    }
}

/// What a node says about itself in the DHT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtRecord {
    /// The I6P protocol version the node speaks.
    pub protocol: u16,
    /// When the record was issued, unix seconds.
    pub issued: u64,
    /// How long after `issued` the record holds, seconds (1 to [`MAX_VALIDITY_SECS`]).
    pub valid_for: u32,
    /// Whether the node relays for others.
    pub relay: bool,
    /// Where it listens; empty unless the node chose to publish its addresses.
    pub addrs: Vec<SocketAddr>,
    /// Nodes through which it can be reached (introductions, relaying).
    pub contacts: Vec<Contact>,
}

impl DhtRecord {
    /// A record of this implementation's protocol version, issued at `issued`.
    pub fn new(issued: u64, valid_for: u32) -> Self {
        Self {
            protocol: PROTOCOL_VERSION,
            issued,
            valid_for,
            relay: false,
            addrs: Vec::new(),
            contacts: Vec::new(),
        }
    }

    /// The value to publish: lists beyond their bounds are cut, so it always fits in
    /// [`MAX_RECORD_LEN`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.protocol.to_be_bytes());
        out.extend_from_slice(&self.issued.to_be_bytes());
        out.extend_from_slice(&self.valid_for.to_be_bytes());
        out.push(if self.relay { FLAG_RELAY } else { 0 });
        put_addrs(
            &mut out,
            &self.addrs[..self.addrs.len().min(MAX_RECORD_ADDRS)],
        );
        let contacts = &self.contacts[..self.contacts.len().min(MAX_RECORD_CONTACTS)];
        out.push(contacts.len() as u8);
        for c in contacts {
            out.extend_from_slice(c.peer_id.as_bytes());
            out.push(u8::from(c.relay));
            put_addrs(&mut out, &c.addrs[..c.addrs.len().min(MAX_CONTACT_ADDRS)]);
        }
        debug_assert!(out.len() <= MAX_RECORD_LEN);
        out
    }

    /// Parses a value; does not look at the clock (see [`Self::check_time`]).
    pub fn decode(raw: &[u8]) -> Result<Self> {
        if raw.len() > MAX_RECORD_LEN {
            return Err(CoreError::FrameTooLarge {
                len: raw.len() as u64,
                limit: MAX_RECORD_LEN as u64,
            });
        }
        let mut r = Reader::new(raw, WHAT);
        let version = r.u8()?;
        if version != VERSION {
            return Err(bad(format!("version {version} is not supported")));
        }
        let protocol = r.u16()?;
        let issued = r.u64()?;
        let valid_for = r.u32()?;
        if !(1..=MAX_VALIDITY_SECS).contains(&valid_for) {
            return Err(bad(format!(
                "validity of {valid_for} s (1 to {MAX_VALIDITY_SECS})"
            )));
        }
        let flags = r.u8()?;
        if flags & !FLAG_RELAY != 0 {
            return Err(bad(format!("unknown flags {flags:#04x}")));
        }
        let addrs = read_addrs(&mut r)?;
        if addrs.len() > MAX_RECORD_ADDRS {
            return Err(bad(format!(
                "{} addresses exceed {MAX_RECORD_ADDRS}",
                addrs.len()
            )));
        }
        let contacts = read_contacts(&mut r)?;
        r.finish()?;
        Ok(Self {
            protocol,
            issued,
            valid_for,
            relay: flags & FLAG_RELAY != 0,
            addrs,
            contacts,
        })
    }

    /// Whether the record holds at `now` (unix seconds): not expired, and not issued more
    /// than [`MAX_CLOCK_SKEW_SECS`] ahead of `now`.
    pub fn check_time(&self, now: u64) -> Result<()> {
        let expires = self.issued.saturating_add(u64::from(self.valid_for));
        let detail = || {
            format!(
                "issued at {}, valid {} s, now {now}",
                self.issued, self.valid_for
            )
        };
        if expires <= now {
            return Err(CoreError::OutOfDate {
                what: WHAT,
                detail: format!("expired: {}", detail()),
            });
        }
        if self.issued > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(CoreError::OutOfDate {
                what: WHAT,
                detail: format!("from the future: {}", detail()),
            });
        }
        Ok(())
    }
}

/// `n_contacts:u8 contact*`: 0 to [`MAX_RECORD_CONTACTS`] distinct nodes.
fn read_contacts(r: &mut Reader<'_>) -> Result<Vec<Contact>> {
    let n = usize::from(r.u8()?);
    if n > MAX_RECORD_CONTACTS {
        return Err(bad(format!("{n} contacts exceed {MAX_RECORD_CONTACTS}")));
    }
    let mut contacts: Vec<Contact> = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Contact::read(r)?;
        if c.addrs.len() > MAX_CONTACT_ADDRS {
            return Err(bad(format!(
                "a contact with {} addresses (at most {MAX_CONTACT_ADDRS})",
                c.addrs.len()
            )));
        }
        if contacts.iter().any(|o| o.peer_id == c.peer_id) {
            return Err(bad(format!("{} is named twice", c.peer_id.short())));
        }
        contacts.push(c);
    }
    Ok(contacts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::peer_id::PeerId;

    fn full() -> DhtRecord {
        let v6 = |i: u16| format!("[2001:db8::{i:x}]:{}", 7000 + i).parse().unwrap();
        let mut rec = DhtRecord::new(1_760_000_000, 3600);
        rec.relay = true;
        rec.addrs = (0..20).map(v6).collect();
        rec.contacts = (0..9u8)
            .map(|s| Contact {
                peer_id: PeerId::from_public_key(&[s; 32]),
                addrs: (0..20).map(v6).collect(),
                relay: s % 2 == 0,
                via: Vec::new(),
            })
            .collect();
        rec
    }

    #[test]
    fn a_record_round_trips_and_its_lists_are_cut_to_their_bounds() {
        let rec = full();
        let raw = rec.encode();
        assert!(raw.len() <= MAX_RECORD_LEN, "{} bytes", raw.len());
        let back = DhtRecord::decode(&raw).unwrap();
        assert_eq!(back.addrs, rec.addrs[..MAX_RECORD_ADDRS]);
        assert_eq!(back.contacts.len(), MAX_RECORD_CONTACTS);
        for (b, c) in back.contacts.iter().zip(&rec.contacts) {
            assert_eq!((b.peer_id, b.relay), (c.peer_id, c.relay));
            assert_eq!(b.addrs, c.addrs[..MAX_CONTACT_ADDRS]);
        }
        assert_eq!(back.encode(), raw);
        let empty = DhtRecord::new(5, 60);
        assert_eq!(DhtRecord::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_typed_errors() {
        let raw = full().encode();
        for n in 0..raw.len() {
            assert!(DhtRecord::decode(&raw[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut long = raw.clone();
        long.push(0);
        assert!(matches!(
            DhtRecord::decode(&long),
            Err(CoreError::Malformed { .. })
        ));
    }

    #[test]
    fn oversized_values_bad_versions_flags_and_counts_are_refused() {
        let big = vec![1u8; MAX_RECORD_LEN + 1];
        assert!(matches!(
            DhtRecord::decode(&big),
            Err(CoreError::FrameTooLarge { .. })
        ));
        let raw = DhtRecord::new(5, 60).encode();
        let with = |i: usize, v: u8| {
            let mut r = raw.clone();
            r[i] = v;
            DhtRecord::decode(&r)
        };
        assert!(with(0, 2).is_err(), "record version");
        assert!(with(15, 2).is_err(), "reserved flag");
        assert!(
            with(16, MAX_RECORD_ADDRS as u8 + 1).is_err(),
            "address count"
        );
        assert!(
            with(17, MAX_RECORD_CONTACTS as u8 + 1).is_err(),
            "contact count"
        );
        let mut zero = DhtRecord::new(5, 60).encode();
        zero[11..15].copy_from_slice(&0u32.to_be_bytes());
        assert!(DhtRecord::decode(&zero).is_err(), "zero validity");
        let mut twice = DhtRecord::new(5, 60);
        twice.contacts = vec![full().contacts[0].clone(), full().contacts[0].clone()];
        assert!(
            DhtRecord::decode(&twice.encode()).is_err(),
            "contact named twice"
        );
    }

    #[test]
    fn a_record_holds_from_a_little_before_its_issue_until_it_expires() {
        let rec = DhtRecord::new(1_000_000, 100);
        assert!(rec.check_time(1_000_000).is_ok());
        assert!(rec.check_time(1_000_099).is_ok());
        assert!(rec.check_time(1_000_000 - MAX_CLOCK_SKEW_SECS).is_ok());
        for now in [1_000_100, u64::MAX, 1_000_000 - MAX_CLOCK_SKEW_SECS - 1] {
            assert!(matches!(
                rec.check_time(now),
                Err(CoreError::OutOfDate { .. })
            ));
        }
        assert!(DhtRecord::new(u64::MAX, 100)
            .check_time(u64::MAX - 1)
            .is_ok());
    }
}
