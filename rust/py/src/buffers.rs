//! Moving bytes across the boundary.
//!
//! `bytes` objects, and memoryviews of them, are shared with the engine without a copy (the
//! `Bytes` keeps a reference to the immutable Python object); other buffer-protocol objects
//! are copied once, in Rust, while the GIL is held, because a borrowed buffer of a mutable
//! object must never outlive the call that lent it.
//!
//! Reads into caller memory (`readinto`) copy straight into the caller's buffer while the GIL
//! is held; the buffer is looked up again at that moment, never kept across an await.

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

/// Owned bytes from any buffer-protocol object.
pub(crate) fn owned_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyByteArray>() {
        let backed: PyBackedBytes = obj.extract()?;
        return Ok(Bytes::from_owner(backed));
    }
    let buffer = PyBuffer::<u8>::get(obj)?;
    if let Some(shared) = view_of_bytes(obj, &buffer)? {
        return Ok(shared);
    }
    Ok(Bytes::from(buffer.to_vec(obj.py())?))
}

/// A contiguous memoryview of a `bytes` object as a slice of that object, without a copy.
fn view_of_bytes(obj: &Bound<'_, PyAny>, view: &PyBuffer<u8>) -> PyResult<Option<Bytes>> {
    if !obj.is_instance_of::<PyMemoryView>() || !view.is_c_contiguous() {
        return Ok(None);
    }
    let base = obj.getattr("obj")?;
    if !base.is_instance_of::<PyBytes>() {
        return Ok(None);
    }
    let backed: PyBackedBytes = base.extract()?;
    // Where the view starts inside the bytes object; a view outside it is not sliced.
    let start = (view.buf_ptr() as usize).wrapping_sub(backed.as_ptr() as usize);
    let end = start.checked_add(view.len_bytes());
    match end {
        Some(end) if end <= backed.len() => Ok(Some(Bytes::from_owner(backed).slice(start..end))),
        _ => Ok(None),
    }
}

/// The caller's buffer for `readinto`: writable, C-contiguous, of bytes.
pub(crate) fn writable(obj: &Bound<'_, PyAny>) -> PyResult<PyBuffer<u8>> {
    let wrong = || {
        PyTypeError::new_err(format!(
            "readinto() needs a writable, contiguous bytes-like object (bytearray, \
             memoryview), not {}",
            obj.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    };
    let buffer = PyBuffer::<u8>::get(obj).map_err(|_| wrong())?;
    if buffer.readonly() || !buffer.is_c_contiguous() {
        return Err(wrong());
    }
    Ok(buffer)
}

/// Copies `pieces` into the front of `obj`'s buffer as far as they fit; returns the bytes
/// copied and what did not fit (the rest of the pieces, in order).
pub(crate) fn copy_into(
    obj: &Bound<'_, PyAny>,
    pieces: Vec<Bytes>,
) -> PyResult<(usize, Vec<Bytes>)> {
    let buffer = writable(obj)?;
    // pyo3 marks this slice deprecated since other native code that released the GIL could
    // write the same memory at the same time; no code here does, the GIL is held, and the
    // export keeps the object from resizing until `buffer` drops. It is the only way to fill
    // part of a caller's buffer without `unsafe` (forbidden here) or an extra copy.
    #[allow(deprecated)]
    let cells = buffer
        .as_mut_slice(obj.py())
        .ok_or_else(|| PyTypeError::new_err("readinto() needs a writable, contiguous buffer"))?;
    let mut at = 0;
    let mut rest = Vec::new();
    for mut piece in pieces {
        let n = piece.len().min(cells.len() - at);
        for (cell, byte) in cells[at..at + n].iter().zip(&piece[..n]) {
            cell.set(*byte);
        }
        at += n;
        if n < piece.len() {
            rest.push(piece.split_off(n));
        }
    }
    Ok((at, rest))
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
