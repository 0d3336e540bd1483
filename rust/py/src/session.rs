//! `Session`: a symmetric session with one peer. Each object holds the session open (an
//! `AppHandle`, as each of its streams does): once the application drops the last of them,
//! the session is closed with `ABANDONED`.

use crate::codes::close_code;
use crate::errors::{invalid_argument, to_py};
use crate::handoff::AcceptedStream;
use crate::peer_id::PeerId;
use crate::runtime::future;
use crate::stream::Stream;
use i6p_net::addr::format_addr;
use i6p_net::session::AppHandle;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// One end of a session.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct Session {
    inner: i6p_net::Session,
    identity: i6p_core::Identity,
    _hold: AppHandle,
}

impl Session {
    pub(crate) fn new(inner: i6p_net::Session, identity: i6p_core::Identity) -> Self {
        Self {
            _hold: inner.app_handle(),
            inner,
            identity,
        }
    }

    /// The engine's session: the one this object was made for, or the session that
    /// replaced it (a relayed session upgraded to a direct path follows it).
    pub(crate) fn engine(&self) -> i6p_net::Session {
        self.inner.current()
    }

    /// This node's identity key (signs HELLOs).
    pub(crate) fn identity(&self) -> &i6p_core::Identity {
        &self.identity
    }
}

#[pymethods]
impl Session {
    /// The peer's verified PeerId.
    #[getter]
    fn remote_peer_id(&self) -> PeerId {
        PeerId(self.engine().remote_peer_id())
    }

    /// The peer's current address.
    #[getter]
    fn remote_addr(&self) -> String {
        format_addr(&self.engine().remote_addr())
    }

    /// Capabilities from the peer's HELLO, in its order.
    #[getter]
    fn remote_capabilities(&self) -> Vec<(String, String)> {
        self.engine().remote_capabilities()
    }

    /// Listen addresses from the peer's HELLO.
    #[getter]
    fn remote_listen_addrs(&self) -> Vec<String> {
        self.inner
            .remote_listen_addrs()
            .iter()
            .map(format_addr)
            .collect()
    }

    /// Our address as the peer sees it, once its PEER_INFO arrived.
    #[getter]
    fn observed_addr(&self) -> Option<String> {
        self.engine().observed_addr().map(|a| format_addr(&a))
    }

