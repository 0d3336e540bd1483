//! Symmetric peer sessions over one QUIC connection.
//!
//! Who dialed matters only for the handshake (`handshake`): afterwards either side opens and
//! accepts streams, pings and closes. Each session runs one task that serves the control
//! stream (`control`: PING/PONG, PEER_INFO, CLOSE) and one that accepts the peer's streams
//! and hands each, by its kind byte, to the protocol handler registered on the node
//! ([`dispatch`]); both end with the connection.
//!
//! This module knows no transfer protocol: blobs, FEC and the application's streams are
//! handlers, and per-session state of a protocol (the FEC datagram router, say) lives in the
//! session's typed extension slots, set up by the protocol's own module.

mod control;
pub mod dispatch;
mod handle;
mod handshake;
mod liveness;
mod order;
mod route;
pub mod stream;
mod successor;
pub use liveness::MIN_LIVENESS;
pub use route::{Route, COORDINATED};

pub(crate) use dispatch::dispatch_streams;
pub use dispatch::{HandlerFuture, ProtocolHandler, Protocols};
pub use handle::{AppHandle, TransferHold};
pub(crate) use handshake::{dialer_exchange, listener_exchange, send_early_hello};

use crate::discovery::AddressBook;
use crate::error::{describe_connection_error, NetError, Result};
use i6p_core::codes;
use i6p_core::kinds::STREAM_APP;
use i6p_core::{Close, FrameType, Hello, Identity, PeerId, PublicKey, Role};
use quinn::{ConnectionError, VarInt};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stream::{RecvStream, SendStream};
use tokio::sync::{oneshot, watch, Notify};

/// Traffic and path figures of a session, from the QUIC connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionStats {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Congestion window in bytes.
    pub cwnd: u64,
    /// UDP payload bytes sent.
    pub bytes_sent: u64,
    /// UDP payload bytes received.
    pub bytes_received: u64,
    /// UDP datagrams sent.
    pub packets_sent: u64,
    /// UDP datagrams received.
    pub packets_received: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Bytes in packets declared lost.
    pub bytes_lost: u64,
    /// The largest UDP payload this side sends on the path now (quinn's current MTU: found by
    /// path MTU discovery, 1,200 after a black hole).
    pub mtu: u16,
    /// Times the path was taken for a black hole (large packets lost) and fell back.
    pub black_holes: u64,
}

/// One end of a session. Cheap to clone; all clones are the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

pub(crate) struct SessionInner {
    pub(crate) conn: quinn::Connection,
    remote_peer_id: PeerId,
    remote_key: PublicKey,
    /// The peer's verified HELLO; on a session opened in 0-RTT it arrives after the handshake.
    remote_hello: OnceLock<Hello>,
    /// True once the HELLO exchange is done (or the session is raw).
    established: watch::Sender<bool>,
    /// True once the TLS handshake is complete: nothing before that can be trusted not to be
    /// a replay, so only replay-safe requests are served until then.
    handshake: watch::Sender<bool>,
    /// The handshake resumed an earlier TLS session.
    resumed: AtomicBool,
    /// Whether early data was sent (dialer) or requests served before the handshake
    /// completed (listener): one of the `EARLY_*` values.
    early: AtomicU8,
    /// Requests (PING, GET) served before the handshake completed.
    early_requests: AtomicU64,
    /// Why a session returned before its handshake completed (0-RTT) failed afterwards.
    failure: OnceLock<NetError>,
    /// Set (true) once the task that finishes a 0-RTT session has succeeded or failed.
    failed: watch::Sender<bool>,
    role: Role,
    node_closed: Arc<AtomicBool>,
    control_send: tokio::sync::Mutex<Option<quinn::SendStream>>,
    observed_addr: Mutex<Option<SocketAddr>>,
    pings: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_nonce: AtomicU64,
    /// A CLOSE received from the peer, or one we sent: it explains the connection's end.
    close: Mutex<Option<(Close, bool)>>,
    /// Application streams waiting for `accept_stream`: filled by the dispatcher, and by
    /// streams handed back undelivered (their accept was cancelled).
    returned: Mutex<VecDeque<(quinn::SendStream, quinn::RecvStream)>>,
    returned_notify: Notify,
    /// Application streams settled ahead of an earlier stream (see [`order`]).
    order: Mutex<order::StreamOrder>,
    /// Held from opening a stream until its kind byte is queued (see `open_kind`).
    opening: tokio::sync::Mutex<()>,
    max_queued_streams: usize,
    /// A raw session (conformance tests): no HELLO, no control task, bare QUIC streams.
    raw: bool,
    /// Requests served before a handshake completed, on all of the node's sessions.
    node_early_requests: Arc<AtomicU64>,
    /// The handlers of the node's protocols, by stream kind.
    protocols: Arc<Protocols>,
    /// Per-session state of protocols, one value per type (see [`Session::extension`]).
    extensions: dispatch::Extensions,
    /// Set once a protocol reads the connection's datagrams (until then they are dropped).
    datagrams_claimed: watch::Sender<bool>,
    /// The node's address book, told where the peer was seen once its HELLO verified.
    book: Option<Arc<AddressBook>>,
    /// How the connection's packets travel (direct, punched, relayed); set once more when a
    /// coordinated dial completes (its HELLO exchange runs in the shared dial code).
    route: Mutex<Route>,
}

