//! `PeerId`: SHA-256 of a node's Ed25519 public key; text form 64 lowercase hex characters.

use crate::errors::{core_to_py, invalid_peer_id};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// A node's identity, independent of its addresses.
#[pyclass(frozen, module = "i6p._core")]
#[derive(Clone, Copy)]
pub(crate) struct PeerId(pub(crate) i6p_core::PeerId);

#[pymethods]
impl PeerId {
    /// Parses 64 hex characters.
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Self> {
        text.parse().map(Self).map_err(core_to_py)
    }

    /// Wraps 32 raw bytes.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        let raw: [u8; 32] = data
            .try_into()
            .map_err(|_| invalid_peer_id(format!("a peer id is 32 bytes, got {}", data.len())))?;
        Ok(Self(i6p_core::PeerId::from_bytes(raw)))
    }

    /// The peer id of a 32-byte Ed25519 public key.
    #[staticmethod]
    fn from_public_key(key: &[u8]) -> PyResult<Self> {
        let raw: [u8; 32] = key.try_into().map_err(|_| {
            invalid_peer_id(format!(
                "an Ed25519 public key is 32 bytes, got {}",
                key.len()
            ))
        })?;
        Ok(Self(i6p_core::PeerId::from_public_key(&raw)))
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!("PeerId('{}')", self.0)
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.as_bytes())
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PeerId>().is_ok_and(|o| o.get().0 == self.0)
    }

    /// The first 12 hex characters, for display.
    fn short(&self) -> String {
        self.0.short()
    }
}
