//! `FetchOptions`: how a fetch runs, as one frozen value.
//!
//! Every default is the engine's (`i6p_net`'s `Default` impls): an argument left out takes the
//! engine's value, so no number is repeated here, in Python or in the stub. Values are checked
//! when the options are built, so a caller's mistake is a `ValueError`/`TypeError` at the call
//! that made it, never an engine error halfway through a fetch.

use crate::errors::invalid_argument;
use i6p_core::fec::{MAX_SHARD_LEN, MIN_SHARD_LEN};
use i6p_core::tree::{MAX_GROUP_LOG, MIN_GROUP_LOG};
use i6p_net::fetch::FecOptions;
use i6p_net::fetch::FetchOptions as EngineOptions;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// Requests in flight at once: at most this many streams per fetch.
const MAX_STREAMS: u64 = 256;
/// Bytes one request may ask for, at least and at most.
const REQUEST_BYTES: (u64, u64) = (16 << 10, 1 << 30);
/// Longest first wait before a reconnect, in seconds.
const MAX_BACKOFF_S: f64 = 60.0;

/// Whether groups come over streams or as erasure-coded shards in datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Plain,
    Fec,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Fec => "fec",
        }
    }
}

/// How a fetch runs. Every argument left out takes the engine's default.
#[pyclass(frozen, module = "i6p._core")]
#[derive(Clone)]
pub(crate) struct FetchOptions {
    /// The plain-mode options (`fec` is always `None` here).
    engine: EngineOptions,
    /// The FEC settings, kept in plain mode too so that `replace(mode="fec")` keeps them.
    fec: FecOptions,
    mode: Mode,
}

/// An integer argument in `lo..=hi`: a wrong type is a `TypeError`, a value out of range (even
/// one too large for any machine integer) a `ValueError` naming the argument.
pub(crate) fn int_in(name: &str, value: &Bound<'_, PyAny>, lo: u64, hi: u64) -> PyResult<u64> {
    let n = value.extract::<i64>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(value.py()) {
            invalid_argument(format!("{name} must be {lo}..={hi}"))
        } else {
            PyTypeError::new_err(format!("{name} must be an int"))
        }
    })?;
    u64::try_from(n)
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| invalid_argument(format!("{name} must be {lo}..={hi}, not {n}")))
}

fn flag(name: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    value
        .extract::<bool>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a bool")))
}

/// log2 of a chunk-group size in bytes: a power of two from 16 KiB to 4 MiB.
pub(crate) fn group_log(value: &Bound<'_, PyAny>) -> PyResult<u8> {
    let bad = |size| {
        invalid_argument(format!(
            "group_size must be a power of two from 16 KiB to 4 MiB, not {size}"
        ))
    };
    let size = value.extract::<i64>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(value.py()) {
            bad(value.to_string())
        } else {
            PyTypeError::new_err("group_size must be an int")
        }
    })?;
    let bounds = 1i64 << MIN_GROUP_LOG..=1i64 << MAX_GROUP_LOG;
    if !(bounds.contains(&size) && size.count_ones() == 1) {
        return Err(bad(size.to_string()));
    }
    Ok(size.trailing_zeros() as u8)
}

impl FetchOptions {
    /// The options the engine runs a fetch with.
    pub(crate) fn engine(&self) -> EngineOptions {
        EngineOptions {
            fec: (self.mode == Mode::Fec).then_some(self.fec),
            ..self.engine.clone()
        }
    }

