//! Tickets: one copy-pasteable string that says where to fetch a blob and what it is.
//!
//! Text form: `i6p` + base32 (RFC 4648, lowercase, no padding) of
//! `version:u8=1 kind:u8=1 peer_id:32 hash:32 size:u64 n_addrs:u8 address* checksum:4`,
//! where `checksum` is the first 4 bytes of BLAKE3 over everything before it. Parsing is
//! case-insensitive and ignores surrounding white space.
//!
//! A ticket may also list several providers of one blob (kind 2):
//! `version:u8=1 kind:u8=2 hash:32 size:u64 n_providers:u8 (peer_id:32 n_addrs:u8 address*)*
//! checksum:4`, with 2 to [`MAX_TICKET_PROVIDERS`] distinct providers; [`parse_all`] reads
//! either kind as one ticket per provider, and [`join`] writes several as one.
//!
//! Kinds 3 and 4 are kinds 1 and 2 for a **collection** (see [`crate::collection`]): the
//! hash and size are those of its listing. Older tickets (kinds 1 and 2) read as before.
//!
//! A ticket may name its provider by **public key alone** (kinds 5, and 6 for a collection):
//! `version:u8=1 kind:u8=5 key:32 hash:32 size:u64 checksum:4` (contacts may follow, as
//! below); the PeerId derives from the key, and the fetching node finds addresses by
//! discovery (address book, mDNS, DHT) at fetch time. Several providers by key (kinds 7, and
//! 8 for a collection): `version:u8=1 kind:u8=7 hash:32 size:u64 n_providers:u8 key:32*
//! checksum:4`, 2 to [`MAX_TICKET_PROVIDERS`] distinct keys.
//!
//! A ticket may name **rendezvous nodes** through which its provider can be reached from
//! behind a firewall or NAT (see [`crate::contact`]): its kind then has bit 7 set (0x81 to
//! 0x84) and `n_contacts:u8 (peer_id:32 flags:u8 n_addrs:u8 address*)*` (1 to
//! [`MAX_TICKET_CONTACTS`] distinct nodes) follows the body of kinds 1 to 4, before the
//! checksum. A ticket without them is written with the old kinds, which every version reads.

use crate::contact::{put_contacts, read_contacts, Contact, MAX_TICKET_CONTACTS};
use crate::error::{CoreError, Result};
use crate::identity::PublicKey;
use crate::peer_id::PeerId;
use crate::wire::{put_socket_addr, Reader};
use std::net::SocketAddr;

/// Prefix of every ticket's text form.
pub const TICKET_PREFIX: &str = "i6p";
const VERSION: u8 = 1;
const KIND_BLOB: u8 = 1;
const KIND_PROVIDERS: u8 = 2;
const KIND_COLLECTION: u8 = 3;
const KIND_COLLECTION_PROVIDERS: u8 = 4;
const KIND_BLOB_BY_KEY: u8 = 5;
const KIND_COLLECTION_BY_KEY: u8 = 6;
const KIND_PROVIDERS_BY_KEY: u8 = 7;
const KIND_COLLECTION_PROVIDERS_BY_KEY: u8 = 8;
/// Set in the kind byte when rendezvous contacts follow the body.
const KIND_WITH_CONTACTS: u8 = 0x80;
/// At most this many provider addresses in a ticket.
pub const MAX_TICKET_ADDRS: usize = 16;
/// At most this many providers in a ticket listing several.
pub const MAX_TICKET_PROVIDERS: usize = 8;
const MAX_TICKET_TEXT: usize = 4096;

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
    /// Whether the blob is a collection's listing (a directory served as one).
    pub collection: bool,
    /// Nodes that can introduce a requester to the provider, or relay (at most
    /// [`MAX_TICKET_CONTACTS`]; the same list for every provider of one ticket).
    pub rendezvous: Vec<Contact>,
    /// The provider's public key, when the ticket names it by key alone (no addresses): the
    /// fetching node then finds the provider by discovery.
    pub key: Option<PublicKey>,
}

fn bad(detail: impl Into<String>) -> CoreError {
    CoreError::Malformed {
        what: "ticket",
        detail: detail.into(),
    }
}

