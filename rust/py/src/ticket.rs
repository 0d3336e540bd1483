//! `Ticket`: one copy-pasteable string naming a provider, its addresses and a blob.

use crate::contact::Contact;
use crate::errors::{core_to_py, invalid_address, invalid_hash, invalid_ticket};
use crate::peer_id::PeerId;
use crate::public_key::PublicKey;
use i6p_net::addr::{format_addr, parse_addr};
use pyo3::prelude::*;

/// A blob ticket.
#[pyclass(frozen, module = "i6p._core")]
#[derive(Clone)]
pub(crate) struct Ticket(pub(crate) i6p_core::ticket::Ticket);

fn ticket_error(e: i6p_core::CoreError) -> PyErr {
    match e {
        i6p_core::CoreError::Malformed { detail, .. } => {
            invalid_ticket(format!("invalid ticket: {detail}"))
        }
        other => core_to_py(other),
    }
}

/// The contacts of a ticket, within the bound, each node once.
fn contacts(list: &[PyRef<'_, Contact>]) -> PyResult<Vec<i6p_core::contact::Contact>> {
    let max = i6p_core::contact::MAX_TICKET_CONTACTS;
    if list.len() > max {
        return Err(invalid_ticket(format!(
            "a ticket names at most {max} rendezvous nodes"
        )));
    }
    let mut out: Vec<i6p_core::contact::Contact> = Vec::with_capacity(list.len());
    for c in list {
        if out.iter().any(|o| o.peer_id == c.0.peer_id) {
            return Err(invalid_ticket(format!(
                "rendezvous node {} is named twice",
                c.0.peer_id.short()
            )));
        }
        out.push(c.0.without_via());
    }
    Ok(out)
}

pub(crate) fn parse_hash(text: &str) -> PyResult<[u8; 32]> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid_hash(format!(
            "a blob hash is 64 hex characters, got {text:?}"
        )));
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| invalid_hash("not hex".into()))?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| invalid_hash("not hex".into()))?;
    }
    Ok(out)
}

pub(crate) fn hash_hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from(*hash).to_hex().to_string()
}

#[pymethods]
impl Ticket {
    /// A ticket from its parts (`collection`: the blob is a collection's listing).
    #[new]
    #[pyo3(signature = (peer_id, addrs, hash, size, collection=false, rendezvous=Vec::new()))]
    fn new(
        peer_id: PyRef<'_, PeerId>,
        addrs: Vec<String>,
        hash: &str,
        size: u64,
        collection: bool,
        rendezvous: Vec<PyRef<'_, Contact>>,
    ) -> PyResult<Self> {
        let addrs = addrs
            .iter()
            .map(|a| parse_addr(a).map_err(|e| invalid_address(e.to_string())))
            .collect::<PyResult<Vec<_>>>()?;
        if addrs.len() > i6p_core::ticket::MAX_TICKET_ADDRS {
            return Err(invalid_ticket("a ticket holds at most 16 addresses".into()));
        }
        Ok(Self(i6p_core::ticket::Ticket {
            peer_id: peer_id.0,
            addrs,
            hash: parse_hash(hash)?,
            size,
            collection,
            rendezvous: contacts(&rendezvous)?,
            key: None,
        }))
    }

    /// A ticket naming its provider by public key alone: the fetching node finds the
    /// provider's addresses by discovery (address book, mDNS, DHT).
    #[staticmethod]
    #[pyo3(signature = (key, hash, size, collection=false))]
    fn by_key(
        key: PyRef<'_, PublicKey>,
        hash: &str,
        size: u64,
        collection: bool,
    ) -> PyResult<Self> {
        let hash = parse_hash(hash)?;
        Ok(Self(i6p_core::ticket::Ticket::by_key(
            key.0, hash, size, collection,
        )))
    }

    /// The provider's public key when the ticket names it by key alone, else None.
    #[getter]
    fn key(&self) -> Option<PublicKey> {
        self.0.key.map(PublicKey)
    }

    /// Parses a one-provider ticket string; any typo is a `ValueError` saying what is wrong.
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Self> {
        i6p_core::ticket::Ticket::parse(text)
            .map(Self)
            .map_err(ticket_error)
    }

    /// Parses a ticket string listing one provider or several: one ticket per provider.
    #[staticmethod]
    fn parse_all(text: &str) -> PyResult<Vec<Self>> {
        i6p_core::ticket::parse_all(text)
            .map(|all| all.into_iter().map(Self).collect())
            .map_err(ticket_error)
    }

    /// One ticket string listing the providers of `tickets` (2 to 8 distinct ones, for the
    /// same blob; a single ticket is returned as it is).
    #[staticmethod]
    fn join(tickets: Vec<PyRef<'_, Ticket>>) -> PyResult<String> {
        let all: Vec<i6p_core::ticket::Ticket> = tickets.iter().map(|t| t.0.clone()).collect();
        i6p_core::ticket::join(&all).map_err(ticket_error)
    }

    /// The provider's PeerId.
    #[getter]
    fn peer_id(&self) -> PeerId {
        PeerId(self.0.peer_id)
    }

    /// The provider's addresses.
    #[getter]
    fn addrs(&self) -> Vec<String> {
        self.0.addrs.iter().map(format_addr).collect()
    }

    /// The blob's BLAKE3 hash (64 hex characters, as `b3sum` prints it).
    #[getter]
    fn hash(&self) -> String {
        hash_hex(&self.0.hash)
    }

    /// The blob's size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.0.size
    }

    /// Whether the ticket names a collection (a directory): its hash and size are those of
    /// the listing, and `Node.fetch_dir` restores the tree.
    #[getter]
    fn collection(&self) -> bool {
        self.0.collection
    }

    /// Rendezvous nodes through which the provider can be reached from behind a firewall or
    /// NAT (introductions, and relaying where the node offers it).
    #[getter]
    fn rendezvous(&self) -> Vec<Contact> {
        self.0.rendezvous.iter().cloned().map(Contact).collect()
    }

    /// The same ticket naming `rendezvous` (up to 4 nodes) instead of the ones it named.
    fn with_rendezvous(&self, rendezvous: Vec<PyRef<'_, Contact>>) -> PyResult<Self> {
        Ok(Self(i6p_core::ticket::Ticket {
            rendezvous: contacts(&rendezvous)?,
            ..self.0.clone()
        }))
    }

    /// The same provider and addresses for another blob (a file of a collection).
    fn for_blob(&self, hash: &str, size: u64) -> PyResult<Self> {
        Ok(Self(i6p_core::ticket::Ticket {
            hash: parse_hash(hash)?,
            size,
            collection: false,
            ..self.0.clone()
        }))
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Ticket(peer={}, hash={}, size={}{}{})",
            self.0.peer_id.short(),
            &hash_hex(&self.0.hash)[..12],
            self.0.size,
            if self.0.collection {
                ", collection"
            } else {
                ""
            },
            match self.0.rendezvous.len() {
                0 => String::new(),
                n => format!(", rendezvous={n}"),
            }
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Ticket>().is_ok_and(|o| o.get().0 == self.0)
    }

    fn __hash__(&self) -> u64 {
        u64::from_be_bytes(self.0.hash[..8].try_into().unwrap_or_default())
    }
}
