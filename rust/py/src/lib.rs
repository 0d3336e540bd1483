//! The `i6p._core` extension module: the only crate that knows about Python.
//!
//! Each exposed class lives in its own module. Futures run on the engine's tokio runtime and
//! return plain Rust values; they become Python objects only where the GIL is held.

mod bench;
mod buffers;
mod coding_bench;
mod erasure;
mod errors;
mod handoff;
mod identity;
mod limits;
mod node;
mod peer_id;
mod runtime;
mod session;
mod stream;
mod ticket;
mod transfer;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PROTOCOL_VERSION", i6p_core::PROTOCOL_VERSION)?;
    m.add(
        "ALPN",
        std::str::from_utf8(i6p_core::ALPN).unwrap_or("i6p/1"),
    )?;
    m.add("MAX_FRAME_PAYLOAD", i6p_core::MAX_FRAME_PAYLOAD)?;
    m.add_class::<peer_id::PeerId>()?;
    m.add_class::<identity::Identity>()?;
    m.add_class::<node::Node>()?;
    m.add_class::<limits::Limits>()?;
    m.add_class::<session::Session>()?;
    m.add_class::<stream::Stream>()?;
    m.add_class::<ticket::Ticket>()?;
    m.add_class::<transfer::FetchProgress>()?;
    m.add_function(wrap_pyfunction!(runtime::shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(erasure::encode, m)?)?;
    m.add_function(wrap_pyfunction!(erasure::reconstruct, m)?)?;
    m.add_function(wrap_pyfunction!(coding_bench::_bench_hash, m)?)?;
    m.add_function(wrap_pyfunction!(coding_bench::_bench_erasure, m)?)?;
    m.add_function(wrap_pyfunction!(coding_bench::_bench_erasure_stripes, m)?)?;
    m.add_function(wrap_pyfunction!(bench::_bench_engine_stream, m)?)?;
    m.add_function(wrap_pyfunction!(bench::_bench_raw_quinn, m)?)?;
    m.add_function(wrap_pyfunction!(bench::_bench_session_stream, m)?)?;
    Ok(())
}