/// No early data on this session.
pub const EARLY_NONE: u8 = 0;
/// Early data was sent; the handshake has not said yet whether the peer took it.
pub const EARLY_PENDING: u8 = 1;
/// The peer accepted the early data (dialer), or requests were served early (listener).
pub const EARLY_ACCEPTED: u8 = 2;
/// The peer refused the early data; what it carried was sent again after the handshake.
pub const EARLY_REJECTED: u8 = 3;

/// What the handshake produced, before the session starts serving.
pub(crate) struct Established {
    pub(crate) conn: quinn::Connection,
    pub(crate) remote_peer_id: PeerId,
    pub(crate) remote_key: PublicKey,
    pub(crate) role: Role,
    pub(crate) node_closed: Arc<AtomicBool>,
    /// Requests served before a handshake completed, on all of the node's sessions.
    pub(crate) node_early_requests: Arc<AtomicU64>,
    /// The handlers of the node's protocols, by stream kind.
    pub(crate) protocols: Arc<Protocols>,
    /// How the connection's flow-control windows are tuned.
    pub(crate) windows: crate::transport::Windows,
    /// The node's socket, whose buffers grow with the windows.
    pub(crate) buffers: Option<Arc<crate::socket::SocketBuffers>>,
    /// Application streams that may wait for `accept_stream` before new ones are refused.
    pub(crate) max_queued_streams: usize,
    /// The node's address book (see [`SessionInner::book`]).
    pub(crate) book: Option<Arc<AddressBook>>,
    /// The node's liveness period for its sessions (see `Session::set_liveness`).
    pub(crate) liveness: Option<Duration>,
    /// The path the connection was made on.
    pub(crate) route: Route,
}

impl Session {
    /// A session over an established connection. `raw` sessions (conformance tests) have no
    /// HELLO, no control task and bare QUIC streams; the others are established once the
    /// HELLO exchange ([`dialer_exchange`] or [`listener_exchange`]) is done.
    pub(crate) fn new(est: Established, raw: bool, send: Option<quinn::SendStream>) -> Self {
        if !raw {
            // Raw sessions close when their last handle goes; the tuner would keep the
            // connection alive. Normal sessions live until closed anyway.
            let tune =
                crate::transport::auto_tune(est.conn.clone(), est.windows, est.buffers.clone());
            tokio::spawn(tune);
        }
        let (established, _) = watch::channel(raw);
        let session = Self {
            inner: Arc::new(SessionInner {
                conn: est.conn,
                remote_peer_id: est.remote_peer_id,
                remote_key: est.remote_key,
                remote_hello: OnceLock::new(),
                established,
                handshake: watch::channel(raw).0,
                resumed: AtomicBool::new(false),
                early: AtomicU8::new(EARLY_NONE),
                early_requests: AtomicU64::new(0),
                failure: OnceLock::new(),
                failed: watch::channel(false).0,
                role: est.role,
                node_closed: est.node_closed,
                control_send: tokio::sync::Mutex::new(send),
                observed_addr: Mutex::new(None),
                pings: Mutex::new(HashMap::new()),
                next_nonce: AtomicU64::new(rand::random()),
                close: Mutex::new(None),
                returned: Mutex::new(VecDeque::new()),
                returned_notify: Notify::new(),
                order: Mutex::default(),
                opening: tokio::sync::Mutex::default(),
                max_queued_streams: est.max_queued_streams,
                raw,
                node_early_requests: est.node_early_requests,
                protocols: est.protocols,
                extensions: dispatch::Extensions::default(),
                datagrams_claimed: watch::channel(false).0,
                book: est.book,
                route: Mutex::new(est.route),
            }),
        };
        if !raw {
            session.drain_datagrams();
            if est.liveness.is_some() {
                let _ = session.set_liveness(est.liveness);
            }
        }
        session
    }

