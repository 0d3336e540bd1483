//! Symmetric peer sessions over one QUIC connection.
//!
//! Who dialed matters only for the handshake: afterwards either side opens and accepts
//! streams, pings and closes. Each session runs one task that serves the control stream
//! (PING/PONG, PEER_INFO, CLOSE); it ends with the connection.

use crate::blobs::BlobStore;
use crate::control::{codes, read_frame, write_frame};
use crate::error::{NetError, Result};
use crate::stream::{RecvStream, SendStream};
use i6p_core::transfer::{STREAM_KIND_APP, STREAM_KIND_BLOBS};
use i6p_core::{
    Close, CoreError, FrameType, Hello, Identity, PeerId, PeerInfo, Ping, PublicKey, Role,
};
use i6p_core::{EXPORTER_LABEL, EXPORTER_LEN};
use quinn::{ConnectionError, VarInt};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, Notify};

/// At most this many PINGs may await their PONG at once on one session.
const MAX_PENDING_PINGS: usize = 1024;

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
    remote_hello: Option<Hello>,
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
    /// A raw session (conformance tests): no HELLO, no control task, bare QUIC streams.
    raw: bool,
    store: Arc<BlobStore>,
}

/// What the handshake produced, before the session starts serving.
pub(crate) struct Established {
    pub(crate) conn: quinn::Connection,
    pub(crate) remote_peer_id: PeerId,
    pub(crate) remote_key: PublicKey,
    pub(crate) role: Role,
    pub(crate) node_closed: Arc<AtomicBool>,
    pub(crate) store: Arc<BlobStore>,
    /// How the connection's flow-control windows are tuned.
    pub(crate) windows: crate::transport::Windows,
    /// The node's socket, whose buffers grow with the windows.
    pub(crate) buffers: Option<Arc<crate::socket::SocketBuffers>>,
}

impl Established {
    /// The secret both ends export from this connection's TLS session for HELLO signatures.
    pub(crate) fn binding(&self) -> Result<[u8; EXPORTER_LEN]> {
        let mut out = [0u8; EXPORTER_LEN];
        self.conn
            .export_keying_material(&mut out, EXPORTER_LABEL, b"")
            .map_err(|_| NetError::Tls("cannot export keying material".into()))?;
        Ok(out)
    }

    /// A HELLO frame signed for this connection in this node's role.
    pub(crate) fn hello_frame(&self, identity: &Identity, hello: &Hello) -> Result<Vec<u8>> {
        let payload = hello.sign(identity, self.role, &self.binding()?)?;
        Ok(i6p_core::frame::encode(FrameType::Hello, &payload)?)
    }

    /// Runs the HELLO exchange on the control stream and starts serving it.
    pub(crate) async fn handshake(self, identity: &Identity, ours: &Hello) -> Result<Session> {
        let binding = self.binding()?;
        let (mut send, mut recv) = match self.role {
            Role::Dialer => self.conn.open_bi().await,
            Role::Listener => self.conn.accept_bi().await,
        }
        .map_err(|e| describe_connection_error(&e))?;
        let our_payload = ours.sign(identity, self.role, &binding)?;
        if self.role == Role::Dialer {
            write_frame(&mut send, FrameType::Hello, &our_payload).await?;
        }
        let frame = read_frame(&mut recv)
            .await?
            .ok_or_else(|| NetError::Protocol("control stream ended before hello".into()))?;
        if frame.known() != Some(FrameType::Hello) {
            return Err(NetError::Protocol(format!(
                "expected hello, got frame type {:#04x}",
                frame.kind
            )));
        }
        let peer_role = match self.role {
            Role::Dialer => Role::Listener,
            Role::Listener => Role::Dialer,
        };
        let theirs =
            Hello::verify(&frame.payload, &self.remote_key, peer_role, &binding).map_err(|e| {
                match e {
                    CoreError::UnsupportedVersion(_) => NetError::Core(e),
                    other => NetError::Protocol(other.to_string()),
                }
            })?;
        if self.role == Role::Listener {
            write_frame(&mut send, FrameType::Hello, &our_payload).await?;
        }
        let observed = PeerInfo {
            observed_addr: crate::addr::canonical(self.conn.remote_address()),
        };
        write_frame(&mut send, FrameType::PeerInfo, &observed.encode()).await?;
        let session = Session::new(self, Some(theirs), Some(send));
        tokio::spawn(serve_control(session.inner.clone(), recv));
        tokio::spawn(dispatch_streams(session.clone()));
        Ok(session)
    }
}

