//! Engine-only reference measurements that benchmarks compare the Python API against.

use crate::errors::to_py;
use crate::node::{udp_payload, windows};
use crate::runtime::future;
use crate::session::Session;
use i6p_net::transport::Congestion;
use i6p_net::NodeConfig;
use pyo3::prelude::*;
use std::time::Duration;

/// The benches' node settings; `max_udp_payload` None: the host's bound, as a node's.
fn config(
    congestion: &str,
    window: Option<&str>,
    max_udp_payload: Option<&Bound<'_, PyAny>>,
) -> PyResult<NodeConfig> {
    Ok(NodeConfig {
        congestion: Congestion::parse(congestion).map_err(to_py)?,
        windows: windows(window, None)?,
        max_udp_payload: max_udp_payload.map(udp_payload).transpose()?,
        ..NodeConfig::default()
    })
}

/// Awaitable seconds of one engine-only transfer.
fn seconds<'py, F>(py: Python<'py>, transfer: F) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = i6p_net::Result<Duration>> + Send + 'static,
{
    future(py, async move {
        Ok(transfer.await.map_err(to_py)?.as_secs_f64())
    })
}

/// Seconds to move `total` bytes over one stream between two nodes, entirely in Rust.
#[pyfunction]
#[pyo3(signature = (total, block=1 << 20, congestion="cubic", window=None, max_udp_payload=None))]
pub(crate) fn bench_engine_stream<'py>(
    py: Python<'py>,
    total: u64,
    block: usize,
    congestion: &str,
    window: Option<&str>,
    max_udp_payload: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let config = config(congestion, window, max_udp_payload)?;
    seconds(py, async move {
        i6p_net::bench::stream_transfer(total, block, &config).await
    })
}

/// Seconds to move `total` bytes over one stream of a bare quinn connection (the baseline:
/// same quinn, rustls, TLS identities, transport settings and sockets as the engine).
#[pyfunction]
#[pyo3(signature = (total, block=1 << 20, congestion="cubic", window=None, max_udp_payload=None))]
pub(crate) fn bench_raw_quinn<'py>(
    py: Python<'py>,
    total: u64,
    block: usize,
    congestion: &str,
    window: Option<&str>,
    max_udp_payload: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let config = config(congestion, window, max_udp_payload)?;
    seconds(py, async move {
        i6p_net::bench::raw_quinn_stream(total, block, &config).await
    })
}

/// Moves `total` bytes over `streams` streams from `sender` to `receiver` (the two ends of one
/// session, both in this process) in the engine; returns [(seconds, bytes received)] sampled
/// every `sample` seconds.
#[pyfunction]
#[pyo3(signature = (sender, receiver, total, streams=1, sample=0.05))]
pub(crate) fn bench_session_stream<'py>(
    py: Python<'py>,
    sender: PyRef<'py, Session>,
    receiver: PyRef<'py, Session>,
    total: u64,
    streams: usize,
    sample: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let (a, b) = (sender.engine().clone(), receiver.engine().clone());
    let sample = Duration::from_secs_f64(sample.clamp(0.001, 10.0));
    future(py, async move {
        i6p_net::bench::timed_stream(&a, &b, total, streams, sample)
            .await
            .map_err(to_py)
    })
}
