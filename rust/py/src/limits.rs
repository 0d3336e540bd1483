//! `Limits`: the node's resource policy, as one frozen options object whose defaults are
//! the engine's (written once, in `i6p_net::Limits::default`).

use crate::errors::invalid_argument;
use crate::options::int_in;
use pyo3::prelude::*;
use std::time::Duration;

/// Bounds on what peers can make a node hold (connections, handshakes, queued sessions and
/// streams, request slots, send progress, read-ahead).
#[pyclass(frozen, module = "i6p._core")]
#[derive(Clone)]
pub(crate) struct Limits(pub(crate) i6p_net::Limits);

fn timeout(name: &str, value: Option<f64>, default: Duration) -> PyResult<Duration> {
    let Some(value) = value else {
        return Ok(default);
    };
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| invalid_argument(format!("{name} must be a positive number of seconds")))
}

/// A count or size: a wrong type is a `TypeError`, a negative or huge one an `InvalidArgument`.
fn count(name: &str, value: Option<&Bound<'_, PyAny>>, default: usize) -> PyResult<usize> {
    match value {
        None => Ok(default),
        Some(v) => Ok(int_in(name, v, 0, usize::MAX as u64)? as usize),
    }
}

#[pymethods]
impl Limits {
    #[new]
    #[pyo3(signature = (*, max_connections=None, max_connections_per_peer=None, max_connections_per_prefix=None, max_handshakes=None, handshake_rate_per_prefix=None, max_queued_sessions=None, max_queued_streams=None, max_requests=None, max_requests_per_peer=None, send_timeout=None, request_idle_timeout=None, read_ahead=None, max_introductions=None, max_introductions_per_peer=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_connections: Option<&Bound<'_, PyAny>>,
        max_connections_per_peer: Option<&Bound<'_, PyAny>>,
        max_connections_per_prefix: Option<&Bound<'_, PyAny>>,
        max_handshakes: Option<&Bound<'_, PyAny>>,
        handshake_rate_per_prefix: Option<&Bound<'_, PyAny>>,
        max_queued_sessions: Option<&Bound<'_, PyAny>>,
        max_queued_streams: Option<&Bound<'_, PyAny>>,
        max_requests: Option<&Bound<'_, PyAny>>,
        max_requests_per_peer: Option<&Bound<'_, PyAny>>,
        send_timeout: Option<f64>,
        request_idle_timeout: Option<f64>,
        read_ahead: Option<&Bound<'_, PyAny>>,
        max_introductions: Option<&Bound<'_, PyAny>>,
        max_introductions_per_peer: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let d = i6p_net::Limits::default();
        let limits = i6p_net::Limits {
            max_connections: count("max_connections", max_connections, d.max_connections)?,
            max_connections_per_peer: count(
                "max_connections_per_peer",
                max_connections_per_peer,
                d.max_connections_per_peer,
            )?,
            max_connections_per_prefix: count(
                "max_connections_per_prefix",
                max_connections_per_prefix,
                d.max_connections_per_prefix,
            )?,
            max_handshakes: count("max_handshakes", max_handshakes, d.max_handshakes)?,
            handshake_rate_per_prefix: count(
                "handshake_rate_per_prefix",
                handshake_rate_per_prefix,
                d.handshake_rate_per_prefix,
            )?,
            max_queued_sessions: count(
                "max_queued_sessions",
                max_queued_sessions,
                d.max_queued_sessions,
            )?,
            max_queued_streams: count(
                "max_queued_streams",
                max_queued_streams,
                d.max_queued_streams,
            )?,
            max_requests: count("max_requests", max_requests, d.max_requests)?,
            max_requests_per_peer: count(
                "max_requests_per_peer",
                max_requests_per_peer,
                d.max_requests_per_peer,
            )?,
            send_timeout: timeout("send_timeout", send_timeout, d.send_timeout)?,
            request_idle_timeout: timeout(
                "request_idle_timeout",
                request_idle_timeout,
                d.request_idle_timeout,
            )?,
            read_ahead: count("read_ahead", read_ahead, d.read_ahead)?,
            max_introductions: count("max_introductions", max_introductions, d.max_introductions)?,
            max_introductions_per_peer: count(
                "max_introductions_per_peer",
                max_introductions_per_peer,
                d.max_introductions_per_peer,
            )?,
        };
        limits
            .validate()
            .map_err(|e| invalid_argument(e.to_string()))?;
        Ok(Self(limits))
    }

    /// Incoming connections (handshaking or established) at once.
    #[getter]
    fn max_connections(&self) -> usize {
        self.0.max_connections
    }

    /// Incoming connections from one PeerId at once.
    #[getter]
    fn max_connections_per_peer(&self) -> usize {
        self.0.max_connections_per_peer
    }

    /// Incoming connections from one address prefix (/64, or /32 for IPv4) at once.
    #[getter]
    fn max_connections_per_prefix(&self) -> usize {
        self.0.max_connections_per_prefix
    }

    /// Incoming handshakes in progress (past half of it: QUIC Retry first; at it: refused).
    #[getter]
    fn max_handshakes(&self) -> usize {
        self.0.max_handshakes
    }

    /// New incoming connections admitted per second from one address prefix (bursts of two
    /// seconds' worth); past it, refused before any cryptography.
    #[getter]
    fn handshake_rate_per_prefix(&self) -> usize {
        self.0.handshake_rate_per_prefix
    }

    /// Established sessions waiting for `accept` before new ones are refused.
    #[getter]
    fn max_queued_sessions(&self) -> usize {
        self.0.max_queued_sessions
    }

    /// Streams of one session waiting for `accept_stream` before new ones are refused.
    #[getter]
    fn max_queued_streams(&self) -> usize {
        self.0.max_queued_streams
    }

    /// Blob requests served at once by the node.
    #[getter]
    fn max_requests(&self) -> usize {
        self.0.max_requests
    }

    /// Blob requests served at once to one PeerId.
    #[getter]
    fn max_requests_per_peer(&self) -> usize {
        self.0.max_requests_per_peer
    }

    /// Seconds a request may go without its requester taking data before it is reset.
    #[getter]
    fn send_timeout(&self) -> f64 {
        self.0.send_timeout.as_secs_f64()
    }

    /// Seconds a FEC request may go without a frame from its requester once sent.
    #[getter]
    fn request_idle_timeout(&self) -> f64 {
        self.0.request_idle_timeout.as_secs_f64()
    }

    /// Bytes of group data a request reads ahead of the network (at least one group).
    #[getter]
    fn read_ahead(&self) -> usize {
        self.0.read_ahead
    }

    /// Introductions this node coordinates at once.
    #[getter]
    fn max_introductions(&self) -> usize {
        self.0.max_introductions
    }

    /// Introductions one asking peer may have in flight through this node at once.
    #[getter]
    fn max_introductions_per_peer(&self) -> usize {
        self.0.max_introductions_per_peer
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }

    fn __repr__(&self) -> String {
        let l = &self.0;
        format!(
            "Limits(max_connections={}, max_connections_per_peer={}, \
             max_connections_per_prefix={}, max_handshakes={}, \
             handshake_rate_per_prefix={}, max_queued_sessions={}, \
             max_queued_streams={}, max_requests={}, max_requests_per_peer={}, \
             send_timeout={}, request_idle_timeout={}, read_ahead={})",
            l.max_connections,
            l.max_connections_per_peer,
            l.max_connections_per_prefix,
            l.max_handshakes,
            l.handshake_rate_per_prefix,
            l.max_queued_sessions,
            l.max_queued_streams,
            l.max_requests,
            l.max_requests_per_peer,
            l.send_timeout.as_secs_f64(),
            l.request_idle_timeout.as_secs_f64(),
            l.read_ahead,
        )
    }
}
