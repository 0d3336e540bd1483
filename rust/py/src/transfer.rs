//! Blob transfers on a `Node`: serving files, and fetching them verified and resumable.

use crate::errors::{invalid_argument, to_py};
use crate::handoff::ReadBytesOwned;
use crate::options::int_in;
use crate::results::FetchResult;
use crate::runtime::future;
use crate::ticket::{hash_hex, Ticket};
use i6p_net::fetch::{fetch_range, fetch_tickets, FetchOptions, Progress};
use i6p_net::storage::check_destination;
use i6p_net::{NetError, Node};
use pyo3::prelude::*;
use std::io;
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

/// Adds a file; the awaitable gives (hash hex, size, canonical path). Errors name the path
/// as the caller gave it.
pub(crate) fn add_path<'py>(
    py: Python<'py>,
    node: Node,
    path: PathBuf,
) -> PyResult<Bound<'py, PyAny>> {
    future(py, async move {
        let store = node.store().clone();
        let blob = tokio::task::spawn_blocking(move || {
            regular_file(&path)
                .and_then(|canonical| store.add_path(&canonical))
                .map_err(|e| NetError::file("cannot add", &path, e))
        })
        .await
        .map_err(|e| to_py(NetError::Io(e.to_string())))?
        .map_err(to_py)?;
        Ok((
            hash_hex(&blob.hash()),
            blob.size(),
            blob.path.to_string_lossy().into_owned(),
        ))
    })
}

/// The canonical path of a regular file: a directory is told apart, and anything else (a
/// FIFO would block the open) is refused.
fn regular_file(path: &std::path::Path) -> io::Result<PathBuf> {
    let canonical = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&canonical)?;
    if meta.is_dir() {
        Err(io::ErrorKind::IsADirectory.into())
    } else if !meta.is_file() {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    } else {
        Ok(canonical)
    }
}

/// Starts a fetch; returns (awaitable of its `FetchResult`, progress).
pub(crate) fn fetch<'py>(
    py: Python<'py>,
    node: Node,
    tickets: Vec<Ticket>,
    dest: PathBuf,
    options: FetchOptions,
) -> PyResult<(Bound<'py, PyAny>, FetchProgress)> {
    let Some((hash, size)) = tickets.first().map(|t| (t.0.hash, t.0.size)) else {
        return Err(invalid_argument("fetch needs at least one ticket"));
    };
    // The ticket says how big the blob is: progress reports it from the first call on.
    let progress = Arc::new(Progress::default());
    progress.total.store(size, Ordering::Relaxed);
    let p = progress.clone();
    let awaitable = future(py, async move {
        // A destination that cannot be written fails before anyone is dialed.
        let check = dest.clone();
        tokio::task::spawn_blocking(move || check_destination(&check))
            .await
            .map_err(|e| to_py(NetError::Io(e.to_string())))?
            .map_err(|e| to_py(NetError::file("cannot fetch into", &dest, e)))?;
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
        return Err(invalid_argument(format!(
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