    /// How the session's packets travel: "direct", "punched" or "relayed".
    #[getter]
    fn route(&self) -> &'static str {
        self.engine().route().as_str()
    }

    /// True when this side dialed.
    #[getter]
    fn is_dialer(&self) -> bool {
        self.engine().is_dialer()
    }

    /// True when the TLS handshake resumed an earlier session with this peer.
    #[getter]
    fn resumed(&self) -> bool {
        self.engine().resumed()
    }

    /// Early data: "none", "pending", "accepted" or "rejected".
    #[getter]
    fn early_data(&self) -> &'static str {
        match self.engine().early_data() {
            i6p_net::session::EARLY_PENDING => "pending",
            i6p_net::session::EARLY_ACCEPTED => "accepted",
            i6p_net::session::EARLY_REJECTED => "rejected",
            _ => "none",
        }
    }

    /// Requests (PING, GET) this side served before the TLS handshake completed.
    #[getter]
    fn early_requests(&self) -> u64 {
        self.engine().early_requests()
    }

    /// True once the session is closing or closed: no new stream can be opened on it.
    #[getter]
    fn closed(&self) -> bool {
        !self.engine().is_usable()
    }

    /// True once the TLS handshake is complete.
    #[getter]
    fn handshake_done(&self) -> bool {
        self.engine().handshake_done()
    }

    /// Waits for the HELLO exchange (a session opened in 0-RTT finishes it in the background).
    fn wait_established<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.engine();
        future(py, async move { s.wait_established().await.map_err(to_py) })
    }

    /// Opens a bidirectional stream.
    fn open_stream<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.engine();
        future(py, async move {
            let (send, recv) = s.open_stream().await.map_err(to_py)?;
            let hold = s.app_handle();
            Ok(Stream::new(send, recv, hold))
        })
    }

    /// Waits for a stream the peer opens.
    fn accept_stream<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let first = self.inner.clone();
        future(py, async move {
            // A session that moved to a better path ends its old connection: streams the
            // peer opens from then on come on the new one.
            let mut s = first.current();
            let stream = loop {
                match s.accept_stream().await {
                    Ok(stream) => break stream,
                    Err(e) => match s.successor() {
                        Some(next) => s = next,
                        None => return Err(to_py(e)),
                    },
                }
            };
            Ok(AcceptedStream {
                stream: Some(stream),
                session: s,
            })
        })
    }

    /// Round-trip time of one PING/PONG, in seconds; `Timeout` after `timeout` seconds
    /// without a PONG.
    #[pyo3(signature = (timeout=None))]
    fn ping<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let timeout = timeout
            .map(|t| positive_seconds("timeout", t))
            .transpose()?;
        let s = self.engine();
        future(py, async move {
            let rtt = s.ping_within(timeout).await.map_err(to_py)?;
            Ok(rtt.as_secs_f64())
        })
    }

    /// Asks the peer to dial this node back from another port (at the IP it observes, and
    /// at `port`, or the port it observes); True when its handshake got through.
    #[pyo3(signature = (port=None))]
    fn dial_back<'py>(
        &self,
        py: Python<'py>,
        port: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let port = port
            .map(|p| crate::options::int_in("port", p, 1, u64::from(u16::MAX)))
            .transpose()?
            .map(|p| p as u16);
        let s = self.engine();
        future(py, async move { s.dial_back(port).await.map_err(to_py) })
    }

    /// Ends the session (code 8, timed out) when the peer is silent for `seconds`; None
    /// turns the check off.
    fn set_liveness(&self, seconds: Option<f64>) -> PyResult<()> {
        let period = seconds
            .map(|s| positive_seconds("liveness", s))
            .transpose()?;
        let _runtime = crate::runtime::handle().enter();
        self.engine().set_liveness(period).map_err(to_py)
    }

    /// The session's liveness period in seconds, or None.
    #[getter]
    fn liveness(&self) -> Option<f64> {
        self.engine().liveness().map(|d| d.as_secs_f64())
    }

    /// Closes the session with a code and reason delivered to the peer.
    #[pyo3(signature = (code=None, reason=String::new()))]
    fn close<'py>(
        &self,
        py: Python<'py>,
        code: Option<&Bound<'py, PyAny>>,
        reason: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let code = code.map_or(Ok(0), close_code)?;
        let (s, first) = (self.engine(), self.inner.clone());
        future(py, async move {
            s.close(code, &reason).await;
            if first.successor().is_some() {
                first.close(code, &reason).await;
            }
            Ok(())
        })
    }

    /// Closes the session with `ABANDONED` (code 9): the application left it by an exception.
    fn abandon<'py>(&self, py: Python<'py>, reason: String) -> PyResult<Bound<'py, PyAny>> {
        let (s, first) = (self.engine(), self.inner.clone());
        future(py, async move {
            s.close(i6p_core::codes::ABANDONED, &reason).await;
            if first.successor().is_some() {
                first.close(i6p_core::codes::ABANDONED, &reason).await;
            }
            Ok(())
        })
    }

    /// Waits until the session ends; returns (code, reason, by_peer).
    fn wait_closed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let first = self.inner.clone();
        future(py, async move {
            let mut s = first.current();
            let closed = loop {
                let e = s.closed().await;
                match s.successor() {
                    Some(next) => s = next,
                    None => break e,
                }
            };
            Ok(match closed {
                i6p_net::NetError::ConnectionLost {
                    code,
                    reason,
                    by_peer,
                } => (code, reason, by_peer),
                other => (0, other.to_string(), false),
            })
        })
    }

    /// Path and traffic figures from the QUIC connection.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.engine().stats();
        let d = PyDict::new(py);
        d.set_item("rtt", s.rtt.as_secs_f64())?;
        d.set_item("cwnd", s.cwnd)?;
        d.set_item("bytes_sent", s.bytes_sent)?;
        d.set_item("bytes_received", s.bytes_received)?;
        d.set_item("packets_sent", s.packets_sent)?;
        d.set_item("packets_received", s.packets_received)?;
        d.set_item("packets_lost", s.packets_lost)?;
        d.set_item("bytes_lost", s.bytes_lost)?;
        d.set_item("mtu", s.mtu)?;
        d.set_item("black_holes", s.black_holes)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Session(peer={}, addr={})",
            self.engine().remote_peer_id().short(),
            format_addr(&self.engine().remote_addr())
        )
    }
}

/// A positive, finite number of seconds, or an `InvalidArgument` naming `name`.
pub(crate) fn positive_seconds(name: &str, value: f64) -> PyResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| invalid_argument(format!("{name} must be a positive number of seconds")))
}
