//! Blob transfers on a `Node`: serving files, and fetching them verified and resumable.

use crate::errors::to_py;
use crate::handoff::ReadBytesOwned;
use crate::runtime::future;
use crate::ticket::{hash_hex, Ticket};
use i6p_net::fec_fetch::FecOptions;
use i6p_net::fetch::{fetch_range, fetch_tickets, FetchOptions, Progress, Reconnect};
use i6p_net::{NetError, Node};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

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

/// Fetch options from Python arguments.
pub(crate) fn options(
    group_size: u64,
    streams: usize,
    max_failures: u32,
    overwrite: bool,
    request_size: u64,
    reconnects: u32,
    backoff: f64,
) -> PyResult<FetchOptions> {
    if !(backoff.is_finite() && (0.0..=60.0).contains(&backoff)) {
        return Err(PyValueError::new_err("backoff must be 0..=60 seconds"));
    }
    if !(16 << 10..=1 << 30).contains(&request_size) {
        return Err(PyValueError::new_err(
            "request_size must be from 16 KiB to 1 GiB",
        ));
    }
    if !group_size.is_power_of_two() || !(16 << 10..=4 << 20).contains(&group_size) {
        return Err(PyValueError::new_err(
            "group_size must be a power of two from 16 KiB to 4 MiB",
        ));
    }
    if streams == 0 || streams > 256 {
        return Err(PyValueError::new_err("streams must be 1..=256"));
    }
    if max_failures == 0 {
        return Err(PyValueError::new_err("max_failures must be at least 1"));
    }
    Ok(FetchOptions {
        group_log: group_size.trailing_zeros() as u8,
        streams,
        max_failures,
        overwrite,
        request_bytes: request_size,
        reconnect: Reconnect {
            attempts: reconnects,
            backoff: Duration::from_secs_f64(backoff),
            ..Reconnect::default()
        },
        ..FetchOptions::default()
    })
}

/// FEC options from Python arguments: `None` in plain mode.
pub(crate) fn fec_options(
    mode: &str,
    (data, min_parity, max_parity): (usize, usize, usize),
    shard_size: Option<usize>,
    combine: bool,
) -> PyResult<Option<FecOptions>> {
    match mode {
        "plain" => Ok(None),
        "fec" => {
            let fec = FecOptions {
                shard_len: shard_size,
                data,
                min_parity,
                max_parity,
                combine,
                ..FecOptions::default()
            };
            fec.validate()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            if let Some(len) = shard_size {
                let bounds = i6p_core::fec::MIN_SHARD_LEN..=i6p_core::fec::MAX_SHARD_LEN;
                if !bounds.contains(&len) {
                    return Err(PyValueError::new_err(format!(
                        "shard_size must be {}..={} bytes",
                        bounds.start(),
                        bounds.end()
                    )));
                }
            }
            Ok(Some(fec))
        }
        other => Err(PyValueError::new_err(format!(
            "mode must be \"plain\" or \"fec\", not {other:?}"
        ))),
    }
}

/// Starts a fetch; returns (awaitable of the result tuple, progress).
pub(crate) fn fetch<'py>(
    py: Python<'py>,
    node: Node,
    tickets: Vec<Ticket>,
    dest: PathBuf,
    options: FetchOptions,
) -> PyResult<(Bound<'py, PyAny>, FetchProgress)> {
    if tickets.is_empty() {
        return Err(PyValueError::new_err("fetch needs at least one ticket"));
    }
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let awaitable = future(py, async move {
        let tickets: Vec<_> = tickets.into_iter().map(|t| t.0).collect();
        let hash = tickets.first().map(|t| t.hash).unwrap_or_default();
        let o = fetch_tickets(&node, &tickets, dest, options, p)
            .await
            .map_err(to_py)?;
        let providers: Vec<(String, u64, Option<String>)> = o
            .providers
            .iter()
            .map(|p| {
                (
                    p.peer.to_string(),
                    p.bytes,
                    p.error.as_ref().map(|e| e.to_string()),
                )
            })
            .collect();
        Ok((
            hash_hex(&hash),
            o.size,
            o.bytes_fetched,
            o.bytes_reused,
            o.duration.as_secs_f64(),
            o.failed_groups,
            o.path.to_string_lossy().into_owned(),
            providers,
            o.fec.map(|f| {
                (
                    f.shards_received,
                    f.shards_lost,
                    f.stripes_repaired,
                    f.stripes_combined,
                    f.loss,
                )
            }),
        ))
    })?;
    Ok((awaitable, FetchProgress(progress)))
}

/// Reads a verified byte range without fetching the rest.
pub(crate) fn read_range<'py>(
    py: Python<'py>,
    node: Node,
    ticket: Ticket,
    offset: u64,
    length: u64,
    group_log: u8,
) -> PyResult<Bound<'py, PyAny>> {
    if length > 1 << 30 {
        return Err(PyValueError::new_err(
            "read_range reads at most 1 GiB at once",
        ));
    }
    future(py, async move {
        let t = ticket.0;
        let session = node.connect_any(t.peer_id, &t.addrs).await.map_err(to_py)?;
        let result = fetch_range(&session, t.hash, t.size, offset, length, group_log).await;
        session.close(0, "range done").await;
        Ok(ReadBytesOwned(result.map_err(to_py)?))
    })
}
