//! `Stream`: a bidirectional QUIC stream. Reads and writes may run concurrently; two reads
//! (or two writes) on one stream are serialised.

use crate::buffers::owned_bytes;
use crate::errors::{invalid_argument, to_py};
use crate::handoff::{ReadBytes, ReadPieces};
use crate::runtime::future;
use bytes::Bytes;
use i6p_net::{RecvStream, SendStream};
use pyo3::prelude::*;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The largest `read(-1)` result unless the caller sets `limit`: the peer decides how much
/// a stream carries, so reading it all must not take what memory it likes.
const DEFAULT_READ_LIMIT: usize = 16 << 20;

/// A bidirectional stream.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct Stream {
    id: u64,
    send: Arc<Mutex<SendStream>>,
    recv: Arc<Mutex<RecvStream>>,
}

impl Stream {
    pub(crate) fn new(send: SendStream, recv: RecvStream) -> Self {
        Self {
            id: send.id(),
            send: Arc::new(Mutex::new(send)),
            recv: Arc::new(Mutex::new(recv)),
        }
    }
}

#[pymethods]
impl Stream {
    /// The QUIC stream id.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Sends all of `data` (any buffer-protocol object).
    fn write<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let data: Bytes = owned_bytes(data)?;
        let send = self.send.clone();
        future(py, async move {
            send.lock().await.write(data).await.map_err(to_py)
        })
    }

    /// Ends the sending side and waits until the peer acknowledged every byte.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let send = self.send.clone();
        future(py, async move {
            send.lock().await.finish().await.map_err(to_py)
        })
    }

    /// Up to `n` bytes (at least one unless at the end, where it returns b""); with n < 0,
    /// everything until the end of the stream, at most `limit` bytes.
    #[pyo3(signature = (n=-1, *, limit=DEFAULT_READ_LIMIT))]
    fn read<'py>(&self, py: Python<'py>, n: i64, limit: usize) -> PyResult<Bound<'py, PyAny>> {
        let recv = self.recv.clone();
        future(py, async move {
            let mut recv = recv.lock_owned().await;
            let pieces = match usize::try_from(n) {
                Err(_) => recv.read_to_end(limit).await.map(|b| vec![b]),
                Ok(n) => recv.read_pieces(n).await.map(Option::unwrap_or_default),
            }
            .map_err(to_py)?;
            Ok(ReadPieces { pieces, recv })
        })
    }

    /// Exactly `n` bytes; raises `StreamError` if the stream ends first (what did arrive
    /// stays readable).
    fn readexactly<'py>(&self, py: Python<'py>, n: i64) -> PyResult<Bound<'py, PyAny>> {
        let n = usize::try_from(n).map_err(|_| invalid_argument("n must be >= 0"))?;
        let recv = self.recv.clone();
        future(py, async move {
            let mut recv = recv.lock_owned().await;
            let data = recv.read_exact(n).await.map_err(to_py)?;
            Ok(ReadBytes {
                data: Some(data),
                recv,
            })
        })
    }

    /// Abandons sending: the peer's reads fail with `code`.
    #[pyo3(signature = (code=0))]
    fn reset<'py>(&self, py: Python<'py>, code: u32) -> PyResult<Bound<'py, PyAny>> {
        let send = self.send.clone();
        future(py, async move {
            send.lock().await.reset(code);
            Ok(())
        })
    }

    /// Asks the peer to stop sending: its writes fail with `code`.
    #[pyo3(signature = (code=0))]
    fn stop<'py>(&self, py: Python<'py>, code: u32) -> PyResult<Bound<'py, PyAny>> {
        let recv = self.recv.clone();
        future(py, async move {
            recv.lock().await.stop(code);
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!("Stream(id={})", self.id)
    }
}
