//! Moving bytes across the boundary.
//!
//! `bytes` objects, and memoryviews of them, are shared with the engine without a copy (the
//! `Bytes` keeps a reference to the immutable Python object); other buffer-protocol objects
//! are copied once, in Rust, while the GIL is held, because a borrowed buffer of a mutable
//! object must never outlive the call that lent it.
//!
//! Reads into caller memory (`readinto`) copy into the caller's buffer on the event loop's
//! thread, when the read is delivered; the buffer is looked up again at that moment, never
//! kept across an await.

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PySlice};

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

/// The most memory a thread keeps for joining pieces between reads.
const MAX_SCRATCH: usize = 4 << 20;

thread_local! {
    /// Where pieces are joined before one copy into a caller's buffer; kept between reads
    /// (on the event loop's thread), since a fresh large allocation per read costs page faults.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Copies the front of `pieces` into `obj`'s buffer, as much as fits, and takes what it
/// copied off `pieces` (what is left stays, in order). On an error nothing was taken.
///
/// The buffer is filled through `PyBuffer::copy_from_slice` (the GIL is held; no borrowed
/// slice of the caller's memory exists): from the one piece when a single piece fills it, else
/// from the pieces joined once. A buffer filled only in part gets a byte view of its front.
pub(crate) fn copy_into(obj: &Bound<'_, PyAny>, pieces: &mut Vec<Bytes>) -> PyResult<usize> {
    let py = obj.py();
    let room = writable(obj)?.len_bytes();
    let total = pieces.iter().map(Bytes::len).sum::<usize>();
    let n = room.min(total);
    if n == 0 {
        return Ok(0);
    }
    let target = if n == room {
        writable(obj)?
    } else {
        let front = PyMemoryView::from(obj)?
            .call_method1("cast", ("B",))?
            .get_item(PySlice::new(
                py,
                0,
                isize::try_from(n).unwrap_or(isize::MAX),
                1,
            ))?;
        writable(&front)?
    };
    match pieces.first() {
        Some(first) if first.len() >= n => target.copy_from_slice(py, &first[..n])?,
        _ => SCRATCH.with_borrow_mut(|joined| {
            joined.clear();
            for piece in pieces.iter() {
                let want = (n - joined.len()).min(piece.len());
                joined.extend_from_slice(&piece[..want]);
            }
            let copied = target.copy_from_slice(py, joined);
            if joined.capacity() > MAX_SCRATCH {
                *joined = Vec::new();
            }
            copied
        })?,
    }
    let mut left = n;
    let mut rest = Vec::new();
    for mut piece in pieces.drain(..) {
        if left >= piece.len() {
            left -= piece.len();
        } else {
            rest.push(piece.split_off(left));
            left = 0;
        }
    }
    *pieces = rest;
    Ok(n)
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
