//! TCP sockets owned by the engine, for carrying TCP connections over streams
//! (`i6p.forward`): `TcpListener` accepts, `TcpConnection.connect` dials, and
//! `Stream.splice_tcp` copies a connection both ways on the engine's runtime. Their errors
//! are Python's `OSError`s (`ConnectionRefusedError`...), as with any TCP socket.

use crate::completion::on_loop as future;
use crate::errors::invalid_argument;
use pyo3::prelude::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A TCP connection, until a splice takes it.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct TcpConnection {
    inner: Mutex<Option<tokio::net::TcpStream>>,
    peer: String,
}

impl TcpConnection {
    fn new(tcp: tokio::net::TcpStream) -> Self {
        let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        Self {
            inner: Mutex::new(Some(tcp)),
            peer,
        }
    }

    /// The connection, once: a second splice of it is an `InvalidArgument`.
    pub(crate) fn take(&self) -> PyResult<tokio::net::TcpStream> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| invalid_argument("the TCP connection was already spliced or closed"))
    }
}

#[pymethods]
impl TcpConnection {
    /// Connects to `host:port`, trying each address the name resolves to in turn.
    #[staticmethod]
    fn connect(py: Python<'_>, host: String, port: u16) -> PyResult<Bound<'_, PyAny>> {
        future(py, async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(TcpConnection::new(tcp))
        })
    }

    /// The peer's address, `host:port` (`[v6]:port`).
    #[getter]
    fn peer_addr(&self) -> String {
        self.peer.clone()
    }

    /// Closes the connection with RST (the far end sees a reset, not an end).
    fn reset(&self) {
        if let Some(tcp) = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
        }
    }

    fn __repr__(&self) -> String {
        format!("TcpConnection(peer={})", self.peer)
    }
}

/// A listening TCP socket.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct TcpListener {
    inner: Mutex<Option<Arc<tokio::net::TcpListener>>>,
    /// True once closed; an accept in flight or to come sees it.
    closed: watch::Sender<bool>,
    addr: SocketAddr,
}

#[pymethods]
impl TcpListener {
    /// Listens on `host:port` (port 0: any free one, see `port`).
    #[staticmethod]
    fn bind(py: Python<'_>, host: String, port: u16) -> PyResult<Bound<'_, PyAny>> {
        future(py, async move {
            let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
            let addr = listener.local_addr()?;
            Ok(TcpListener {
                inner: Mutex::new(Some(Arc::new(listener))),
                closed: watch::Sender::new(false),
                addr,
            })
        })
    }

    /// The next connection; raises `OSError` once the listener is closed.
    fn accept<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let listener = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut closed = self.closed.subscribe();
        future(py, async move {
            let Some(listener) = listener else {
                return Err(closed_error());
            };
            tokio::select! {
                accepted = listener.accept() => Ok(TcpConnection::new(accepted?.0)),
                _ = closed.wait_for(|c| *c) => Err(closed_error()),
            }
        })
    }

    /// Stops listening (accepts waiting now raise `OSError`); connections stay.
    fn close(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.closed.send_replace(true);
    }

    /// The address listened on, `host:port`.
    #[getter]
    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The port listened on.
    #[getter]
    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn __repr__(&self) -> String {
        format!("TcpListener(addr={})", self.addr)
    }
}

fn closed_error() -> PyErr {
    pyo3::exceptions::PyOSError::new_err("the TCP listener is closed")
}
