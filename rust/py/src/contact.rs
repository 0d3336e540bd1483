//! `Contact`: how to reach a rendezvous node (one that introduces peers and may relay), as
//! `i6p rendezvous` prints it and tickets carry it.

use crate::errors::{core_to_py, invalid_address, invalid_ticket};
use crate::peer_id::PeerId;
use i6p_net::addr::{format_addr, parse_addr};
use pyo3::prelude::*;

/// A rendezvous node's PeerId, addresses, and whether it relays.
#[pyclass(frozen, module = "i6p._core")]
#[derive(Clone)]
pub(crate) struct Contact(pub(crate) i6p_core::contact::Contact);

#[pymethods]
impl Contact {
    /// A contact from its parts.
    #[new]
    #[pyo3(signature = (peer_id, addrs, relay=false))]
    fn new(peer_id: PyRef<'_, PeerId>, addrs: Vec<String>, relay: bool) -> PyResult<Self> {
        if addrs.len() > i6p_core::ticket::MAX_TICKET_ADDRS {
            return Err(invalid_ticket(
                "a contact holds at most 16 addresses".into(),
            ));
        }
        let addrs = addrs
            .iter()
            .map(|a| parse_addr(a).map_err(|e| invalid_address(e.to_string())))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self(i6p_core::contact::Contact {
            peer_id: peer_id.0,
            addrs,
            relay,
        }))
    }

    /// Parses a contact string (`i6p rendezvous` prints one); a typo is an `InvalidTicket`.
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Self> {
        i6p_core::contact::Contact::parse(text)
            .map(Self)
            .map_err(|e| match e {
                i6p_core::CoreError::Malformed { detail, .. } => {
                    invalid_ticket(format!("invalid contact: {detail}"))
                }
                other => core_to_py(other),
            })
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

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Contact(peer={}, addrs={:?}{})",
            self.0.peer_id.short(),
            self.addrs(),
            if self.0.relay { ", relay" } else { "" }
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