impl Ticket {
    /// A ticket naming its provider by public key alone.
    pub fn by_key(key: PublicKey, hash: [u8; 32], size: u64, collection: bool) -> Self {
        Self {
            peer_id: key.peer_id(),
            addrs: Vec::new(),
            hash,
            size,
            collection,
            rendezvous: Vec::new(),
            key: Some(key),
        }
    }

    /// The binary form, checksum included: by key (kinds 5, 6) when it has a key and no
    /// address, else with the PeerId and addresses.
    pub fn to_bytes(&self) -> Vec<u8> {
        if let (Some(key), true) = (self.key, self.addrs.is_empty()) {
            let kind = match self.collection {
                true => KIND_COLLECTION_BY_KEY,
                false => KIND_BLOB_BY_KEY,
            };
            let mut out = vec![VERSION, kind];
            out.extend_from_slice(&key.to_bytes());
            out.extend_from_slice(&self.hash);
            out.extend_from_slice(&self.size.to_be_bytes());
            return with_contacts(out, &self.rendezvous);
        }
        let kind = if self.collection {
            KIND_COLLECTION
        } else {
            KIND_BLOB
        };
        let mut out = vec![VERSION, kind];
        out.extend_from_slice(self.peer_id.as_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.size.to_be_bytes());
        put_addrs(&mut out, &self.addrs);
        with_contacts(out, &self.rendezvous)
    }

    /// Parses the binary form of a one-provider ticket.
    pub fn from_bytes(raw: &[u8]) -> Result<Self> {
        let mut all = from_bytes_all(raw)?;
        match all.len() {
            1 => Ok(all.remove(0)),
            n => Err(bad(format!(
                "it lists {n} providers: read it with parse_all"
            ))),
        }
    }

    /// Parses the text form of a one-provider ticket.
    pub fn parse(text: &str) -> Result<Self> {
        Self::from_bytes(&decode_text(text)?)
    }
}

/// Parses a ticket's text form, of either kind: one ticket per provider it lists.
pub fn parse_all(text: &str) -> Result<Vec<Ticket>> {
    from_bytes_all(&decode_text(text)?)
}

/// One ticket listing the providers of `tickets` (2 to [`MAX_TICKET_PROVIDERS`] distinct
/// ones, all for the same blob); a single ticket is written as it is.
pub fn join(tickets: &[Ticket]) -> Result<String> {
    let Some(first) = tickets.first() else {
        return Err(bad("no ticket to join"));
    };
    if tickets.len() == 1 {
        return Ok(first.to_string());
    }
    let by_key = |t: &Ticket| t.key.is_some() && t.addrs.is_empty();
    let keyed = tickets.iter().filter(|t| by_key(t)).count();
    if keyed != 0 && keyed != tickets.len() {
        return Err(bad(
            "providers by key alone and providers with addresses cannot share a ticket",
        ));
    }
    if tickets.len() > MAX_TICKET_PROVIDERS {
        return Err(bad(format!(
            "{} providers exceed {MAX_TICKET_PROVIDERS}",
            tickets.len()
        )));
    }
    if tickets
        .iter()
        .any(|t| (t.hash, t.size, t.collection) != (first.hash, first.size, first.collection))
    {
        return Err(bad("the tickets are for different blobs"));
    }
    check_distinct(tickets)?;
    let contacts = union_contacts(tickets)?;
    let kind = match (first.collection, keyed != 0) {
        (false, false) => KIND_PROVIDERS,
        (true, false) => KIND_COLLECTION_PROVIDERS,
        (false, true) => KIND_PROVIDERS_BY_KEY,
        (true, true) => KIND_COLLECTION_PROVIDERS_BY_KEY,
    };
    let mut out = vec![VERSION, kind];
    out.extend_from_slice(&first.hash);
    out.extend_from_slice(&first.size.to_be_bytes());
    out.push(tickets.len() as u8);
    for t in tickets {
        match t.key.filter(|_| keyed != 0) {
            Some(key) => out.extend_from_slice(&key.to_bytes()),
            None => {
                out.extend_from_slice(t.peer_id.as_bytes());
                put_addrs(&mut out, &t.addrs);
            }
        }
    }
    let text = encode_text(&with_contacts(out, &contacts));
    if text.len() > MAX_TICKET_TEXT {
        return Err(bad(format!(
            "{} characters: too many addresses for one ticket",
            text.len()
        )));
    }
    Ok(text)
}

