//! `Identity`: a node's Ed25519 key pair. Key files are handled in Python (`i6p.identity`);
//! this class never shows the secret except through the explicitly named PEM export.

use crate::errors::core_to_py;
use crate::peer_id::PeerId;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// An Ed25519 key pair.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct Identity(pub(crate) i6p_core::Identity);

#[pymethods]
impl Identity {
    /// A new random identity.
    #[staticmethod]
    fn generate() -> Self {
        Self(i6p_core::Identity::generate())
    }

    /// Parses a PKCS#8 PEM private key.
    #[staticmethod]
    fn from_pkcs8_pem(pem: &str) -> PyResult<Self> {
        i6p_core::Identity::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(core_to_py)
    }

    /// The secret key as PKCS#8 PEM. Only for writing the key file.
    fn private_key_pem(&self) -> PyResult<String> {
        let pem = self.0.to_pkcs8_pem().map_err(core_to_py)?;
        Ok(pem.as_str().to_owned())
    }

    /// The raw 32-byte public key.
    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.public_key().to_bytes())
    }

    /// The public key, as the handle to share (its text form is 52 z-base-32 characters).
    #[getter]
    fn key(&self) -> crate::public_key::PublicKey {
        crate::public_key::PublicKey(self.0.public_key())
    }

    /// The PeerId of this identity.
    #[getter]
    fn peer_id(&self) -> PeerId {
        PeerId(self.0.peer_id())
    }

    /// An Ed25519 signature (64 bytes) over `data`.
    fn sign<'py>(&self, py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.sign(data))
    }

    /// Checks a signature by the holder of `public_key` (32 bytes).
    #[staticmethod]
    fn verify(public_key: &[u8], data: &[u8], signature: &[u8]) -> bool {
        let (Ok(key), Ok(sig)) = (
            <[u8; 32]>::try_from(public_key),
            <[u8; 64]>::try_from(signature),
        ) else {
            return false;
        };
        i6p_core::PublicKey::from_bytes(&key).is_ok_and(|k| k.verify(data, &sig))
    }

    fn __repr__(&self) -> String {
        format!("Identity(peer_id={})", self.0.peer_id())
    }
}
