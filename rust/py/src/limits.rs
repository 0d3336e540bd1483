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

/// Whether a relay bound is the word "unlimited" (the operator's explicit choice).
fn is_unlimited(value: &Bound<'_, PyAny>) -> bool {
    value.extract::<String>().is_ok_and(|s| s == "unlimited")
}

/// A relay circuit's byte bound: a count, or "unlimited".
fn relay_bytes(value: Option<&Bound<'_, PyAny>>, default: Option<u64>) -> PyResult<Option<u64>> {
    match value {
        None => Ok(default),
        Some(v) if is_unlimited(v) => Ok(None),
        Some(v) => Ok(Some(int_in("relay_circuit_bytes", v, 1, u64::MAX)?)),
    }
}

/// A relay circuit's duration bound: positive seconds, or "unlimited".
fn relay_duration(
    value: Option<&Bound<'_, PyAny>>,
    default: Option<Duration>,
) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(default),
        Some(v) if is_unlimited(v) => Ok(None),
        Some(v) => {
            let secs: f64 = v.extract().map_err(|_| {
                invalid_argument("relay_circuit_duration must be seconds or \"unlimited\"")
            })?;
            timeout("relay_circuit_duration", Some(secs), Duration::ZERO).map(Some)
        }
    }
}

/// Sets the relay bounds given (the others keep their defaults, already in `limits`).
fn reach_limits(
    limits: &mut i6p_net::Limits,
    counts: [Option<&Bound<'_, PyAny>>; 6],
    bytes: Option<&Bound<'_, PyAny>>,
    duration: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let [circuits, per_peer, relayed, introductions, introductions_per_peer, dial_backs] = counts;
    limits.max_introductions = count("max_introductions", introductions, limits.max_introductions)?;
    limits.max_introductions_per_peer = count(
        "max_introductions_per_peer",
        introductions_per_peer,
        limits.max_introductions_per_peer,
    )?;
    limits.max_dial_backs = count("max_dial_backs", dial_backs, limits.max_dial_backs)?;
    limits.max_relay_circuits = count("max_relay_circuits", circuits, limits.max_relay_circuits)?;
    limits.max_relay_circuits_per_peer = count(
        "max_relay_circuits_per_peer",
        per_peer,
        limits.max_relay_circuits_per_peer,
    )?;
    limits.max_relayed_sessions =
        count("max_relayed_sessions", relayed, limits.max_relayed_sessions)?;
    limits.relay_circuit_bytes = relay_bytes(bytes, limits.relay_circuit_bytes)?;
    limits.relay_circuit_duration = relay_duration(duration, limits.relay_circuit_duration)?;
    Ok(())
}

#[pymethods]
impl Limits {
    #[new]
    #[pyo3(signature = (*, max_connections=None, max_connections_per_peer=None, max_connections_per_prefix=None, max_handshakes=None, handshake_rate_per_prefix=None, max_queued_sessions=None, max_queued_streams=None, max_requests=None, max_requests_per_peer=None, send_timeout=None, request_idle_timeout=None, read_ahead=None, max_dial_backs=None, max_relay_circuits=None, max_relay_circuits_per_peer=None, relay_circuit_bytes=None, relay_circuit_duration=None, max_relayed_sessions=None, max_introductions=None, max_introductions_per_peer=None))]
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
        max_dial_backs: Option<&Bound<'_, PyAny>>,
        max_relay_circuits: Option<&Bound<'_, PyAny>>,
        max_relay_circuits_per_peer: Option<&Bound<'_, PyAny>>,
        relay_circuit_bytes: Option<&Bound<'_, PyAny>>,
        relay_circuit_duration: Option<&Bound<'_, PyAny>>,
        max_relayed_sessions: Option<&Bound<'_, PyAny>>,
        max_introductions: Option<&Bound<'_, PyAny>>,
        max_introductions_per_peer: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let d = i6p_net::Limits::default();
        // A count the caller gave, checked, or the default: one line per field.
        macro_rules! given {
            ($field:ident) => {
                count(stringify!($field), $field, d.$field)?
            };
        }
        let mut limits = i6p_net::Limits {
            max_connections: given!(max_connections),
            max_connections_per_peer: given!(max_connections_per_peer),
            max_connections_per_prefix: given!(max_connections_per_prefix),
            max_handshakes: given!(max_handshakes),
            handshake_rate_per_prefix: given!(handshake_rate_per_prefix),
            max_queued_sessions: given!(max_queued_sessions),
            max_queued_streams: given!(max_queued_streams),
            max_requests: given!(max_requests),
            max_requests_per_peer: given!(max_requests_per_peer),
            read_ahead: given!(read_ahead),
            send_timeout: timeout("send_timeout", send_timeout, d.send_timeout)?,
            request_idle_timeout: timeout(
                "request_idle_timeout",
                request_idle_timeout,
                d.request_idle_timeout,
            )?,
            ..d.clone()
        };
        reach_limits(
            &mut limits,
            [
                max_relay_circuits,
                max_relay_circuits_per_peer,
                max_relayed_sessions,
                max_introductions,
                max_introductions_per_peer,
                max_dial_backs,
            ],
            relay_circuit_bytes,
            relay_circuit_duration,
        )?;
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

    /// Dial-backs the node runs for peers at once (one per peer), and asks for at once.
    #[getter]
    fn max_dial_backs(&self) -> usize {
        self.0.max_dial_backs
    }

    /// Relay circuits the node carries at once (when it relays).
    #[getter]
    fn max_relay_circuits(&self) -> usize {
        self.0.max_relay_circuits
    }

    /// Relay circuits one requesting PeerId may have through the node at once.
    #[getter]
    fn max_relay_circuits_per_peer(&self) -> usize {
        self.0.max_relay_circuits_per_peer
    }

    /// Bytes a relay circuit carries before the relay ends it (code 13); None: unlimited.
    #[getter]
    fn relay_circuit_bytes(&self) -> Option<u64> {
        self.0.relay_circuit_bytes
    }

    /// Seconds a relay circuit may last before the relay ends it (code 13); None: unlimited.
    #[getter]
    fn relay_circuit_duration(&self) -> Option<f64> {
        self.0.relay_circuit_duration.map(|d| d.as_secs_f64())
    }

    /// Relayed sessions the node has at once (as requester or target).
    #[getter]
    fn max_relayed_sessions(&self) -> usize {
        self.0.max_relayed_sessions
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
             send_timeout={}, request_idle_timeout={}, read_ahead={}, max_dial_backs={}, \
             max_relay_circuits={}, max_relay_circuits_per_peer={}, relay_circuit_bytes={}, \
             relay_circuit_duration={}, max_relayed_sessions={})",
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
            l.max_dial_backs,
            l.max_relay_circuits,
            l.max_relay_circuits_per_peer,
            l.relay_circuit_bytes
                .map_or("'unlimited'".into(), |b| b.to_string()),
            l.relay_circuit_duration
                .map_or("'unlimited'".into(), |d| d.as_secs_f64().to_string()),
            l.max_relayed_sessions,
        )
    }
}
