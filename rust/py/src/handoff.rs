//! Cancel-safe hand-off of results to Python.
//!
//! When an asyncio task is cancelled just as its engine future completes, the result is
//! dropped instead of delivered. For results that must not be lost (an accepted session, an
//! accepted stream, bytes read from a stream) the value is wrapped here: converting it to
//! Python consumes it, and dropping it undelivered gives it back to where it came from.

use crate::buffers::PyBytesOut;
use crate::session::Session;
use crate::stream::Stream;
use bytes::Bytes;
use i6p_net::RecvStream;
use pyo3::prelude::*;
use tokio::sync::OwnedMutexGuard;

/// An accepted session; returned to the node's queue if undelivered.
pub(crate) struct AcceptedSession {
    pub(crate) session: Option<i6p_net::Session>,
    pub(crate) node: i6p_net::Node,
    pub(crate) identity: i6p_core::Identity,
}

impl<'py> IntoPyObject<'py> for AcceptedSession {
    type Target = Session;
    type Output = Bound<'py, Session>;
    type Error = PyErr;

    fn into_pyobject(mut self, py: Python<'py>) -> PyResult<Self::Output> {
        let session = self
            .session
            .take()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("session already taken"))?;
        Bound::new(py, Session::new(session, self.identity.clone()))
    }
}

impl Drop for AcceptedSession {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.node.return_session(session);
        }
    }
}

/// An accepted stream; returned to the session's queue if undelivered.
pub(crate) struct AcceptedStream {
    pub(crate) stream: Option<(i6p_net::SendStream, RecvStream)>,
    pub(crate) session: i6p_net::Session,
}

impl<'py> IntoPyObject<'py> for AcceptedStream {
    type Target = Stream;
    type Output = Bound<'py, Stream>;
    type Error = PyErr;

    fn into_pyobject(mut self, py: Python<'py>) -> PyResult<Self::Output> {
        let (send, recv) = self
            .stream
            .take()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("stream already taken"))?;
        let hold = self.session.app_handle();
        Bound::new(py, Stream::new(send, recv, hold))
    }
}

impl Drop for AcceptedStream {
    fn drop(&mut self) {
        if let Some((send, recv)) = self.stream.take() {
            self.session.return_stream(send, recv);
        }
    }
}

/// Bytes read from a stream. The stream stays locked until they are delivered, so no other
/// read can overtake them; undelivered, they go back to the front of the stream's buffer.
pub(crate) struct ReadBytes {
    pub(crate) data: Option<Bytes>,
    pub(crate) recv: OwnedMutexGuard<RecvStream>,
}

impl<'py> IntoPyObject<'py> for ReadBytes {
    type Target = pyo3::types::PyBytes;
    type Output = Bound<'py, pyo3::types::PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(mut self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        let data = self.data.take().unwrap_or_default();
        PyBytesOut(data).into_pyobject(py)
    }
}

/// Pieces read from a stream, joined into one Python `bytes` with a single copy; given back
/// to the stream (in order) if the result is never delivered.
pub(crate) struct ReadPieces {
    pub(crate) pieces: Vec<Bytes>,
    pub(crate) recv: OwnedMutexGuard<RecvStream>,
}

impl<'py> IntoPyObject<'py> for ReadPieces {
    type Target = pyo3::types::PyBytes;
    type Output = Bound<'py, pyo3::types::PyBytes>;
    type Error = PyErr;

    fn into_pyobject(mut self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        let pieces = std::mem::take(&mut self.pieces);
        let total = pieces.iter().map(Bytes::len).sum();
        pyo3::types::PyBytes::new_with(py, total, |buf| {
            let mut at = 0;
            for piece in &pieces {
                buf[at..at + piece.len()].copy_from_slice(piece);
                at += piece.len();
            }
            Ok(())
        })
    }
}

impl Drop for ReadPieces {
    fn drop(&mut self) {
        for piece in std::mem::take(&mut self.pieces).into_iter().rev() {
            self.recv.unread(piece);
        }
    }
}

impl Drop for ReadBytes {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            self.recv.unread(data);
        }
    }
}

/// Bytes with no stream to return to (a range read that owns its session).
pub(crate) struct ReadBytesOwned(pub(crate) Bytes);

impl<'py> IntoPyObject<'py> for ReadBytesOwned {
    type Target = pyo3::types::PyBytes;
    type Output = Bound<'py, pyo3::types::PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        PyBytesOut(self.0).into_pyobject(py)
    }
}