impl Session {
    pub(crate) fn new(
        est: Established,
        hello: Option<Hello>,
        send: Option<quinn::SendStream>,
    ) -> Self {
        let est_raw = hello.is_none();
        if !est_raw {
            // Raw sessions (conformance tests) close when their last handle goes; the tuner
            // would keep the connection alive. Normal sessions live until closed anyway.
            let tune =
                crate::transport::auto_tune(est.conn.clone(), est.windows, est.buffers.clone());
            tokio::spawn(tune);
        }
        let est_store = est.store.clone();
        Self {
            inner: Arc::new(SessionInner {
                conn: est.conn,
                remote_peer_id: est.remote_peer_id,
                remote_key: est.remote_key,
                remote_hello: hello,
                role: est.role,
                node_closed: est.node_closed,
                control_send: tokio::sync::Mutex::new(send),
                observed_addr: Mutex::new(None),
                pings: Mutex::new(HashMap::new()),
                next_nonce: AtomicU64::new(rand::random()),
                close: Mutex::new(None),
                returned: Mutex::new(VecDeque::new()),
                returned_notify: Notify::new(),
                raw: est_raw,
                store: est_store,
            }),
        }
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
            .as_ref()
            .map(|h| h.capabilities.clone())
            .unwrap_or_default()
    }

