//! Contacts: how to reach a node. A *rendezvous* node introduces peers it has sessions with
//! (coordinated simultaneous open) and, if it opted in, relays their traffic;
//! `i6p rendezvous` prints its contact, and a ticket may name up to [`MAX_TICKET_CONTACTS`]
//! of them, through which its provider can be reached. A node behind a firewall or NAT
//! (`i6p expose --rendezvous`) prints a contact that names its rendezvous nodes in turn.
//!
//! Text form: `i6p` + base32 (as tickets) of
//! `version:u8=1 kind:u8=16 peer_id:32 flags:u8 n_addrs:u8 address* [via] checksum:4`.
//! `flags` bit 0: the node relays. Bit 1: `via` follows, `n_contacts:u8
//! (peer_id:32 flags:u8 n_addrs:u8 address*)*`, 1 to [`MAX_TICKET_CONTACTS`] distinct
//! rendezvous nodes through which the node can be reached, each without a `via` of its own.
//! The other bits are reserved and must be zero, so every string that parses writes back to
//! the same bytes. Inside tickets and DHT records a contact never has bit 1: those list the
//! rendezvous nodes of their provider themselves.
//!
//! Addresses are hints, as everywhere: whoever dials a contact verifies its PeerId in TLS.

use crate::error::{CoreError, Result};
use crate::peer_id::PeerId;
use crate::ticket::{decode_text, encode_text, put_addrs, read_addrs, seal, unseal};
use crate::wire::Reader;
use std::net::SocketAddr;

/// The kind byte of a contact's binary form (tickets use 1 to 4, and 0x81 to 0x84).
pub const KIND_CONTACT: u8 = 16;
/// At most this many contacts in one ticket.
pub const MAX_TICKET_CONTACTS: usize = 4;
const VERSION: u8 = 1;
const FLAG_RELAY: u8 = 1;
const FLAG_VIA: u8 = 2;

/// How to reach a node: a rendezvous node, or a peer behind one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The node's identity, checked in TLS when it is dialed.
    pub peer_id: PeerId,
    /// Where it listens (at most [`crate::ticket::MAX_TICKET_ADDRS`]).
    pub addrs: Vec<SocketAddr>,
    /// Whether it relays traffic when no direct path forms.
    pub relay: bool,
    /// Rendezvous nodes through which it can be reached (at most [`MAX_TICKET_CONTACTS`],
    /// none of them with a `via` of its own). Carried by a contact's own text form only.
    pub via: Vec<Contact>,
}

fn bad(detail: impl Into<String>) -> CoreError {
    CoreError::Malformed {
        what: "contact",
        detail: detail.into(),
    }
}

impl Contact {
    /// Checks what the binary form cannot carry: too many or repeated rendezvous nodes, or
    /// one that names the node itself or has a `via` of its own.
    pub fn validate(&self) -> Result<()> {
        if self.via.len() > MAX_TICKET_CONTACTS {
            return Err(bad(format!(
                "{} rendezvous nodes (a contact names at most {MAX_TICKET_CONTACTS})",
                self.via.len()
            )));
        }
        for (i, c) in self.via.iter().enumerate() {
            if c.peer_id == self.peer_id {
                return Err(bad("a node is not its own rendezvous node"));
            }
            if !c.via.is_empty() {
                return Err(bad("a rendezvous node is named without its own"));
            }
            if self.via[..i].iter().any(|o| o.peer_id == c.peer_id) {
                return Err(bad(format!("{} is named twice", c.peer_id.short())));
            }
        }
        Ok(())
    }

    /// The node alone, as tickets and DHT records name it: without its rendezvous nodes.
    pub fn without_via(&self) -> Self {
        Self {
            via: Vec::new(),
            ..self.clone()
        }
    }