/// The rendezvous nodes named by any of `tickets`, each once, in order.
fn union_contacts(tickets: &[Ticket]) -> Result<Vec<Contact>> {
    let mut all: Vec<Contact> = Vec::new();
    for c in tickets.iter().flat_map(|t| &t.rendezvous) {
        if !all.iter().any(|o| o.peer_id == c.peer_id) {
            all.push(c.clone());
        }
    }
    if all.len() > MAX_TICKET_CONTACTS {
        return Err(bad(format!(
            "{} rendezvous nodes exceed {MAX_TICKET_CONTACTS}",
            all.len()
        )));
    }
    Ok(all)
}

/// Sets the kind's contacts bit and appends the contacts (the first
/// [`MAX_TICKET_CONTACTS`]) when there are any; then the checksum.
fn with_contacts(mut out: Vec<u8>, contacts: &[Contact]) -> Vec<u8> {
    if !contacts.is_empty() {
        out[1] |= KIND_WITH_CONTACTS;
        put_contacts(
            &mut out,
            &contacts[..contacts.len().min(MAX_TICKET_CONTACTS)],
        );
    }
    seal(out)
}

/// Appends `n_addrs address*` (the first [`MAX_TICKET_ADDRS`]).
pub(crate) fn put_addrs(out: &mut Vec<u8>, addrs: &[SocketAddr]) {
    let addrs = &addrs[..addrs.len().min(MAX_TICKET_ADDRS)];
    out.push(addrs.len() as u8);
    for a in addrs {
        put_socket_addr(out, a);
    }
}

/// Appends the checksum.
pub(crate) fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let sum = blake3::hash(&out);
    out.extend_from_slice(&sum.as_bytes()[..4]);
    out
}

/// The text form of a ticket's bytes.
pub(crate) fn encode_text(raw: &[u8]) -> String {
    let body = data_encoding::BASE32_NOPAD.encode(raw);
    format!("{TICKET_PREFIX}{}", body.to_ascii_lowercase())
}

fn check_distinct(tickets: &[Ticket]) -> Result<()> {
    for (i, t) in tickets.iter().enumerate() {
        if tickets[..i].iter().any(|o| o.peer_id == t.peer_id) {
            return Err(bad(format!(
                "provider {} is listed twice",
                t.peer_id.short()
            )));
        }
    }
    Ok(())
}

/// Reads `n_addrs address*`.
pub(crate) fn read_addrs(r: &mut Reader<'_>) -> Result<Vec<SocketAddr>> {
    let n = usize::from(r.u8()?);
    if n > MAX_TICKET_ADDRS {
        return Err(bad(format!("{n} addresses exceed {MAX_TICKET_ADDRS}")));
    }
    let mut addrs = Vec::with_capacity(n);
    for _ in 0..n {
        addrs.push(r.socket_addr()?);
    }
    Ok(addrs)
}

/// The body of a sealed binary form, once its checksum matches.
pub(crate) fn unseal<'a>(raw: &'a [u8], what: &'static str) -> Result<&'a [u8]> {
    if raw.len() < 4 {
        return Err(CoreError::Malformed {
            what,
            detail: "too short".into(),
        });
    }
    let (body, sum) = raw.split_at(raw.len() - 4);
    if &blake3::hash(body).as_bytes()[..4] != sum {
        return Err(CoreError::Malformed {
            what,
            detail: format!("checksum mismatch: the {what} was mistyped or cut short"),
        });
    }
    Ok(body)
}

