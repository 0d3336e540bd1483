//! Collections: serving a directory as one ticket, and reading a provider's listing.

use crate::errors::to_py;
use crate::runtime::future;
use crate::ticket::hash_hex;
use i6p_net::{NetError, Node};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

mod py {
    pyo3::import_exception!(i6p.errors, InvalidCollection);
}

/// Serves every regular file under a directory and their listing; the awaitable gives
/// (listing hash hex, listing size, canonical path, [(relative path, size, hash hex)]).
pub(crate) fn add_dir<'py>(
    py: Python<'py>,
    node: Node,
    path: PathBuf,
) -> PyResult<Bound<'py, PyAny>> {
    future(py, async move {
        let store = node.store().clone();
        let (collection, root) = tokio::task::spawn_blocking(move || {
            let root = std::fs::canonicalize(&path)?;
            store.add_dir(&root).map(|c| (c, root))
        })
        .await
        .map_err(|e| to_py(NetError::Io(e.to_string())))?
        .map_err(|e| to_py(NetError::Io(e.to_string())))?;
        let entries: Vec<(String, u64, String)> = collection
            .entries
            .into_iter()
            .map(|e| (e.path, e.size, hash_hex(&e.hash)))
            .collect();
        Ok((
            hash_hex(&collection.listing.hash()),
            collection.listing.size(),
            root.to_string_lossy().into_owned(),
            entries,
        ))
    })
}

/// The entries of a collection listing received from a provider, as (relative path, size,
/// hash hex), after every check of `i6p_core::collection::decode`; `InvalidCollection`
/// saying what is wrong otherwise.
#[pyfunction]
pub(crate) fn decode_listing(data: &[u8]) -> PyResult<Vec<(String, u64, String)>> {
    let entries = i6p_core::collection::decode(data)
        .map_err(|e| py::InvalidCollection::new_err(e.to_string()))?;
    Ok(entries
        .into_iter()
        .map(|e| (e.path, e.size, hash_hex(&e.hash)))
        .collect())
}

/// Encodes a listing from (relative path, size, hash hex) entries, refusing what a requester
/// would refuse; for tests, and for tools that build collections themselves.
#[pyfunction]
pub(crate) fn encode_listing<'py>(
    py: Python<'py>,
    entries: Vec<(String, u64, String)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let entries = entries
        .into_iter()
        .map(|(path, size, hash)| {
            Ok(i6p_core::collection::Entry {
                path,
                size,
                hash: crate::ticket::parse_hash(&hash)?,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let bytes = i6p_core::collection::encode(entries)
        .map_err(|e| py::InvalidCollection::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &bytes))
}

/// The BLAKE3 hash (hex) of a file, hashed in the engine; an awaitable. A collection fetch
/// run again uses it to keep the files an earlier run completed.
#[pyfunction]
pub(crate) fn hash_file(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyAny>> {
    future(py, async move {
        let outboard = tokio::task::spawn_blocking(move || {
            i6p_net::storage::hash_file(&std::fs::File::open(&path)?)
        })
        .await
        .map_err(|e| to_py(NetError::Io(e.to_string())))?
        .map_err(|e| to_py(NetError::Io(e.to_string())))?;
        Ok(hash_hex(&outboard.root()))
    })
}