    /// Appends `peer_id flags n_addrs address*`, the form inside tickets too (`via` is not
    /// part of it).
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        self.put_with(out, false);
    }

    fn put_with(&self, out: &mut Vec<u8>, via: bool) {
        out.extend_from_slice(self.peer_id.as_bytes());
        let via = via && !self.via.is_empty();
        out.push(if self.relay { FLAG_RELAY } else { 0 } | if via { FLAG_VIA } else { 0 });
        put_addrs(out, &self.addrs);
        if via {
            put_contacts(out, &self.via);
        }
    }

    /// Reads what [`Self::put`] wrote.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        Self::read_with(r, false)
    }

    fn read_with(r: &mut Reader<'_>, via: bool) -> Result<Self> {
        let peer_id = PeerId::from_bytes(r.array()?);
        let flags = r.u8()?;
        let known = if via {
            FLAG_RELAY | FLAG_VIA
        } else {
            FLAG_RELAY
        };
        if flags & !known != 0 {
            return Err(bad(format!("unknown flags {flags:#04x}")));
        }
        let mut contact = Self {
            peer_id,
            relay: flags & FLAG_RELAY != 0,
            addrs: read_addrs(r)?,
            via: Vec::new(),
        };
        if flags & FLAG_VIA != 0 {
            contact.via = read_contacts(r)?;
            contact.validate()?;
        }
        Ok(contact)
    }

    /// The binary form, checksum included. A contact that fails [`Self::validate`] is
    /// written without the rendezvous nodes past the first [`MAX_TICKET_CONTACTS`];
    /// constructors check first.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION, KIND_CONTACT];
        if self.via.len() > MAX_TICKET_CONTACTS {
            let mut fewer = self.clone();
            fewer.via.truncate(MAX_TICKET_CONTACTS);
            fewer.put_with(&mut out, true);
        } else {
            self.put_with(&mut out, true);
        }
        seal(out)
    }

    /// Parses the binary form.
    pub fn from_bytes(raw: &[u8]) -> Result<Self> {
        let body = unseal(raw, "contact")?;
        let mut r = Reader::new(body, "contact");
        let version = r.u8()?;
        if version != VERSION {
            return Err(bad(format!(
                "version {version} is not supported (this is version 1)"
            )));
        }
        match r.u8()? {
            KIND_CONTACT => {}
            1..=4 | 0x81..=0x84 => return Err(bad("this is a blob ticket, not a contact")),
            kind => return Err(bad(format!("kind {kind} is not a contact"))),
        }
        let contact = Self::read_with(&mut r, true)?;
        r.finish()?;
        Ok(contact)
    }

    /// Parses the text form (case-insensitive, surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self> {
        Self::from_bytes(&decode_text(text).map_err(|e| match e {
            CoreError::Malformed { detail, .. } => bad(detail),
            other => other,
        })?)
    }
}

impl std::fmt::Display for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&encode_text(&self.to_bytes()))
    }
}

/// Appends `n_contacts:u8 contact*` (1 to [`MAX_TICKET_CONTACTS`]; the caller checked).
pub(crate) fn put_contacts(out: &mut Vec<u8>, contacts: &[Contact]) {
    out.push(contacts.len() as u8);
    for c in contacts {
        c.put(out);
    }
}