    /// How the session's packets travel between the peers.
    pub fn route(&self) -> Route {
        self.inner.route.lock().map_or(Route::Direct, |r| *r)
    }

    /// Marks the session as made on `route` (a coordinated or relayed connection).
    pub(crate) fn set_route(&self, route: Route) {
        if let Ok(mut r) = self.inner.route.lock() {
            *r = route;
        }
    }

    pub(crate) fn set_resumed(&self, resumed: bool) {
        self.inner.resumed.store(resumed, Ordering::Release);
    }

    pub(crate) fn set_early(&self, state: u8) {
        self.inner.early.store(state, Ordering::Release);
    }

    pub(crate) fn inner_conn(&self) -> &quinn::Connection {
        &self.inner.conn
    }

    /// True once the TLS handshake is complete.
    pub fn handshake_done(&self) -> bool {
        *self.inner.handshake.borrow()
    }

    /// Counts a request served; before the handshake completes it is an early one.
    pub(crate) fn note_request(&self) {
        if !self.handshake_done() {
            self.inner.early_requests.fetch_add(1, Ordering::Relaxed);
            self.inner
                .node_early_requests
                .fetch_add(1, Ordering::Relaxed);
            // The listener learns that 0-RTT was taken from what it served (quinn does not
            // report it on the server side).
            self.inner.early.store(EARLY_ACCEPTED, Ordering::Release);
        }
    }

    /// Whether the TLS handshake resumed an earlier session with this peer (known once the
    /// handshake is complete).
    pub fn resumed(&self) -> bool {
        self.inner.resumed.load(Ordering::Acquire)
    }

    /// Early data on this session: one of [`EARLY_NONE`], [`EARLY_PENDING`],
    /// [`EARLY_ACCEPTED`], [`EARLY_REJECTED`].
    pub fn early_data(&self) -> u8 {
        self.inner.early.load(Ordering::Acquire)
    }

    /// Requests this side served before the handshake completed (listener side).
    pub fn early_requests(&self) -> u64 {
        self.inner.early_requests.load(Ordering::Relaxed)
    }

    /// The verified identity of the other end.
    pub fn remote_peer_id(&self) -> PeerId {
        self.inner.remote_peer_id
    }

    /// The other end's public key, as TLS authenticated it.
    pub fn remote_public_key(&self) -> PublicKey {
        self.inner.remote_key
    }

    /// The other end's current address (IPv4-mapped addresses shown as IPv4).
    pub fn remote_addr(&self) -> SocketAddr {
        crate::addr::canonical(self.inner.conn.remote_address())
    }

    /// The capabilities from the peer's HELLO.
    pub fn remote_capabilities(&self) -> Vec<(String, String)> {
        self.inner
            .remote_hello
            .get()
            .map(|h| h.capabilities.clone())
            .unwrap_or_default()
    }

