//! What a completed fetch reports, as frozen values with a named field for every figure.
//!
//! They are built from the engine's outcome on an engine thread (plain Rust data, no GIL) and
//! become Python objects where the GIL is held; providers are keyed by `PeerId`, as
//! `Node.served` keys them.

use crate::peer_id::PeerId;
use crate::ticket::hash_hex;
use i6p_net::fetch::FetchOutcome;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

/// What the shards of a FEC-mode fetch did.
#[pyclass(frozen, eq, get_all, module = "i6p._core")]
#[derive(Clone, Copy, PartialEq)]
pub(crate) struct FecStats {
    /// Shards that arrived (in stripes judged).
    shards_received: u64,
    /// Shards that never arrived.
    shards_lost: u64,
    /// Stripes that lost more than their parity and were asked for again over the stream.
    stripes_repaired: u64,
    /// Stripes rebuilt from the shards of more than one provider.
    stripes_combined: u64,
    /// The final shard loss estimate (what the parity was chosen from), 0 to 1.
    loss: f64,
}

#[pymethods]
impl FecStats {
    /// The fields as JSON-ready values.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("shards_received", self.shards_received)?;
        d.set_item("shards_lost", self.shards_lost)?;
        d.set_item("stripes_repaired", self.stripes_repaired)?;
        d.set_item("stripes_combined", self.stripes_combined)?;
        d.set_item("loss", self.loss)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "FecStats(shards_received={}, shards_lost={}, stripes_repaired={}, \
             stripes_combined={}, loss={:?})",
            self.shards_received,
            self.shards_lost,
            self.stripes_repaired,
            self.stripes_combined,
            self.loss
        )
    }
}

/// What a completed fetch did.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct FetchResult {
    hash: [u8; 32],
    size: u64,
    bytes_fetched: u64,
    bytes_reused: u64,
    duration_s: f64,
    first_byte_s: Option<f64>,
    failed_groups: u32,
    path: PathBuf,
    /// Every provider asked, in the order given: group bytes it sent, why it was dropped.
    providers: Vec<(i6p_core::PeerId, u64, Option<String>)>,
    fec: Option<FecStats>,
}

impl FetchResult {
    /// The result of a fetch of blob `hash`.
    pub(crate) fn new(hash: [u8; 32], o: FetchOutcome) -> Self {
        Self {
            hash,
            size: o.size,
            bytes_fetched: o.bytes_fetched,
            bytes_reused: o.bytes_reused,
            duration_s: o.duration.as_secs_f64(),
            first_byte_s: o.first_byte.map(|d| d.as_secs_f64()),
            failed_groups: o.failed_groups,
            path: o.path,
            providers: o
                .providers
                .into_iter()
                .map(|p| (p.peer, p.bytes, p.error.map(|e| e.to_string())))
                .collect(),
            fec: o.fec.map(|f| FecStats {
                shards_received: f.shards_received,
                shards_lost: f.shards_lost,
                stripes_repaired: f.stripes_repaired,
                stripes_combined: f.stripes_combined,
                loss: f.loss,
            }),
        }
    }
}

#[pymethods]
impl FetchResult {
    /// BLAKE3 hash of the blob (verified), 64 hex characters.
    #[getter]
    fn hash(&self) -> String {
        hash_hex(&self.hash)
    }

    /// Size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of chunk-group data received over the network in this run.
    #[getter]
    fn bytes_fetched(&self) -> u64 {
        self.bytes_fetched
    }

    /// Bytes found already verified on disk from an earlier, interrupted run.
    #[getter]
    fn bytes_reused(&self) -> u64 {
        self.bytes_reused
    }

    /// Wall time of this run, in seconds.
    #[getter]
    fn duration_s(&self) -> f64 {
        self.duration_s
    }

    /// Seconds from the start of this run (finding and dialing the provider included) to
    /// the first fetched byte verified and written to the file; None when nothing needed
    /// fetching.
    #[getter]
    fn first_byte_s(&self) -> Option<f64> {
        self.first_byte_s
    }

    /// Chunk groups that failed verification and were fetched again.
    #[getter]
    fn failed_groups(&self) -> u32 {
        self.failed_groups
    }

    /// The finished file (a `pathlib.Path`).
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Bytes of chunk-group data received from each provider asked (a new dict each time).
    #[getter]
    fn providers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (peer, bytes, _) in &self.providers {
            d.set_item(PeerId(*peer), bytes)?;
        }
        Ok(d)
    }

    /// Providers dropped from the fetch, with why: unreachable, gone mid-transfer, or serving
    /// data that failed verification (a new dict each time).
    #[getter]
    fn dropped<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (peer, _, why) in &self.providers {
            if let Some(why) = why {
                d.set_item(PeerId(*peer), why)?;
            }
        }
        Ok(d)
    }

    /// FEC mode only: what the shards did; None in plain mode.
    #[getter]
    fn fec(&self) -> Option<FecStats> {
        self.fec
    }

    /// The fields as JSON-ready values (PeerIds as text).
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("hash", self.hash())?;
        d.set_item("size", self.size)?;
        d.set_item("bytes_fetched", self.bytes_fetched)?;
        d.set_item("bytes_reused", self.bytes_reused)?;
        d.set_item("duration_s", self.duration_s)?;
        d.set_item("first_byte_s", self.first_byte_s)?;
        d.set_item("failed_groups", self.failed_groups)?;
        d.set_item("path", self.path.to_string_lossy())?;
        let (sent, dropped) = (PyDict::new(py), PyDict::new(py));
        for (peer, bytes, why) in &self.providers {
            sent.set_item(peer.to_string(), bytes)?;
            if let Some(why) = why {
                dropped.set_item(peer.to_string(), why)?;
            }
        }
        d.set_item("providers", sent)?;
        d.set_item("dropped", dropped)?;
        match &self.fec {
            Some(f) => d.set_item("fec", f.as_dict(py)?)?,
            None => d.set_item("fec", py.None())?,
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let dropped = self.providers.iter().filter(|p| p.2.is_some()).count();
        format!(
            "FetchResult(hash={}, size={}, bytes_fetched={}, bytes_reused={}, duration_s={:.3}, \
             failed_groups={}, providers={}, dropped={dropped}, fec={})",
            &self.hash()[..16],
            self.size,
            self.bytes_fetched,
            self.bytes_reused,
            self.duration_s,
            self.failed_groups,
            self.providers.len(),
            if self.fec.is_some() { "yes" } else { "None" },
        )
    }
}
