//! The `i6p._core` extension module: the only crate that knows about Python.
//!
//! Each exposed class lives in its own module. Futures run on the engine's tokio runtime and
//! return plain Rust values; they become Python objects only where the GIL is held.

mod buffers;
mod codes;
mod collection;
mod completion;
mod contact;
mod dht;
mod erasure;
mod errors;
mod handoff;
mod identity;
mod limits;
mod logs;
mod node;
mod options;
mod peer_id;
mod public_key;
mod reach;
mod results;
mod runtime;
mod session;
mod stream;
mod tcp;
mod testing;
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
    m.add("RS_KERNEL_ARCH", i6p_core::erasure::cpu::KERNEL_ARCH)?;
    m.add_class::<peer_id::PeerId>()?;
    m.add_class::<public_key::PublicKey>()?;
    m.add_class::<dht::DhtRecord>()?;
    m.add_class::<dht::DhtTestnet>()?;
    m.add_class::<identity::Identity>()?;
    m.add_class::<node::Node>()?;
    m.add_class::<limits::Limits>()?;
    m.add_class::<session::Session>()?;
    m.add_class::<stream::Stream>()?;
    m.add_class::<tcp::TcpListener>()?;
    m.add_class::<tcp::TcpConnection>()?;
    m.add_class::<ticket::Ticket>()?;
    m.add_class::<contact::Contact>()?;
    m.add_class::<transfer::FetchProgress>()?;
    m.add_class::<options::FetchOptions>()?;
    m.add_class::<results::FetchResult>()?;
    m.add_class::<results::FecStats>()?;
    m.add_class::<reach::Reachability>()?;
    m.add_function(wrap_pyfunction!(runtime::shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(erasure::encode, m)?)?;
    m.add_function(wrap_pyfunction!(erasure::reconstruct, m)?)?;
    m.add_function(wrap_pyfunction!(collection::decode_listing, m)?)?;
    m.add_function(wrap_pyfunction!(collection::encode_listing, m)?)?;
    m.add_function(wrap_pyfunction!(collection::hash_file, m)?)?;
    m.add("MAX_LISTING", i6p_core::collection::MAX_LISTING)?;
    testing::register(m)?;
    logs::install(m.py());
    Ok(())
}