    /// Everything `==`, `hash` and `repr` look at, in one place.
    fn key(&self) -> impl PartialEq + Hash + '_ {
        let (e, f) = (&self.engine, &self.fec);
        (
            (
                e.group_log,
                e.streams,
                e.request_bytes,
                e.max_failures,
                e.overwrite,
                e.reconnect.attempts,
                e.reconnect.backoff,
            ),
            (
                self.mode,
                f.data,
                f.min_parity,
                f.max_parity,
                f.shard_len,
                f.combine,
            ),
        )
    }

    fn set_fec_shape(&mut self, shape: &Bound<'_, PyAny>) -> PyResult<()> {
        let bad = || PyTypeError::new_err("fec_shape must be a tuple (k, min_m, max_m) of ints");
        let (k, lo, hi) = shape
            .extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>)>()
            .map_err(|_| bad())?;
        // The engine's own check (below) bounds these; this only keeps them machine-sized.
        let count = |name, v| int_in(name, v, 0, u32::MAX.into()).map(|n| n as usize);
        self.fec.data = count("fec_shape k", &k)?;
        self.fec.min_parity = count("fec_shape min_m", &lo)?;
        self.fec.max_parity = count("fec_shape max_m", &hi)?;
        Ok(())
    }

    /// Checks what only makes sense as a whole.
    fn validate(&self) -> PyResult<()> {
        self.fec
            .validate()
            .map_err(|e| invalid_argument(e.to_string()))
    }
}

