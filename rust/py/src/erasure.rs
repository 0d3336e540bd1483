//! Reed-Solomon erasure coding for Python (`i6p.erasure`): `encode` a buffer into k data + m
//! parity shards, `reconstruct` it from any k of them.
//!
//! Inputs are owned before the GIL is released (`bytes` are shared without a copy, other
//! buffers are copied once); the coding runs on rayon's threads without the GIL; the shards or
//! the data are copied once into new `bytes` objects at the end.

use crate::buffers::owned_bytes;
use crate::errors::core_to_py;
use bytes::Bytes;
use i6p_core::erasure::{Coder, ErasureParams, Stripe};
use i6p_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::sync::{Arc, Mutex};

/// How many coders (one per shape) are kept between calls.
const CACHED_CODERS: usize = 8;

/// The coder for `k` + `m` shards. The most recently used shapes are kept: building a coder
/// inverts a matrix, and a coder remembers the decoding matrices of the erasure patterns it has
/// seen.
fn coder(k: usize, m: usize) -> PyResult<Arc<Coder>> {
    static CODERS: Mutex<Vec<Arc<Coder>>> = Mutex::new(Vec::new());
    let params = ErasureParams::new(k, m).map_err(core_to_py)?;
    // A panic while the lock was held cannot leave the list inconsistent.
    let mut coders = CODERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let coder = match coders.iter().position(|c| c.params() == params) {
        Some(i) => coders.remove(i),
        None => Arc::new(Coder::new(params).map_err(core_to_py)?),
    };
    if coders.len() >= CACHED_CODERS {
        coders.remove(0);
    }
    coders.push(Arc::clone(&coder));
    Ok(coder)
}

/// Splits `data` (any buffer) into `k` data shards of `ceil(len / k)` bytes, the last one
/// zero-padded, and computes `m` parity shards; returns the `k + m` shards in order.
#[pyfunction(name = "erasure_encode")]
pub(crate) fn encode<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    k: usize,
    m: usize,
) -> PyResult<Bound<'py, PyList>> {
    let coder = coder(k, m)?;
    let data = owned_bytes(data)?;
    let stripe = py
        .detach(move || {
            let mut stripe = Stripe::new();
            coder.encode_parallel(&data, &mut stripe).map(|()| stripe)
        })
        .map_err(core_to_py)?;
    PyList::new(
        py,
        stripe
            .shards()
            .map(|shard| PyBytes::new(py, shard.unwrap_or_default())),
    )
}

/// Rebuilds the first `size` bytes coded into `shards` (`k + m` entries, `None` for a lost
/// shard) from any `k` of them.
#[pyfunction(name = "erasure_reconstruct")]
pub(crate) fn reconstruct<'py>(
    py: Python<'py>,
    shards: &Bound<'py, PyAny>,
    k: usize,
    m: usize,
    size: u64,
) -> PyResult<Bound<'py, PyBytes>> {
    let coder = coder(k, m)?;
    let expected = coder.params().total();
    let got = shards.len()?;
    if got != expected {
        return Err(core_to_py(CoreError::ShardCount { got, expected }));
    }
    let owned = shards
        .try_iter()?
        .take(expected)
        .map(|item| {
            let item = item?;
            if item.is_none() {
                Ok(None)
            } else {
                owned_bytes(&item).map(Some)
            }
        })
        .collect::<PyResult<Vec<Option<Bytes>>>>()?;
    let (stripe, size) = py
        .detach(move || {
            let mut stripe = Stripe::new();
            stripe.load(coder.params(), &owned)?;
            let len = coder.reconstruct_parallel(&mut stripe, size)?.len();
            Ok::<_, CoreError>((stripe, len))
        })
        .map_err(core_to_py)?;
    let data = stripe.data().unwrap_or_default();
    Ok(PyBytes::new(py, &data[..size.min(data.len())]))
}
