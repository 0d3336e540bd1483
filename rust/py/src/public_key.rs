//! `PublicKey`: a node's Ed25519 public key; text form 52 z-base-32 characters. It is the
//! handle to share for finding a peer by its key alone (a BEP 44 record is looked up by the
//! key, not by its hash); the PeerId derives from it.

use crate::errors::core_to_py;
use crate::peer_id::PeerId;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// An Ed25519 public key.
#[pyclass(frozen, module = "i6p._core")]
#[derive(Clone, Copy)]
pub(crate) struct PublicKey(pub(crate) i6p_core::PublicKey);

#[pymethods]
impl PublicKey {
    /// Parses the 52-character z-base-32 text form (case-insensitive).
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Self> {
        text.parse().map(Self).map_err(core_to_py)
    }

    /// Wraps 32 raw bytes; fails on bytes that are not an Ed25519 point.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        let raw: [u8; 32] = data.try_into().map_err(|_| {
            core_to_py(i6p_core::CoreError::InvalidKey(format!(
                "a public key is 32 bytes, got {}",
                data.len()
            )))
        })?;
        i6p_core::PublicKey::from_bytes(&raw)
            .map(Self)
            .map_err(core_to_py)
    }

    /// The PeerId this key stands for (SHA-256 of the key).
    #[getter]
    fn peer_id(&self) -> PeerId {
        PeerId(self.0.peer_id())
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!("PublicKey('{}')", self.0)
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.to_bytes())
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.0.to_bytes().hash(&mut h);
        h.finish()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PublicKey>().is_ok_and(|o| o.get().0 == self.0)
    }
}
