//! Blob transfers on a `Node`: serving files, and fetching them verified and resumable.

use crate::errors::to_py;
use crate::handoff::ReadBytesOwned;
use crate::options::int_in;
use crate::results::FetchResult;
use crate::runtime::future;
use crate::ticket::{hash_hex, Ticket};
use i6p_net::fetch::{fetch_range, fetch_tickets, FetchOptions, Progress};
use i6p_net::{NetError, Node};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The most bytes one `read_range` returns: they are held in memory.
const MAX_RANGE: u64 = 1 << 30;

/// Live progress of a fetch: read by Python at its own pace, written by the engine.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct FetchProgress(pub(crate) Arc<Progress>);

#[pymethods]
impl FetchProgress {
    /// Bytes verified and durable on disk.
    #[getter]
    fn done(&self) -> u64 {
        self.0.done.load(Ordering::Relaxed)
    }

    /// The blob's size.
    #[getter]
    fn total(&self) -> u64 {
        self.0.total.load(Ordering::Relaxed)
    }
}

/// Adds a file; the awaitable gives (hash hex, size, canonical path).
pub(crate) fn add_path<'py>(
    py: Python<'py>,
    node: Node,
    path: PathBuf,
) -> PyResult<Bound<'py, PyAny>> {
    future(py, async move {
        let store = node.store().clone();
        let blob = tokio::task::spawn_blocking(move || {
            let path = std::fs::canonicalize(&path)?;
            store.add_path(&path)
        })
        .await
        .map_err(|e| to_py(NetError::Io(e.to_string())))?
        .map_err(|e| to_py(NetError::Io(e.to_string())))?;
        Ok((
            hash_hex(&blob.hash()),
            blob.size(),
            blob.path.to_string_lossy().into_owned(),
        ))
    })
}

/// Starts a fetch; returns (awaitable of its `FetchResult`, progress).
pub(crate) fn fetch<'py>(
    py: Python<'py>,
    node: Node,
    tickets: Vec<Ticket>,
    dest: PathBuf,
    options: FetchOptions,
) -> PyResult<(Bound<'py, PyAny>, FetchProgress)> {
    let Some(hash) = tickets.first().map(|t| t.0.hash) else {
        return Err(PyValueError::new_err("fetch needs at least one ticket"));
    };
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let awaitable = future(py, async move {
        let tickets: Vec<_> = tickets.into_iter().map(|t| t.0).collect();
        let outcome = fetch_tickets(&node, &tickets, dest, options, p)
            .await
            .map_err(to_py)?;
        Ok(FetchResult::new(hash, outcome))
    })?;
    Ok((awaitable, FetchProgress(progress)))
}

/// Reads a verified byte range without fetching the rest. The range is checked against the
/// ticket here, so a caller's mistake is a `ValueError`, not an engine error.
pub(crate) fn read_range<'py>(
    py: Python<'py>,
    node: Node,
    ticket: Ticket,
    (offset, length): (&Bound<'py, PyAny>, &Bound<'py, PyAny>),
    group_log: u8,
) -> PyResult<Bound<'py, PyAny>> {
    let size = ticket.0.size;
    let offset = int_in("offset", offset, 0, size)?;
    let length = int_in("length", length, 1, MAX_RANGE)?;
    if offset + length > size {
        return Err(PyValueError::new_err(format!(
            "range {offset}+{length} ends past the {size}-byte blob"
        )));
    }
    future(py, async move {
        let t = ticket.0;
        // A live session to the provider if the node has one (see `Node::transfer_session`).
        let session = node
            .transfer_session(t.peer_id, &t.addrs)
            .await
            .map_err(to_py)?;
        let result = fetch_range(&session, t.hash, t.size, offset, length, group_log).await;
        Ok(ReadBytesOwned(result.map_err(to_py)?))
    })
}
