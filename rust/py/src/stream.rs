//! `Stream`: a bidirectional QUIC stream. Reads and writes may run concurrently; two reads
//! (or two writes) on one stream are serialised.
//!
//! A stream whose last reference goes without `finish()` or `reset()` (a crashed handler, a
//! forgotten object) is reset with `ABANDONED`, never finished: quinn would finish it on
//! drop, and the peer would take a partial reply for a whole one.
//!
//! Reads of up to `n` bytes (`read_now`, `readinto_now`) run on the calling thread only: they
//! take what has arrived, or return `None`, and the caller then awaits `readable()`, which
//! waits in the engine and takes nothing. Bytes leave the stream only in the caller's own
//! step, so cancelling its task can never drop a read result (asyncio hands a completed
//! result to a task that was cancelled meanwhile as a `CancelledError`).
//!
//! Writes first try to complete on the calling thread, when the stream has room (its send
//! window, so backpressure holds), and then return an awaitable that is complete already;
//! only a call that must wait goes to the engine's runtime, holding the half's lock it took,
//! so calls keep their order. Awaitables of the engine complete on the loop's thread
//! (`completion`).

use crate::buffers::{copy_into, owned_bytes, writable};
use crate::codes::reset_code;
use crate::completion::on_loop as future;
use crate::errors::{incomplete_read, invalid_argument, no_separator, to_py};
use crate::handoff::{ReadBytes, ReadPieces};
use crate::runtime::ready;
use crate::tcp::TcpConnection;
use bytes::Bytes;
use i6p_core::codes::ABANDONED;
use i6p_net::session::AppHandle;
use i6p_net::splice::splice_tcp;
use i6p_net::stream::Until;
use i6p_net::{RecvStream, SendStream};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The largest `read(-1)` result unless the caller sets `limit`: the peer decides how much
/// a stream carries, so reading it all must not take what memory it likes.
const DEFAULT_READ_LIMIT: usize = 16 << 20;

/// The longest `readuntil` result unless the caller sets `limit` (asyncio's default).
const DEFAULT_LINE_LIMIT: usize = 64 << 10;

/// Whether writes and `read` may complete on the calling thread; off only in benchmarks that
/// measure what it saves (`i6p._core.testing.set_stream_fast_path`).
static FAST_PATH: AtomicBool = AtomicBool::new(true);

/// Turns completing on the calling thread on or off (benchmarks only).
pub(crate) fn set_fast_path(on: bool) {
    FAST_PATH.store(on, Ordering::Relaxed);
}

/// The lock on `half` if it is free and the fast path is on.
fn lock_now<T>(half: &Arc<Mutex<T>>) -> Option<OwnedMutexGuard<T>> {
    if FAST_PATH.load(Ordering::Relaxed) {
        half.clone().try_lock_owned().ok()
    } else {
        None
    }
}

/// The sending half, reset with `ABANDONED` when dropped before it ended. It lives inside
/// the mutex, so it drops only once the last in-flight write let go of it.
struct Sending(SendStream);

impl Drop for Sending {
    fn drop(&mut self) {
        if !self.0.is_ended() {
            self.0.reset(u64::from(ABANDONED));
        }
    }
}

/// A bidirectional stream.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct Stream {
    id: u64,
    send: Arc<Mutex<Sending>>,
    recv: Arc<Mutex<RecvStream>>,
    /// Keeps the session open while the application holds the stream.
    _hold: AppHandle,
}

impl Stream {
    pub(crate) fn new(send: SendStream, recv: RecvStream, hold: AppHandle) -> Self {
        Self {
            id: send.id(),
            send: Arc::new(Mutex::new(Sending(send))),
            recv: Arc::new(Mutex::new(recv)),
            _hold: hold,
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

    /// Sends all of `data` (any buffer-protocol object); complete at once when the stream
    /// takes it all now, else waits for flow-control credit for the rest.
    fn write<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let mut data: Bytes = owned_bytes(data)?;
        if let Some(mut send) = lock_now(&self.send) {
            if send.0.try_write(&mut data).map_err(to_py)? {
                return ready(py, py.None());
            }
            return future(py, async move { send.0.write(data).await.map_err(to_py) });
        }
        let send = self.send.clone();
        future(py, async move {
            send.lock().await.0.write(data).await.map_err(to_py)
        })
    }

    /// Ends the sending side and waits until the peer acknowledged every byte.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let send = self.send.clone();
        future(py, async move {
            send.lock().await.0.finish().await.map_err(to_py)
        })
    }

