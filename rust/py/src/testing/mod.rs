//! `i6p._core.testing`: what tests and benchmarks need and applications must not use.
//!
//! Hooks that make a node misbehave or skip a protocol step (for conformance and abuse tests),
//! and the engine-only measurements benchmarks compare the Python API against. They live in a
//! private submodule, registered in `sys.modules` so `from i6p._core import testing` works, to
//! keep them out of the public module and its stub.

mod bench;
mod coding_bench;

use crate::buffers::PyBytesOut;
use crate::errors::to_py;
use crate::node::Node;
use crate::peer_id::PeerId;
use crate::runtime::future;
use crate::session::Session;
use i6p_net::addr::parse_addr;
use i6p_net::blobs::Faults;
use pyo3::prelude::*;

/// Lets stream writes and `_core.Stream.read` complete on the calling thread when they need
/// not wait (the default), or sends every one through the engine's runtime, as before that
/// existed: benchmarks measure what it saves in one run. (`read_now`/`readinto_now`, which
/// `Stream.read(n)` and `readinto` use, always run on the calling thread.)
#[pyfunction]
fn set_stream_fast_path(on: bool) {
    crate::stream::set_fast_path(on);
}

/// Completes stream calls that had to wait on the asyncio loop's thread through one wake-up
/// socket per loop (the default), or through pyo3-async-runtimes (a blocking thread takes
/// the GIL and calls `call_soon_threadsafe`), as before: benchmarks measure the difference.
#[pyfunction]
fn set_stream_bell(on: bool) {
    crate::completion::set_bell(on);
}

/// Makes `node`'s provider misbehave on purpose (tests of requesters): an OR of the fault
/// constants of this module; 0 is honest.
#[pyfunction]
fn set_provider_faults(node: PyRef<'_, Node>, faults: u8) {
    node.engine().store().set_faults(faults);
}

/// Binds a node whose relay misbehaves (tests of the relay's ends): flips one bit inside every
/// `flip_every`-th packet it copies, offers every circuit to `misroute_to`, or (as a target)
/// takes circuits and never reads them (`stall_offers`).
#[pyfunction]
#[pyo3(signature = (identity, addr, *, relay=true, flip_every=None, misroute_to=None, stall_offers=false, limits=None))]
#[allow(clippy::too_many_arguments)]
fn bind_relay_testing<'py>(
    py: Python<'py>,
    identity: PyRef<'py, crate::identity::Identity>,
    addr: &str,
    relay: bool,
    flip_every: Option<u64>,
    misroute_to: Option<PyRef<'py, PeerId>>,
    stall_offers: bool,
    limits: Option<PyRef<'py, crate::limits::Limits>>,
) -> PyResult<Bound<'py, PyAny>> {
    let addr = parse_addr(addr).map_err(to_py)?;
    let config = i6p_net::NodeConfig {
        relay,
        relay_testing: i6p_net::relay::RelayTesting {
            flip_every,
            misroute_to: misroute_to.map(|p| p.0),
            stall_offers,
        },
        limits: limits.map(|l| l.0.clone()).unwrap_or_default(),
        ..i6p_net::NodeConfig::default()
    };
    Node::bind_with(py, identity.0.clone(), addr, config)
}

/// Dials and authenticates without the HELLO exchange (protocol conformance tests).
#[pyfunction]
fn connect_raw<'py>(
    py: Python<'py>,
    node: PyRef<'py, Node>,
    peer_id: PyRef<'py, PeerId>,
    addr: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let addr = parse_addr(addr).map_err(to_py)?;
    let (engine, peer, identity) = (node.engine().clone(), peer_id.0, node.identity().clone());
    future(py, async move {
        let s = engine.connect_raw(peer, addr).await.map_err(to_py)?;
        Ok(Session::new(s, identity))
    })
}

/// A HELLO frame valid on `session`'s connection, signed by this node (conformance tests).
#[pyfunction]
#[pyo3(signature = (session, capabilities=None))]
fn signed_hello(
    session: PyRef<'_, Session>,
    capabilities: Option<Vec<(String, String)>>,
) -> PyResult<PyBytesOut> {
    let hello = i6p_core::Hello {
        version: i6p_core::PROTOCOL_VERSION,
        timestamp_ms: 0,
        capabilities: capabilities.unwrap_or_default(),
        listen_addrs: Vec::new(),
        transfer_only: false,
    };
    session
        .engine()
        .hello_frame(session.identity(), &hello)
        .map(|f| PyBytesOut(f.into()))
        .map_err(to_py)
}

/// Sends one datagram on `session` as it is (abuse tests).
#[pyfunction]
fn send_datagram(session: PyRef<'_, Session>, data: &[u8]) -> PyResult<()> {
    session
        .engine()
        .send_raw_datagram(bytes::Bytes::copy_from_slice(data))
        .map_err(to_py)
}

/// Engine log records dropped so far because Python did not drain them fast enough.
#[pyfunction]
fn log_records_dropped() -> u64 {
    crate::logs::dropped()
}

/// Builds the submodule and registers it as `i6p._core.testing`.
pub(crate) fn register(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = parent.py();
    let m = PyModule::new(py, "testing")?;
    m.setattr("__name__", "i6p._core.testing")?;
    m.add("WRONG_PROOF", Faults::WRONG_PROOF)?;
    m.add("WRONG_INDEX", Faults::WRONG_INDEX)?;
    m.add("WRONG_SIZE", Faults::WRONG_SIZE)?;
    m.add("FLIPPED_DATA", Faults::FLIPPED_DATA)?;
    m.add("SLOW", Faults::SLOW)?;
    m.add("FORGED_SHARDS", Faults::FORGED_SHARDS)?;
    m.add("JUNK_ONLY", Faults::JUNK_ONLY)?;
    m.add_function(wrap_pyfunction!(set_provider_faults, &m)?)?;
    m.add_function(wrap_pyfunction!(set_stream_fast_path, &m)?)?;
    m.add_function(wrap_pyfunction!(set_stream_bell, &m)?)?;
    m.add_function(wrap_pyfunction!(connect_raw, &m)?)?;
    m.add_function(wrap_pyfunction!(bind_relay_testing, &m)?)?;
    m.add_function(wrap_pyfunction!(signed_hello, &m)?)?;
    m.add_function(wrap_pyfunction!(send_datagram, &m)?)?;
    m.add_function(wrap_pyfunction!(log_records_dropped, &m)?)?;
    m.add_function(wrap_pyfunction!(coding_bench::bench_hash, &m)?)?;
    m.add_function(wrap_pyfunction!(coding_bench::bench_erasure, &m)?)?;
    m.add_function(wrap_pyfunction!(coding_bench::bench_erasure_stripes, &m)?)?;
    m.add_function(wrap_pyfunction!(bench::bench_engine_stream, &m)?)?;
    m.add_function(wrap_pyfunction!(bench::bench_raw_quinn, &m)?)?;
    m.add_function(wrap_pyfunction!(bench::bench_session_stream, &m)?)?;
    parent.add_submodule(&m)?;
    // `add_submodule` only sets an attribute; the import system looks in sys.modules.
    py.import("sys")?
        .getattr("modules")?
        .set_item("i6p._core.testing", &m)?;
    Ok(())
}