/// Parses the binary form of any kind.
fn from_bytes_all(raw: &[u8]) -> Result<Vec<Ticket>> {
    let body = unseal(raw, "ticket")?;
    let mut r = Reader::new(body, "ticket");
    let version = r.u8()?;
    if version != VERSION {
        return Err(bad(format!(
            "version {version} is not supported (this is version 1)"
        )));
    }
    let kind_byte = r.u8()?;
    let kind = kind_byte & !KIND_WITH_CONTACTS;
    let collection = matches!(
        kind,
        KIND_COLLECTION
            | KIND_COLLECTION_PROVIDERS
            | KIND_COLLECTION_BY_KEY
            | KIND_COLLECTION_PROVIDERS_BY_KEY
    );
    let tickets = match kind {
        KIND_BLOB_BY_KEY | KIND_COLLECTION_BY_KEY => {
            let key = read_key(&mut r)?;
            let hash = r.array()?;
            let size = r.u64()?;
            vec![Ticket::by_key(key, hash, size, collection)]
        }
        KIND_PROVIDERS_BY_KEY | KIND_COLLECTION_PROVIDERS_BY_KEY => {
            read_keyed_providers(&mut r, collection)?
        }
        KIND_BLOB | KIND_COLLECTION => {
            let peer_id = PeerId::from_bytes(r.array()?);
            let hash = r.array()?;
            let size = r.u64()?;
            let addrs = read_addrs(&mut r)?;
            vec![Ticket {
                peer_id,
                addrs,
                hash,
                size,
                collection,
                rendezvous: Vec::new(),
                key: None,
            }]
        }
        KIND_PROVIDERS | KIND_COLLECTION_PROVIDERS => {
            let hash = r.array()?;
            let size = r.u64()?;
            let n = providers_count(&mut r)?;
            let mut tickets = Vec::with_capacity(n);
            for _ in 0..n {
                let peer_id = PeerId::from_bytes(r.array()?);
                let addrs = read_addrs(&mut r)?;
                tickets.push(Ticket {
                    peer_id,
                    addrs,
                    hash,
                    size,
                    collection,
                    rendezvous: Vec::new(),
                    key: None,
                });
            }
            check_distinct(&tickets)?;
            tickets
        }
        _ if kind_byte == crate::contact::KIND_CONTACT => {
            return Err(bad("this is a rendezvous contact, not a blob ticket"))
        }
        _ => return Err(bad(format!("kind {kind_byte} is not a blob ticket"))),
    };
    let mut tickets = tickets;
    if kind_byte & KIND_WITH_CONTACTS != 0 {
        let contacts = read_contacts(&mut r)?;
        for t in &mut tickets {
            t.rendezvous = contacts.clone();
        }
    }
    r.finish()?;
    Ok(tickets)
}

/// A provider's public key.
fn read_key(r: &mut Reader<'_>) -> Result<PublicKey> {
    PublicKey::from_bytes(&r.array()?)
        .map_err(|_| bad("a provider key is not a valid Ed25519 public key"))
}

/// The body of kinds 7 and 8: hash, size and 2 to [`MAX_TICKET_PROVIDERS`] distinct keys.
fn read_keyed_providers(r: &mut Reader<'_>, collection: bool) -> Result<Vec<Ticket>> {
    let hash = r.array()?;
    let size = r.u64()?;
    let n = providers_count(r)?;
    let mut tickets = Vec::with_capacity(n);
    for _ in 0..n {
        tickets.push(Ticket::by_key(read_key(r)?, hash, size, collection));
    }
    check_distinct(&tickets)?;
    Ok(tickets)
}

/// The provider count of a ticket listing several: 2 to [`MAX_TICKET_PROVIDERS`].
fn providers_count(r: &mut Reader<'_>) -> Result<usize> {
    let n = usize::from(r.u8()?);
    if !(2..=MAX_TICKET_PROVIDERS).contains(&n) {
        return Err(bad(format!(
            "{n} providers (a ticket lists 2 to {MAX_TICKET_PROVIDERS})"
        )));
    }
    Ok(n)
}

