//! `Contact`: how to reach a node: a rendezvous node (one that introduces peers and may
//! relay), as `i6p rendezvous` prints it and tickets carry it, or a peer behind rendezvous
//! nodes, as `i6p expose` prints it.

use crate::errors::{core_to_py, invalid_address, invalid_ticket};
use crate::peer_id::PeerId;
use i6p_net::addr::{format_addr, parse_addr};
use pyo3::prelude::*;

/// A node's PeerId, addresses, whether it relays, and the rendezvous nodes it is reached
/// through.
#[pyclass(frozen, module = "i6p._core")]
#[derive(Clone)]
pub(crate) struct Contact(pub(crate) i6p_core::contact::Contact);

#[pymethods]
impl Contact {
    /// A contact from its parts.
    #[new]
    #[pyo3(signature = (peer_id, addrs, relay=false, via=Vec::new()))]
    fn new(
        peer_id: PyRef<'_, PeerId>,
        addrs: Vec<String>,
        relay: bool,
        via: Vec<PyRef<'_, Contact>>,
    ) -> PyResult<Self> {
        if addrs.len() > i6p_core::ticket::MAX_TICKET_ADDRS {
            return Err(invalid_ticket(
                "a contact holds at most 16 addresses".into(),
            ));
        }
        let addrs = addrs
            .iter()
            .map(|a| parse_addr(a).map_err(|e| invalid_address(e.to_string())))
            .collect::<PyResult<Vec<_>>>()?;
        let contact = i6p_core::contact::Contact {
            peer_id: peer_id.0,
            addrs,
            relay,
            via: via.iter().map(|c| c.0.clone()).collect(),
        };
        contact.validate().map_err(invalid_contact)?;
        Ok(Self(contact))
    }

    /// Parses a contact string (`i6p rendezvous` prints one); a typo is an `InvalidTicket`.
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Self> {
        i6p_core::contact::Contact::parse(text)
            .map(Self)
            .map_err(invalid_contact)
    }

    /// The node's PeerId.
    #[getter]
    fn peer_id(&self) -> PeerId {
        PeerId(self.0.peer_id)
    }

    /// Where it listens.
    #[getter]
    fn addrs(&self) -> Vec<String> {
        self.0.addrs.iter().map(format_addr).collect()
    }

    /// Whether it relays traffic when no direct path forms.
    #[getter]
    fn relay(&self) -> bool {
        self.0.relay
    }

    /// The rendezvous nodes through which it can be reached (dial it `via` one of them).
    #[getter]
    fn via(&self) -> Vec<Contact> {
        self.0.via.iter().cloned().map(Self).collect()
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        let via = self
            .0
            .via
            .iter()
            .map(|c| c.peer_id.short())
            .collect::<Vec<_>>();
        format!(
            "Contact(peer={}, addrs={:?}{}{})",
            self.0.peer_id.short(),
            self.addrs(),
            if self.0.relay { ", relay" } else { "" },
            if via.is_empty() {
                String::new()
            } else {
                format!(", via={via:?}")
            }
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Contact>().is_ok_and(|o| o.get().0 == self.0)
    }

    fn __hash__(&self) -> u64 {
        let id = self.0.peer_id;
        u64::from_be_bytes(id.as_bytes()[..8].try_into().unwrap_or_default())
    }
}

/// A contact that cannot be written or read, as `InvalidTicket` (contacts are typed like
/// tickets, and fail like them).
fn invalid_contact(e: i6p_core::CoreError) -> PyErr {
    match e {
        i6p_core::CoreError::Malformed { detail, .. } => {
            invalid_ticket(format!("invalid contact: {detail}"))
        }
        other => core_to_py(other),
    }
}