    /// Up to `n` bytes (at least one unless at the end, where it returns b""); with n < 0,
    /// everything until the end of the stream, at most `limit` bytes.
    #[pyo3(signature = (n=-1, *, limit=DEFAULT_READ_LIMIT))]
    fn read<'py>(&self, py: Python<'py>, n: i64, limit: usize) -> PyResult<Bound<'py, PyAny>> {
        let Ok(n) = usize::try_from(n) else {
            let recv = self.recv.clone();
            return future(py, async move {
                let mut recv = recv.lock_owned().await;
                let pieces = vec![recv.read_to_end(limit).await.map_err(to_py)?];
                Ok(ReadPieces { pieces, recv })
            });
        };
        let held = lock_now(&self.recv);
        if let Some(mut recv) = held {
            if let Some(now) = recv.try_read_pieces(n) {
                let pieces = now.map_err(to_py)?.unwrap_or_default();
                return ready(py, ReadPieces { pieces, recv });
            }
            return future(py, read_pieces(recv, n));
        }
        let recv = self.recv.clone();
        future(
            py,
            async move { read_pieces(recv.lock_owned().await, n).await },
        )
    }

    /// Up to `n` bytes that have arrived, now: at least one, `b""` at the end of the stream,
    /// `None` when a read would have to wait (then `readable()`). Nothing is taken off the
    /// stream unless it is returned, so the caller's task cannot be cancelled in between.
    fn read_now<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Ok(mut recv) = self.recv.clone().try_lock_owned() else {
            return Ok(None);
        };
        let Some(now) = recv.try_read_pieces(n) else {
            return Ok(None);
        };
        let pieces = now.map_err(to_py)?.unwrap_or_default();
        Ok(Some(
            ReadPieces { pieces, recv }.into_pyobject(py)?.into_any(),
        ))
    }

    /// Fills the front of `buffer` (a writable, contiguous bytes-like object) with bytes that
    /// have arrived, now, and returns how many: at least one, 0 at the end of the stream or
    /// for an empty buffer, `None` when a read would have to wait (then `readable()`). What
    /// does not fit stays on the stream; nothing is taken unless it was copied.
    fn readinto_now(&self, buffer: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
        let n = writable(buffer)?.len_bytes();
        let Ok(mut recv) = self.recv.clone().try_lock_owned() else {
            return Ok(None);
        };
        let Some(now) = recv.try_read_pieces(n) else {
            return Ok(None);
        };
        let mut pieces = now.map_err(to_py)?.unwrap_or_default();
        let copied = copy_into(buffer, &mut pieces);
        for piece in pieces.into_iter().rev() {
            recv.unread(piece);
        }
        copied.map(Some)
    }

    /// Waits until `read_now`/`readinto_now` would not return `None` (bytes arrived, the
    /// stream ended, or it failed: the error is raised). Takes nothing off the stream.
    fn readable<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let recv = self.recv.clone();
        future(py, async move {
            recv.lock().await.readable().await.map_err(to_py)
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

    /// The bytes up to and including `sep`, at most `limit` bytes; past it `StreamTooLong`
    /// (everything stays buffered); at the end without `sep`, `IncompleteRead` (with the bytes
    /// that arrived as its `partial`). Bytes after `sep` stay buffered for the next read.
    #[pyo3(signature = (sep=b"\n".to_vec(), limit=DEFAULT_LINE_LIMIT))]
    fn readuntil<'py>(
        &self,
        py: Python<'py>,
        sep: Vec<u8>,
        limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        if sep.is_empty() {
            return Err(invalid_argument("the separator must not be empty"));
        }
        let recv = self.recv.clone();
        future(py, async move {
            let mut recv = recv.lock_owned().await;
            match recv.read_until(&sep, limit).await.map_err(to_py)? {
                Until::Found(data) => Ok(ReadBytes {
                    data: Some(data),
                    recv,
                }),
                Until::Overrun { limit } => Err(no_separator(limit)),
                Until::Ended(partial) => Err(incomplete_read(partial)),
            }
        })
    }

    /// True once `finish()` or `reset()` was called on this side.
    #[getter]
    fn send_ended(&self) -> bool {
        // A write in flight holds the lock, and a stream being written has not ended.
        self.send
            .try_lock()
            .map(|s| s.0.is_ended())
            .unwrap_or(false)
    }

    /// Abandons sending: the peer's reads fail with `code`.
    #[pyo3(signature = (code=None))]
    fn reset<'py>(
        &self,
        py: Python<'py>,
        code: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let code = code.map_or(Ok(0), |c| reset_code(c, "reset"))?;
        let send = self.send.clone();
        future(py, async move {
            send.lock().await.0.reset(code);
            Ok(())
        })
    }

    /// Resets with `ABANDONED` (code 9) unless `finish()` or `reset()` came first: the
    /// application left the stream by an exception.
    fn abandon<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let send = self.send.clone();
        future(py, async move {
            let mut send = send.lock().await;
            if !send.0.is_ended() {
                send.0.reset(u64::from(ABANDONED));
            }
            Ok(())
        })
    }

    /// Asks the peer to stop sending: its writes fail with `code`.
    #[pyo3(signature = (code=None))]
    fn stop<'py>(
        &self,
        py: Python<'py>,
        code: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let code = code.map_or(Ok(0), |c| reset_code(c, "stop"))?;
        let recv = self.recv.clone();
        future(py, async move {
            recv.lock().await.stop(code);
            Ok(())
        })
    }

    /// Carries `tcp` over this stream both ways in the engine until both directions ended
    /// (`i6p_net::splice`); returns (bytes to the stream, bytes to TCP). A failure of either
    /// side resets both and raises. The stream is the splice's until then: reads and writes
    /// wait for it.
    fn splice_tcp<'py>(
        &self,
        py: Python<'py>,
        tcp: &Bound<'py, TcpConnection>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tcp = tcp.get().take()?;
        let (send, recv) = (self.send.clone(), self.recv.clone());
        future(py, async move {
            let mut send = send.lock_owned().await;
            let mut recv = recv.lock_owned().await;
            let spliced = splice_tcp(tcp, &mut send.0, &mut recv)
                .await
                .map_err(to_py)?;
            Ok((spliced.to_stream, spliced.to_tcp))
        })
    }

    fn __repr__(&self) -> String {
        format!("Stream(id={})", self.id)
    }
}

/// Waits for up to `n` bytes on a locked receiving half.
async fn read_pieces(mut recv: OwnedMutexGuard<RecvStream>, n: usize) -> PyResult<ReadPieces> {
    let pieces = recv.read_pieces(n).await.map_err(to_py)?;
    Ok(ReadPieces {
        pieces: pieces.unwrap_or_default(),
        recv,
    })
}
