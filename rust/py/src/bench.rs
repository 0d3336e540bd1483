//! Engine-only reference measurements that benchmarks compare the Python API against.

use crate::errors::to_py;
use crate::runtime::future;
use pyo3::prelude::*;

/// Seconds to move `total` bytes over one stream between two nodes, entirely in Rust.
#[pyfunction]
#[pyo3(signature = (total, block=1 << 20))]
pub(crate) fn _bench_engine_stream(
    py: Python<'_>,
    total: u64,
    block: usize,
) -> PyResult<Bound<'_, PyAny>> {
    future(py, async move {
        let elapsed = i6p_net::loopback::stream_transfer(total, block)
            .await
            .map_err(to_py)?;
        Ok(elapsed.as_secs_f64())
    })
}