    /// The listen addresses from the peer's HELLO.
    pub fn remote_listen_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .remote_hello
            .get()
            .map(|h| h.listen_addrs.clone())
            .unwrap_or_default()
    }

    /// The peer's protocol version, from its HELLO.
    pub fn remote_version(&self) -> Option<u16> {
        self.inner.remote_hello.get().map(|h| h.version)
    }

    /// Our address as the peer observes it (from its PEER_INFO), once it arrived.
    pub fn observed_addr(&self) -> Option<SocketAddr> {
        self.inner.observed_addr.lock().ok().and_then(|g| *g)
    }

    /// True when this side dialed.
    pub fn is_dialer(&self) -> bool {
        self.inner.role == Role::Dialer
    }

    /// Opens a bidirectional application stream; the peer's `accept_stream` sees it at once.
    pub async fn open_stream(&self) -> Result<(SendStream, RecvStream)> {
        let kind = (!self.inner.raw).then_some(STREAM_APP);
        let (send, recv) = self.open_kind(kind).await?;
        Ok(self.wrap(send, recv))
    }

    /// Opens a stream and writes its kind byte (none on raw sessions).
    pub(crate) async fn open_kind(
        &self,
        kind: Option<u8>,
    ) -> Result<(quinn::SendStream, quinn::RecvStream)> {
        // Streams are numbered when opened, and the peer delivers them in that order; its
        // held-back streams keep their data in the connection's receive window. So a
        // stream's kind byte must be queued before any byte of a later stream: were a later
        // stream's data sent first while this kind byte waited for connection credit, that
        // data could fill the peer's window and the kind byte never get credit (until the
        // peer's STREAM_KIND_TIMEOUT drops the stream). quinn sends queued streams first in,
        // first out, so queuing the kind bytes in stream order is enough.
        let _turn = self.inner.opening.lock().await;
        let (mut send, recv) = self.inner.conn.open_bi().await.map_err(|e| self.lost(&e))?;
        if let Some(kind) = kind {
            send.write_all(&[kind]).await.map_err(|e| match e {
                quinn::WriteError::ConnectionLost(c) => self.lost(&c),
                other => NetError::Stream(other.to_string()),
            })?;
        }
        Ok((send, recv))
    }

    /// Waits for the peer to open an application stream.
    pub async fn accept_stream(&self) -> Result<(SendStream, RecvStream)> {
        if self.inner.raw {
            let (send, recv) = self
                .inner
                .conn
                .accept_bi()
                .await
                .map_err(|e| self.lost(&e))?;
            return Ok(self.wrap(send, recv));
        }
        loop {
            let notified = self.inner.returned_notify.notified();
            let queued = self
                .inner
                .returned
                .lock()
                .ok()
                .and_then(|mut r| r.pop_front());
            if let Some((send, recv)) = queued {
                return Ok(self.wrap(send, recv));
            }
            tokio::select! {
                e = self.inner.conn.closed() => return Err(self.lost(&e)),
                () = notified => {}
            }
        }
    }

    /// Queues an application stream for `accept_stream`, or refuses it (reset and stopped
    /// with [`codes::BUSY`]) when too many already wait: unaccepted streams pin their data.
    fn queue_stream(&self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        if let Ok(mut r) = self.inner.returned.lock() {
            if r.len() >= self.inner.max_queued_streams {
                drop(r);
                let _ = send.reset(VarInt::from_u32(codes::BUSY));
                let _ = recv.stop(VarInt::from_u32(codes::BUSY));
                return;
            }
            r.push_back((send, recv));
        }
        self.inner.returned_notify.notify_one();
    }

    /// Sends one unreliable datagram as it is (conformance and abuse tests: a peer may send
    /// anything).
    pub fn send_raw_datagram(&self, data: bytes::Bytes) -> Result<()> {
        self.inner
            .conn
            .send_datagram(data)
            .map_err(|e| NetError::Stream(format!("datagram not sent: {e}")))
    }

    /// Ends a session the node cannot take (a limit is reached), telling the peer why.
    pub(crate) fn refuse(&self, code: u32, reason: &str) {
        self.record_close(
            Close {
                code,
                reason: reason.into(),
            },
            false,
        );
        crate::closing::close(&self.inner.conn, VarInt::from_u32(code), reason.as_bytes());
    }

    /// Hands back a stream whose acceptance was not delivered, for the next `accept_stream`.
    pub fn return_stream(&self, send: SendStream, recv: RecvStream) {
        let (send, recv) = (send.into_inner(), recv.into_inner());
        if let Ok(mut r) = self.inner.returned.lock() {
            r.push_front((send, recv));
        }
        self.inner.returned_notify.notify_one();
    }

    fn wrap(&self, send: quinn::SendStream, recv: quinn::RecvStream) -> (SendStream, RecvStream) {
        (
            SendStream::new(send, self.clone()),
            RecvStream::new(recv, self.clone()),
        )
    }

    /// False once the session is closing or closed (a CLOSE sent or received, a failed
    /// 0-RTT handshake, a connection that ended): such a session is never reused.
    pub fn is_usable(&self) -> bool {
        self.inner.conn.close_reason().is_none()
            && self.inner.failure.get().is_none()
            && self
                .inner
                .close
                .lock()
                .map(|c| c.is_none())
                .unwrap_or(false)
    }

    /// A handle that does not keep the session alive.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<SessionInner> {
        Arc::downgrade(&self.inner)
    }

    /// The session behind a handle from [`Self::downgrade`], if it still exists.
    pub(crate) fn upgrade(weak: &std::sync::Weak<SessionInner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// True when both handles are the same session.
    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Listener side: whether the dialer opened this session for blob transfers only (its
    /// HELLO says so). A listener's HELLO has no say.
    pub fn transfer_only(&self) -> bool {
        self.inner.role == Role::Listener
            && self
                .inner
                .remote_hello
                .get()
                .is_some_and(|h| h.transfer_only)
    }

    /// Waits until the session ends and says why.
    pub async fn closed(&self) -> NetError {
        let e = self.inner.conn.closed().await;
        self.lost(&e)
    }

    /// Path and traffic figures.
    pub fn stats(&self) -> SessionStats {
        let s = self.inner.conn.stats();
        SessionStats {
            rtt: s.path.rtt,
            cwnd: s.path.cwnd,
            bytes_sent: s.udp_tx.bytes,
            bytes_received: s.udp_rx.bytes,
            packets_sent: s.udp_tx.datagrams,
            packets_received: s.udp_rx.datagrams,
            packets_lost: s.path.lost_packets,
            bytes_lost: s.path.lost_bytes,
            mtu: s.path.current_mtu,
            black_holes: s.path.black_holes_detected,
        }
    }

    /// A HELLO frame signed for this connection in this side's role (conformance tests drive
    /// raw sessions with it).
    pub fn hello_frame(&self, identity: &Identity, hello: &Hello) -> Result<Vec<u8>> {
        let payload = hello.sign(identity, self.inner.role, &self.binding()?)?;
        Ok(i6p_core::frame::encode(FrameType::Hello, &payload)?)
    }

    /// Ends a session whose handshake or HELLO exchange failed after it was handed out (0-RTT);
    /// `e` is what its users get from then on.
    pub(crate) fn fail(&self, e: NetError, code: u32) {
        let reason = e.to_string();
        let _ = self.inner.failure.set(e);
        self.inner.failed.send_replace(true);
        crate::closing::close(&self.inner.conn, VarInt::from_u32(code), reason.as_bytes());
    }

    /// The error that explains why the session ended, given the connection's own error.
    pub(crate) fn lost(&self, e: &ConnectionError) -> NetError {
        if let Some(failure) = self.inner.failure.get() {
            return failure.clone();
        }
        if let Ok(g) = self.inner.close.lock() {
            if let Some((close, by_peer)) = g.as_ref() {
                // A session this side ended for silence says so, not "closed locally".
                let reason = if *by_peer || close.code == codes::TIMED_OUT {
                    close.reason.clone()
                } else {
                    format!("closed locally: {}", close.reason)
                };
                return NetError::ConnectionLost {
                    code: u64::from(close.code),
                    reason,
                    by_peer: *by_peer,
                };
            }
        }
        if self.inner.node_closed.load(Ordering::Acquire) {
            return NetError::ConnectionLost {
                code: u64::from(codes::NODE_CLOSED),
                reason: "node closed".into(),
                by_peer: false,
            };
        }
        describe_connection_error(e)
    }

    /// A stream error as what caused it: when the connection is gone, why it went (a 0-RTT
    /// session whose handshake failed reports that, not its streams' "0-RTT rejected").
    pub(crate) fn explain(&self, e: NetError) -> NetError {
        match e {
            NetError::Stream(_) | NetError::ConnectionLost { .. }
                if self.inner.conn.close_reason().is_some() =>
            {
                self.lost_now()
            }
            other => other,
        }
    }

    pub(crate) fn lost_now(&self) -> NetError {
        match self.inner.conn.close_reason() {
            Some(e) => self.lost(&e),
            None => NetError::ConnectionLost {
                code: 0,
                reason: "session ended".into(),
                by_peer: false,
            },
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Session(peer={}, addr={})",
            self.inner.remote_peer_id.short(),
            self.remote_addr()
        )
    }
}

fn poisoned() -> NetError {
    NetError::Stream("internal lock poisoned".into())
}

/// Milliseconds since the Unix epoch, for HELLO timestamps.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