#[pymethods]
impl FetchOptions {
    #[new]
    #[pyo3(signature = (*, group_size=None, streams=None, request_size=None, max_failures=None, overwrite=None, reconnects=None, backoff=None, mode=None, fec_shape=None, shard_size=None, fec_combine=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        group_size: Option<&Bound<'_, PyAny>>,
        streams: Option<&Bound<'_, PyAny>>,
        request_size: Option<&Bound<'_, PyAny>>,
        max_failures: Option<&Bound<'_, PyAny>>,
        overwrite: Option<&Bound<'_, PyAny>>,
        reconnects: Option<&Bound<'_, PyAny>>,
        backoff: Option<&Bound<'_, PyAny>>,
        mode: Option<&Bound<'_, PyAny>>,
        fec_shape: Option<&Bound<'_, PyAny>>,
        shard_size: Option<&Bound<'_, PyAny>>,
        fec_combine: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut o = FetchOptions {
            engine: EngineOptions::default(),
            fec: FecOptions::default(),
            mode: Mode::Plain,
        };
        let e = &mut o.engine;
        if let Some(v) = group_size {
            e.group_log = group_log(v)?;
        }
        if let Some(v) = streams {
            e.streams = int_in("streams", v, 1, MAX_STREAMS)? as usize;
        }
        if let Some(v) = request_size {
            e.request_bytes = int_in("request_size", v, REQUEST_BYTES.0, REQUEST_BYTES.1)?;
        }
        if let Some(v) = max_failures {
            e.max_failures = int_in("max_failures", v, 1, u32::MAX.into())? as u32;
        }
        if let Some(v) = overwrite {
            e.overwrite = flag("overwrite", v)?;
        }
        if let Some(v) = reconnects {
            e.reconnect.attempts = int_in("reconnects", v, 0, u32::MAX.into())? as u32;
        }
        if let Some(v) = backoff {
            let s = v
                .extract::<f64>()
                .map_err(|_| PyTypeError::new_err("backoff must be a number of seconds"))?;
            if !(s.is_finite() && (0.0..=MAX_BACKOFF_S).contains(&s)) {
                return Err(invalid_argument(format!(
                    "backoff must be 0..={MAX_BACKOFF_S} seconds, not {s}"
                )));
            }
            e.reconnect.backoff = Duration::from_secs_f64(s);
        }
        if let Some(v) = mode {
            o.mode = match v.extract::<&str>() {
                Ok("plain") => Mode::Plain,
                Ok("fec") => Mode::Fec,
                Ok(other) => {
                    return Err(invalid_argument(format!(
                        "mode must be \"plain\" or \"fec\", not {other:?}"
                    )))
                }
                Err(_) => return Err(PyTypeError::new_err("mode must be a str")),
            };
        }
        if let Some(v) = fec_shape {
            o.set_fec_shape(v)?;
        }
        if let Some(v) = shard_size.filter(|v| !v.is_none()) {
            let (lo, hi) = (MIN_SHARD_LEN as u64, MAX_SHARD_LEN as u64);
            o.fec.shard_len = Some(int_in("shard_size", v, lo, hi)? as usize);
        }
        if let Some(v) = fec_combine {
            o.fec.combine = flag("fec_combine", v)?;
        }
        o.validate()?;
        Ok(o)
    }

    /// Chunk-group size in bytes: a power of two, 16 KiB to 4 MiB.
    #[getter]
    fn group_size(&self) -> u64 {
        1 << self.engine.group_log
    }

    /// Requests in flight at once, each on its own stream (1 to 256).
    #[getter]
    fn streams(&self) -> usize {
        self.engine.streams
    }

    /// Bytes of consecutive chunk groups one request asks for (16 KiB to 1 GiB).
    #[getter]
    fn request_size(&self) -> u64 {
        self.engine.request_bytes
    }

    /// Verification failures tolerated from one provider before it is dropped.
    #[getter]
    fn max_failures(&self) -> u32 {
        self.engine.max_failures
    }

    /// Replace an existing destination file.
    #[getter]
    fn overwrite(&self) -> bool {
        self.engine.overwrite
    }

    /// Reconnect attempts in a row that bring nothing new before the fetch fails (0: none).
    #[getter]
    fn reconnects(&self) -> u32 {
        self.engine.reconnect.attempts
    }

    /// Seconds before the first reconnect attempt; doubled each time, up to 5 s.
    #[getter]
    fn backoff(&self) -> f64 {
        self.engine.reconnect.backoff.as_secs_f64()
    }

    /// "plain" (groups over streams) or "fec" (Reed-Solomon shards in datagrams).
    #[getter]
    fn mode(&self) -> &'static str {
        self.mode.name()
    }

    /// FEC mode: (k data shards, least and most m parity shards) per stripe.
    #[getter]
    fn fec_shape(&self) -> (usize, usize, usize) {
        (self.fec.data, self.fec.min_parity, self.fec.max_parity)
    }

    /// FEC mode: largest bytes per shard; None: what the path's datagrams carry.
    #[getter]
    fn shard_size(&self) -> Option<usize> {
        self.fec.shard_len
    }

    /// FEC mode with several providers: each sends a share of every stripe.
    #[getter]
    fn fec_combine(&self) -> bool {
        self.fec.combine
    }

    /// A copy with some fields changed (keyword arguments, as for the constructor).
    #[pyo3(signature = (**changes))]
    fn replace<'py>(
        &self,
        py: Python<'py>,
        changes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fields = self.fields(py)?;
        if let Some(changes) = changes {
            fields.update(changes.as_mapping())?;
        }
        py.get_type::<Self>().call((), Some(&fields))
    }

    /// Pickles as the constructor called with the fields, so options can be sent to
    /// another process.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, ())> {
        let partial = py.import("functools")?.getattr("partial")?;
        let make = partial.call((py.get_type::<Self>(),), Some(&self.fields(py)?))?;
        Ok((make, ()))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Self>()
            .is_ok_and(|o| o.get().key() == self.key())
    }

    fn __hash__(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.key().hash(&mut h);
        h.finish()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = Vec::new();
        for (name, value) in self.fields(py)?.iter() {
            parts.push(format!("{name}={}", value.repr()?));
        }
        Ok(format!("FetchOptions({})", parts.join(", ")))
    }
}

impl FetchOptions {
    /// The fields as keyword arguments of the constructor.
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("group_size", self.group_size())?;
        d.set_item("streams", self.streams())?;
        d.set_item("request_size", self.request_size())?;
        d.set_item("max_failures", self.max_failures())?;
        d.set_item("overwrite", self.overwrite())?;
        d.set_item("reconnects", self.reconnects())?;
        d.set_item("backoff", self.backoff())?;
        d.set_item("mode", self.mode())?;
        d.set_item("fec_shape", self.fec_shape())?;
        d.set_item("shard_size", self.shard_size())?;
        d.set_item("fec_combine", self.fec_combine())?;
        Ok(d)
    }
}