    /// The listen addresses from the peer's HELLO.
    pub fn remote_listen_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .remote_hello
            .as_ref()
            .map(|h| h.listen_addrs.clone())
            .unwrap_or_default()
    }

    /// The peer's protocol version, from its HELLO.
    pub fn remote_version(&self) -> Option<u16> {
        self.inner.remote_hello.as_ref().map(|h| h.version)
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
        let kind = (!self.inner.raw).then_some(STREAM_KIND_APP);
        let (send, recv) = self.open_kind(kind).await?;
        Ok(self.wrap(send, recv))
    }

    /// Opens a stream and writes its kind byte (none on raw sessions).
    pub(crate) async fn open_kind(
        &self,
        kind: Option<u8>,
    ) -> Result<(quinn::SendStream, quinn::RecvStream)> {
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

    fn queue_stream(&self, send: quinn::SendStream, recv: quinn::RecvStream) {
        if let Ok(mut r) = self.inner.returned.lock() {
            r.push_back((send, recv));
        }
        self.inner.returned_notify.notify_one();
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

    /// Sends a PING on the control stream and returns the time until its PONG.
    pub async fn ping(&self) -> Result<Duration> {
        let nonce = self.inner.next_nonce.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pings = self.inner.pings.lock().map_err(|_| poisoned())?;
            if pings.len() >= MAX_PENDING_PINGS {
                return Err(NetError::Stream("too many pings in flight".into()));
            }
            pings.insert(nonce, tx);
        }
        let _forget = PendingPing {
            inner: &self.inner,
            nonce,
        };
        let start = Instant::now();
        self.send_control(FrameType::Ping, &Ping { nonce }.encode())
            .await?;
        tokio::select! {
            r = rx => r.map_err(|_| self.lost_now()),
            e = self.inner.conn.closed() => Err(self.lost(&e)),
        }?;
        Ok(start.elapsed())
    }

    async fn send_control(&self, kind: FrameType, payload: &[u8]) -> Result<()> {
        let mut guard = self.inner.control_send.lock().await;
        let send = guard
            .as_mut()
            .ok_or_else(|| NetError::Stream("this session has no control stream".into()))?;
        match write_frame(send, kind, payload).await {
            Ok(()) => Ok(()),
            Err(e) => match self.inner.conn.close_reason() {
                Some(c) => Err(self.lost(&c)),
                None => Err(e),
            },
        }
    }

    /// Closes the session: sends CLOSE, gives the peer a moment to acknowledge by closing the
    /// connection itself, then closes the connection with the same code and reason.
    pub async fn close(&self, code: u32, reason: &str) {
        let close = Close {
            code,
            reason: i6p_core::messages::truncate_utf8(reason, i6p_core::messages::MAX_CLOSE_REASON)
                .to_string(),
        };
        self.record_close(close.clone(), false);
        let rtt = self.inner.conn.rtt();
        let grace = (rtt * 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let _ = tokio::time::timeout(grace, async {
            if self
                .send_control(FrameType::Close, &close.encode())
                .await
                .is_ok()
            {
                self.inner.conn.closed().await;
            }
        })
        .await;
        self.inner
            .conn
            .close(VarInt::from_u32(code), close.reason.as_bytes());
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
        }
    }

    /// Exports keying material bound to this connection (tests and raw sessions use it).
    pub fn hello_frame(&self, identity: &Identity, hello: &Hello) -> Result<Vec<u8>> {
        let est = Established {
            conn: self.inner.conn.clone(),
            remote_peer_id: self.inner.remote_peer_id,
            remote_key: self.inner.remote_key,
            role: self.inner.role,
            node_closed: self.inner.node_closed.clone(),
            store: self.inner.store.clone(),
            windows: crate::transport::Windows::QuinnDefault,
            buffers: None,
        };
        est.hello_frame(identity, hello)
    }

    fn record_close(&self, close: Close, by_peer: bool) {
        if let Ok(mut g) = self.inner.close.lock() {
            if g.is_none() {
                *g = Some((close, by_peer));
            }
        }
    }

    /// The error that explains why the session ended, given the connection's own error.
    pub(crate) fn lost(&self, e: &ConnectionError) -> NetError {
        if let Ok(g) = self.inner.close.lock() {
            if let Some((close, by_peer)) = g.as_ref() {
                let reason = if *by_peer {
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

/// Removes a ping's waiter when its future is dropped (answered, failed or cancelled).
struct PendingPing<'a> {
    inner: &'a SessionInner,
    nonce: u64,
}

impl Drop for PendingPing<'_> {
    fn drop(&mut self) {
        if let Ok(mut pings) = self.inner.pings.lock() {
            pings.remove(&self.nonce);
        }
    }
}

fn poisoned() -> NetError {
    NetError::Stream("internal lock poisoned".into())
}

/// Words for a QUIC connection error, as a `ConnectionLost` (or handshake) error.
pub(crate) fn describe_connection_error(e: &ConnectionError) -> NetError {
    let lost = |code: u64, reason: String, by_peer: bool| NetError::ConnectionLost {
        code,
        reason,
        by_peer,
    };
    match e {
        ConnectionError::ApplicationClosed(a) => lost(
            a.error_code.into_inner(),
            String::from_utf8_lossy(&a.reason).into_owned(),
            true,
        ),
        ConnectionError::LocallyClosed => lost(0, "closed locally".into(), false),
        ConnectionError::TimedOut => lost(0, "peer unreachable (idle timeout)".into(), false),
        ConnectionError::Reset => lost(0, "connection reset by peer".into(), true),
        ConnectionError::ConnectionClosed(c) => lost(
            u64::from(c.error_code),
            format!(
                "transport closed by peer: {}",
                String::from_utf8_lossy(&c.reason)
            ),
            true,
        ),
        ConnectionError::TransportError(t) => {
            lost(u64::from(t.code), format!("transport error: {t}"), false)
        }
        ConnectionError::VersionMismatch => lost(0, "no common QUIC version".into(), false),
        ConnectionError::CidsExhausted => lost(0, "connection ids exhausted".into(), false),
    }
}

/// Serves the control stream until it or the connection ends.
async fn serve_control(inner: Arc<SessionInner>, mut recv: quinn::RecvStream) {
    let session = Session { inner };
    loop {
        let frame = match read_frame(&mut recv).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(NetError::ConnectionLost { .. }) => return,
            Err(e) => {
                protocol_error(&session, &e.to_string());
                return;
            }
        };
        let outcome = match frame.known() {
            Some(FrameType::Ping) => match Ping::decode(&frame.payload) {
                Ok(ping) => session
                    .send_control(FrameType::Pong, &ping.encode())
                    .await
                    .map_err(|_| None),
                Err(e) => Err(Some(e.to_string())),
            },
            Some(FrameType::Pong) => Ping::decode(&frame.payload)
                .map(|pong| {
                    let waiter = session
                        .inner
                        .pings
                        .lock()
                        .ok()
                        .and_then(|mut p| p.remove(&pong.nonce));
                    if let Some(tx) = waiter {
                        let _ = tx.send(());
                    }
                })
                .map_err(|e| Some(e.to_string())),
            Some(FrameType::PeerInfo) => PeerInfo::decode(&frame.payload)
                .map(|info| {
                    if let Ok(mut g) = session.inner.observed_addr.lock() {
                        *g = Some(info.observed_addr);
                    }
                })
                .map_err(|e| Some(e.to_string())),
            Some(FrameType::Close) => match Close::decode(&frame.payload) {
                Ok(close) => {
                    session.record_close(close.clone(), true);
                    session
                        .inner
                        .conn
                        .close(VarInt::from_u32(close.code), close.reason.as_bytes());
                    return;
                }
                Err(e) => Err(Some(e.to_string())),
            },
            Some(FrameType::Hello) => Err(Some("unexpected second hello".into())),
            // Unknown types are skipped: their payload was read and is dropped.
            None => Ok(()),
        };
        match outcome {
            Ok(()) => {}
            Err(Some(why)) => {
                protocol_error(&session, &why);
                return;
            }
            Err(None) => return,
        }
    }
}

/// How long a peer may take to send the kind byte of a stream it opened.
const STREAM_KIND_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts every stream the peer opens, reads its kind byte, and routes it: application
/// streams to `accept_stream`, blob requests to the node's provider.
async fn dispatch_streams(session: Session) {
    loop {
        let (send, mut recv) = match session.inner.conn.accept_bi().await {
            Ok(pair) => pair,
            Err(_) => return,
        };
        let session = session.clone();
        tokio::spawn(async move {
            let mut kind = [0u8; 1];
            match tokio::time::timeout(STREAM_KIND_TIMEOUT, recv.read_exact(&mut kind)).await {
                Ok(Ok(())) => {}
                // The peer gave up, or never said what the stream is: drop it.
                _ => return,
            }
            match kind[0] {
                STREAM_KIND_APP => session.queue_stream(send, recv),
                STREAM_KIND_BLOBS => {
                    let store = session.inner.store.clone();
                    crate::blobs::serve(store, session, send, recv).await;
                }
                _ => {
                    let (mut send, mut recv) = (send, recv);
                    let _ = send.reset(VarInt::from_u32(codes::UNKNOWN_STREAM_KIND));
                    let _ = recv.stop(VarInt::from_u32(codes::UNKNOWN_STREAM_KIND));
                }
            }
        });
    }
}

/// Ends a session because the peer broke the protocol.
pub(crate) fn protocol_error(session: &Session, why: &str) {
    let reason = format!("protocol error: {why}");
    tracing::debug!(peer = %session.remote_peer_id().short(), %reason, "closing session");
    session.record_close(
        Close {
            code: codes::PROTOCOL_ERROR,
            reason: reason.clone(),
        },
        false,
    );
    session
        .inner
        .conn
        .close(VarInt::from_u32(codes::PROTOCOL_ERROR), reason.as_bytes());
}

/// Milliseconds since the Unix epoch, for HELLO timestamps.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
