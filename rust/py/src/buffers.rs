//! Moving bytes across the boundary.
//!
//! `bytes` objects are shared with the engine without a copy (the `Bytes` keeps a reference
//! to the Python object); other buffer-protocol objects are copied once, in Rust, while the
//! GIL is held, because a borrowed buffer must never outlive the call that lent it.

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes};

/// Owned bytes from any buffer-protocol object.
pub(crate) fn owned_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyByteArray>() {
        let backed: PyBackedBytes = obj.extract()?;
        return Ok(Bytes::from_owner(backed));
    }
    let buffer = PyBuffer::<u8>::get(obj)?;
    Ok(Bytes::from(buffer.to_vec(obj.py())?))
}

/// Engine bytes that become a Python `bytes` object when handed back.
pub(crate) struct PyBytesOut(pub(crate) Bytes);

impl<'py> IntoPyObject<'py> for PyBytesOut {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}