/// The bytes of a ticket's (or contact's) text form.
pub(crate) fn decode_text(text: &str) -> Result<Vec<u8>> {
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
    Ok(raw)
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&encode_text(&self.to_bytes()))
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
            collection: false,
            rendezvous: Vec::new(),
            key: None,
        }
    }

    fn key2() -> PublicKey {
        crate::Identity::generate().public_key()
    }

    #[test]
    fn a_ticket_by_key_round_trips_and_joins_only_with_others_by_key() {
        let key = crate::Identity::generate().public_key();
        let by_key = Ticket::by_key(key, [9; 32], 77, false);
        assert_eq!(by_key.peer_id, key.peer_id());
        let text = by_key.to_string();
        assert!(text.len() < sample().to_string().len());
        assert_eq!(Ticket::parse(&text).unwrap(), by_key);
        let dir = Ticket::by_key(key, [9; 32], 77, true);
        assert_eq!(Ticket::parse(&dir.to_string()).unwrap(), dir);
        assert!(join(&[by_key.clone(), sample()]).is_err());
        let other = Ticket::by_key(crate::Identity::generate().public_key(), [9; 32], 77, false);
        let both = join(&[by_key.clone(), other.clone()]).unwrap();
        assert_eq!(parse_all(&both).unwrap(), vec![by_key.clone(), other]);
        assert!(
            join(&[by_key.clone(), by_key.clone()]).is_err(),
            "listed twice"
        );
        let dir = Ticket::by_key(key2(), [9; 32], 77, true);
        let dirs = [
            Ticket {
                collection: true,
                ..by_key.clone()
            },
            dir,
        ];
        assert_eq!(parse_all(&join(&dirs).unwrap()).unwrap(), dirs.to_vec());
        // With addresses, the key is not written: the old kinds carry the PeerId.
        let with_addrs = Ticket {
            addrs: sample().addrs,
            ..by_key
        };
        assert_eq!(Ticket::parse(&with_addrs.to_string()).unwrap().key, None);
    }

    #[test]
    fn collection_tickets_round_trip_and_old_ones_read_as_blobs() {
        let dir = Ticket {
            collection: true,
            ..sample()
        };
        let text = dir.to_string();
        assert_eq!(Ticket::parse(&text).unwrap(), dir);
        assert_ne!(text, sample().to_string());
        let joined = join(&[
            dir.clone(),
            Ticket {
                collection: true,
                ..provider(2)
            },
        ])
        .unwrap();
        assert!(parse_all(&joined).unwrap().iter().all(|t| t.collection));
        // A collection and a blob with the same hash are not the same thing.
        assert!(join(&[dir, provider(2)]).is_err());
        assert!(!Ticket::parse(&sample().to_string()).unwrap().collection);
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

    fn provider(seed: u8) -> Ticket {
        Ticket {
            peer_id: PeerId::from_public_key(&[seed; 32]),
            addrs: vec![format!("[2001:db8::{seed}]:4433").parse().unwrap()],
            ..sample()
        }
    }

    #[test]
    fn several_providers_in_one_ticket() {
        let three = vec![sample(), provider(2), provider(3)];
        let text = join(&three).unwrap();
        assert_eq!(parse_all(&text).unwrap(), three);
        // A one-provider ticket reads as a list of one; a several-provider one is not a
        // one-provider ticket.
        assert_eq!(parse_all(&sample().to_string()).unwrap(), vec![sample()]);
        assert_eq!(join(&[sample()]).unwrap(), sample().to_string());
        let e = Ticket::parse(&text).unwrap_err().to_string();
        assert!(e.contains("3 providers"), "{e}");
        // Typos are caught as in any ticket.
        let mut typo = text.clone();
        let c = if typo.ends_with('a') { "b" } else { "a" };
        typo.replace_range(typo.len() - 1.., c);
        assert!(parse_all(&typo).is_err());
        // Different blobs, a provider twice, too many, none: clear errors.
        let other = Ticket {
            size: 1,
            ..provider(4)
        };
        assert!(join(&[sample(), other])
            .unwrap_err()
            .to_string()
            .contains("different blobs"));
        assert!(join(&[sample(), sample()])
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let nine: Vec<Ticket> = (10..19).map(provider).collect();
        assert!(join(&nine).is_err());
        assert!(join(&[]).is_err());
        assert!(join(&nine[..8]).is_ok());
    }

    #[test]
    fn malformed_provider_lists_are_refused() {
        let encode = |body: Vec<u8>| encode_text(&seal(body));
        let head = |n: u8| {
            let mut b = vec![VERSION, KIND_PROVIDERS];
            b.extend_from_slice(&[7; 32]);
            b.extend_from_slice(&5u64.to_be_bytes());
            b.push(n);
            b
        };
        for n in [0, 1, 9, 255] {
            assert!(parse_all(&encode(head(n))).is_err(), "{n} providers");
        }
        // Two providers announced, one present; the same provider twice; trailing bytes.
        let mut one = head(2);
        one.extend_from_slice(&[1; 32]);
        one.push(0);
        assert!(parse_all(&encode(one.clone())).is_err());
        let mut twice = one.clone();
        twice.extend_from_slice(&[1; 32]);
        twice.push(0);
        assert!(parse_all(&encode(twice.clone()))
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut two = one;
        two.extend_from_slice(&[2; 32]);
        two.push(0);
        assert_eq!(parse_all(&encode(two.clone())).unwrap().len(), 2);
        two.push(0);
        assert!(parse_all(&encode(two)).is_err());
        assert!(parse_all(&"a".repeat(5000)).is_err());
    }

    fn contact(seed: u8, relay: bool) -> Contact {
        Contact {
            peer_id: PeerId::from_public_key(&[seed; 32]),
            addrs: vec![format!("[2001:db8:ff::{seed}]:7000").parse().unwrap()],
            relay,
            via: Vec::new(),
        }
    }

    #[test]
    fn rendezvous_nodes_ride_in_a_new_kind_and_plain_tickets_keep_the_old_ones() {
        let plain = sample().to_bytes();
        assert_eq!(plain[1], KIND_BLOB);
        let via = Ticket {
            rendezvous: vec![contact(40, true), contact(41, false)],
            ..sample()
        };
        let raw = via.to_bytes();
        assert_eq!(raw[1], KIND_BLOB | KIND_WITH_CONTACTS);
        assert_eq!(Ticket::from_bytes(&raw).unwrap(), via);
        assert_eq!(Ticket::parse(&via.to_string()).unwrap(), via);
        // Several providers share the list; joining takes the union, each node once.
        let other = Ticket {
            rendezvous: vec![contact(41, false), contact(42, true)],
            ..provider(2)
        };
        let joined = parse_all(&join(&[via.clone(), other]).unwrap()).unwrap();
        let names: Vec<u8> = joined[0]
            .rendezvous
            .iter()
            .map(|c| c.peer_id.as_bytes()[0])
            .collect();
        let want: Vec<u8> = [40u8, 41, 42]
            .iter()
            .map(|&s| PeerId::from_public_key(&[s; 32]).as_bytes()[0])
            .collect();
        assert_eq!(names, want);
        assert!(joined.iter().all(|t| t.rendezvous == joined[0].rendezvous));
        let five: Vec<Ticket> = (0..5)
            .map(|i| Ticket {
                rendezvous: vec![contact(50 + i, false)],
                ..provider(60 + i)
            })
            .collect();
        assert!(join(&five).unwrap_err().to_string().contains("rendezvous"));
    }

    #[test]
    fn malformed_rendezvous_lists_are_refused() {
        let body = |n: u8, seeds: &[u8]| {
            let mut raw = sample().to_bytes();
            raw.truncate(raw.len() - 4);
            raw[1] |= KIND_WITH_CONTACTS;
            raw.push(n);
            for &s in seeds {
                contact(s, false).put(&mut raw);
            }
            encode_text(&seal(raw))
        };
        assert!(Ticket::parse(&body(1, &[7])).is_ok());
        for (n, seeds) in [
            (0, &[][..]),
            (5, &[1, 2, 3, 4, 5][..]),
            (2, &[7][..]),
            (2, &[7, 7][..]),
        ] {
            assert!(Ticket::parse(&body(n, seeds)).is_err(), "{n} {seeds:?}");
        }
        // A contact is not a ticket, and says so.
        let e = Ticket::parse(&contact(1, true).to_string()).unwrap_err();
        assert!(e.to_string().contains("contact"), "{e}");
    }
}
