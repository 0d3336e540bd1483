//! The Mainline DHT as Python sees it: a resolved record (`DhtRecord`), and a local DHT of
//! its own for trying discovery offline (`DhtTestnet`, `i6p dht-testnet`).

use crate::contact::Contact;
use crate::errors::to_py;
use crate::public_key::PublicKey;
use i6p_net::addr::format_addr;
use i6p_net::discovery::dht::{LocalTestnet, Resolved};
use pyo3::prelude::*;

/// A peer's record from the DHT, verified (signature, key, time window) and decoded.
#[pyclass(frozen, module = "i6p._core", get_all)]
pub(crate) struct DhtRecord {
    /// The key it was found under and signed by.
    key: PublicKey,
    /// Its BEP 44 sequence number (higher is newer).
    seq: i64,
    /// The I6P protocol version the peer speaks.
    protocol: u16,
    /// When it was issued (unix seconds) and for how long it holds (seconds).
    issued: u64,
    valid_for: u32,
    /// Whether the peer relays for others.
    relay: bool,
    /// Its addresses (empty unless it publishes them).
    addrs: Vec<String>,
    /// Nodes through which it can be reached.
    contacts: Vec<Contact>,
}

impl From<Resolved> for DhtRecord {
    fn from(found: Resolved) -> Self {
        let r = found.record;
        Self {
            key: PublicKey(found.key),
            seq: found.seq,
            protocol: r.protocol,
            issued: r.issued,
            valid_for: r.valid_for,
            relay: r.relay,
            addrs: r.addrs.iter().map(format_addr).collect(),
            contacts: r.contacts.into_iter().map(Contact).collect(),
        }
    }
}

#[pymethods]
impl DhtRecord {
    fn __repr__(&self) -> String {
        format!(
            "DhtRecord(peer={}, seq={}, addrs={}, contacts={})",
            self.key.0.peer_id().short(),
            self.seq,
            self.addrs.len(),
            self.contacts.len()
        )
    }
}

/// A DHT of its own on 127.0.0.1 (2 to 1000 nodes), for tests and trying discovery offline;
/// it runs until the object goes.
#[pyclass(module = "i6p._core")]
pub(crate) struct DhtTestnet(LocalTestnet);

#[pymethods]
impl DhtTestnet {
    /// Starts `nodes` DHT nodes on 127.0.0.1 (blocks while they bootstrap).
    #[new]
    fn new(py: Python<'_>, nodes: usize) -> PyResult<Self> {
        let testnet = py.detach(|| LocalTestnet::start(nodes)).map_err(to_py)?;
        Ok(Self(testnet))
    }

    /// `host:port` of its nodes, for `Node.bind(dht_bootstrap=...)`.
    #[getter]
    fn bootstrap(&self) -> Vec<String> {
        self.0.bootstrap().to_vec()
    }
}