/// Reads `n_contacts:u8 contact*`: 1 to [`MAX_TICKET_CONTACTS`] distinct nodes.
pub(crate) fn read_contacts(r: &mut Reader<'_>) -> Result<Vec<Contact>> {
    let n = usize::from(r.u8()?);
    if !(1..=MAX_TICKET_CONTACTS).contains(&n) {
        return Err(bad(format!(
            "{n} rendezvous nodes (a ticket names 1 to {MAX_TICKET_CONTACTS})"
        )));
    }
    let mut contacts: Vec<Contact> = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Contact::read(r)?;
        if contacts.iter().any(|o| o.peer_id == c.peer_id) {
            return Err(bad(format!("{} is named twice", c.peer_id.short())));
        }
        contacts.push(c);
    }
    Ok(contacts)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(seed: u8, relay: bool) -> Contact {
        Contact {
            peer_id: PeerId::from_public_key(&[seed; 32]),
            addrs: vec![
                format!("[2001:db8::{seed}]:7000").parse().unwrap(),
                "203.0.113.3:7000".parse().unwrap(),
            ],
            relay,
            via: Vec::new(),
        }
    }

    #[test]
    fn contacts_round_trip_and_typos_are_caught() {
        for relay in [false, true] {
            let c = sample(3, relay);
            let text = c.to_string();
            assert!(text.starts_with("i6p"));
            assert_eq!(
                Contact::parse(&format!(" {}\n", text.to_uppercase())).unwrap(),
                c
            );
            let mut typo = text.clone();
            let last = if typo.ends_with('a') { "b" } else { "a" };
            typo.replace_range(typo.len() - 1.., last);
            assert!(Contact::parse(&typo).is_err());
        }
    }

    #[test]
    fn a_ticket_is_not_a_contact_and_unknown_flags_are_refused() {
        let mut body = vec![VERSION, 1];
        body.extend_from_slice(&[0; 32 + 32 + 8 + 1]);
        let e = Contact::parse(&encode_text(&seal(body))).unwrap_err();
        assert!(e.to_string().contains("blob ticket"), "{e}");
        let mut raw = sample(1, true).to_bytes();
        raw.truncate(raw.len() - 4);
        raw[2 + 32] = 0x05;
        assert!(Contact::from_bytes(&seal(raw))
            .unwrap_err()
            .to_string()
            .contains("unknown flags"));
        assert!(Contact::parse("").is_err());
    }

    #[test]
    fn a_contact_names_its_rendezvous_nodes_and_tickets_never_carry_them() {
        let mut peer = sample(7, false);
        peer.via = vec![sample(1, true), sample(2, false)];
        peer.validate().unwrap();
        let text = peer.to_string();
        assert_eq!(Contact::parse(&text).unwrap(), peer);
        // Inside a ticket (the inner form) the rendezvous nodes of a contact are left out.
        let mut inner = Vec::new();
        peer.put(&mut inner);
        let mut plain = Vec::new();
        sample(7, false).put(&mut plain);
        assert_eq!(inner, plain);
        // ... and an inner contact that says it has some is refused.
        let mut r = Reader::new(&inner, "contact");
        let mut flagged = inner.clone();
        flagged[32] |= FLAG_VIA;
        assert!(Contact::read(&mut r).is_ok());
        let mut r = Reader::new(&flagged, "contact");
        assert!(Contact::read(&mut r).is_err());
    }

    #[test]
    fn rendezvous_nodes_that_cannot_be_written_are_refused() {
        let with = |via: Vec<Contact>| Contact {
            via,
            ..sample(7, false)
        };
        let mut nested = sample(1, true);
        nested.via = vec![sample(2, true)];
        for (via, why) in [
            (vec![sample(7, true)], "its own"),
            (vec![sample(1, true), sample(1, false)], "twice"),
            (vec![nested], "without its own"),
            ((1..=5).map(|s| sample(s, true)).collect(), "at most 4"),
        ] {
            let e = with(via.clone()).validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
            // The same list read from the wire is refused too (five do not even parse).
            let mut raw = vec![VERSION, KIND_CONTACT];
            raw.extend_from_slice(sample(7, false).peer_id.as_bytes());
            raw.push(FLAG_VIA);
            put_addrs(&mut raw, &[]);
            raw.push(via.len() as u8);
            for c in &via {
                raw.extend_from_slice(c.peer_id.as_bytes());
                raw.push(if c.via.is_empty() { 0 } else { FLAG_VIA });
                put_addrs(&mut raw, &c.addrs);
            }
            assert!(Contact::from_bytes(&seal(raw)).is_err(), "{why}");
        }
    }
}
