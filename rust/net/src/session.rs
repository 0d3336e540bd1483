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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch, Notify};

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
    max_queued_streams: usize,
    /// A raw session (conformance tests): no HELLO, no control task, bare QUIC streams.
    raw: bool,
    store: Arc<BlobStore>,
    /// Routes SHARD datagrams to FEC requests; started by the first one.
    datagrams: OnceLock<Arc<crate::fec_fetch::Router>>,
    /// The largest window (bytes) a FEC request served on this session reached: the next
    /// one starts there instead of from the beginning.
    pub(crate) fec_window: AtomicU64,
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
    pub(crate) store: Arc<BlobStore>,
    /// How the connection's flow-control windows are tuned.
    pub(crate) windows: crate::transport::Windows,
    /// The node's socket, whose buffers grow with the windows.
    pub(crate) buffers: Option<Arc<crate::socket::SocketBuffers>>,
    /// Application streams that may wait for `accept_stream` before new ones are refused.
    pub(crate) max_queued_streams: usize,
}

impl Established {
    /// The HELLO exchange of a dialer whose TLS handshake is complete: opens the control
    /// stream, then as [`dialer_exchange`]. The session is returned once it is established.
    pub(crate) async fn handshake_dialer(
        self,
        identity: &Identity,
        ours: &Hello,
        resumed: bool,
    ) -> Result<Session> {
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| describe_connection_error(&e))?;
        let session = Session::new(self, false, Some(send));
        session.mark_handshake_done(resumed);
        tokio::spawn(dispatch_streams(session.clone()));
        dialer_exchange(&session, recv, identity, ours, false).await?;
        Ok(session)
    }
}

/// Dialer: sends our HELLO on the control stream (after any PINGs already sent there), reads
/// the listener's (answering PONGs that come before it), and starts serving the stream.
///
/// `refused`: the peer refused our early data, so the control stream is replaced first.
pub(crate) async fn dialer_exchange(
    session: &Session,
    recv: quinn::RecvStream,
    identity: &Identity,
    ours: &Hello,
    refused: bool,
) -> Result<()> {
    let binding = session.binding()?;
    let our_payload = ours.sign(identity, Role::Dialer, &binding)?;
    let mut recv = if refused {
        session.reopen_control(recv, &our_payload).await?
    } else {
        session.send_control(FrameType::Hello, &our_payload).await?;
        recv
    };
    let theirs = loop {
        let frame = read_frame(&mut recv)
            .await?
            .ok_or_else(|| NetError::Protocol("control stream ended before hello".into()))?;
        match frame.known() {
            Some(FrameType::Hello) => break frame,
            // Answers to PINGs sent in 0-RTT come before the listener's HELLO.
            Some(FrameType::Pong) => session.pong(&frame.payload)?,
            _ => {
                return Err(NetError::Protocol(format!(
                    "expected hello, got frame type {:#04x}",
                    frame.kind
                )))
            }
        }
    };
    let hello = verify_hello(session, &theirs.payload, Role::Listener, &binding)?;
    session.finish_exchange(hello, recv).await
}

/// Listener: accepts the control stream, answers PINGs that come before the dialer's HELLO
/// (in 0-RTT on a resumed session), waits for the TLS handshake to complete, verifies the
/// HELLO and sends ours.
pub(crate) async fn listener_exchange(
    session: &Session,
    identity: &Identity,
    ours: &Hello,
) -> Result<()> {
    let conn = &session.inner.conn;
    let (send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| describe_connection_error(&e))?;
    *session.inner.control_send.lock().await = Some(send);
    tokio::spawn(dispatch_streams(session.clone()));
    let frame = loop {
        let frame = read_frame(&mut recv)
            .await?
            .ok_or_else(|| NetError::Protocol("control stream ended before hello".into()))?;
        match frame.known() {
            Some(FrameType::Hello) => break frame,
            // Only a resumed dialer can have sent a PING before its HELLO (in 0-RTT).
            Some(FrameType::Ping) if session.resumed() => {
                session.note_request();
                let ping =
                    Ping::decode(&frame.payload).map_err(|e| NetError::Protocol(e.to_string()))?;
                session
                    .send_control(FrameType::Pong, &ping.encode())
                    .await?;
            }
            _ => {
                return Err(NetError::Protocol(format!(
                    "expected hello, got frame type {:#04x}",
                    frame.kind
                )))
            }
        }
    };
    if !session.wait_handshake().await {
        return Err(session.lost_now());
    }
    let binding = session.binding()?;
    let hello = verify_hello(session, &frame.payload, Role::Dialer, &binding)?;
    let our_payload = ours.sign(identity, Role::Listener, &binding)?;
    session.send_control(FrameType::Hello, &our_payload).await?;
    session.finish_exchange(hello, recv).await
}

fn verify_hello(
    session: &Session,
    payload: &[u8],
    role: Role,
    binding: &[u8; EXPORTER_LEN],
) -> Result<Hello> {
    Hello::verify(payload, &session.inner.remote_key, role, binding).map_err(|e| match e {
        CoreError::UnsupportedVersion(_) => NetError::Core(e),
        other => NetError::Protocol(other.to_string()),
    })
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
        let est_store = est.store.clone();
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
                max_queued_streams: est.max_queued_streams,
                raw,
                store: est_store,
                datagrams: OnceLock::new(),
                fec_window: AtomicU64::new(0),
            }),
        };
        if !raw {
            // Datagrams are read (and dropped unless a FEC fetch wants them) from the start,
            // so a peer cannot pin the connection's datagram buffer on a node that runs none.
            session.datagram_router();
        }
        session
    }

    /// The FEC window to start a served request with, in bytes (0: none reached yet).
    pub(crate) fn fec_window(&self) -> &AtomicU64 {
        &self.inner.fec_window
    }

    /// The session's datagram router, started on first use.
    pub(crate) fn datagram_router(&self) -> Arc<crate::fec_fetch::Router> {
        self.inner
            .datagrams
            .get_or_init(|| crate::fec_fetch::Router::start(self.inner.conn.clone()))
            .clone()
    }

    /// The secret both ends export from this connection's TLS session for HELLO signatures.
    fn binding(&self) -> Result<[u8; EXPORTER_LEN]> {
        let mut out = [0u8; EXPORTER_LEN];
        self.inner
            .conn
            .export_keying_material(&mut out, EXPORTER_LABEL, b"")
            .map_err(|_| NetError::Tls("cannot export keying material".into()))?;
        Ok(out)
    }

    /// Records the peer's HELLO, sends PEER_INFO and serves the control stream from now on.
    async fn finish_exchange(&self, hello: Hello, recv: quinn::RecvStream) -> Result<()> {
        let _ = self.inner.remote_hello.set(hello);
        let observed = PeerInfo {
            observed_addr: crate::addr::canonical(self.inner.conn.remote_address()),
        };
        self.send_control(FrameType::PeerInfo, &observed.encode())
            .await?;
        self.inner.established.send_replace(true);
        tokio::spawn(serve_control(self.inner.clone(), recv));
        Ok(())
    }

    /// The TLS handshake is complete; `resumed` says whether it resumed an earlier session.
    pub(crate) fn mark_handshake_done(&self, resumed: bool) {
        self.inner.resumed.store(resumed, Ordering::Release);
        self.inner.handshake.send_replace(true);
    }

    /// Waits for the TLS handshake to complete; false if the connection ended first.
    pub(crate) async fn wait_handshake(&self) -> bool {
        let mut rx = self.inner.handshake.subscribe();
        tokio::select! {
            r = rx.wait_for(|done| *done) => r.is_ok(),
            _ = self.inner.conn.closed() => false,
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
            self.inner.store.note_early();
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

    /// Waits until the HELLO exchange is done, or fails with why the session ended first.
    pub async fn wait_established(&self) -> Result<()> {
        let mut rx = self.inner.established.subscribe();
        let e = tokio::select! {
            r = rx.wait_for(|done| *done) => return r.map(|_| ()).map_err(|_| self.lost_now()),
            e = self.inner.conn.closed() => e,
        };
        // A 0-RTT session's handshake fails in the task that finishes it, which then says
        // why (a wrong peer, say); give it a moment to do so.
        if self.early_data() != EARLY_NONE {
            let mut failed = self.inner.failed.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(1), failed.wait_for(|f| *f)).await;
        }
        Err(self.lost(&e))
    }

    /// Replaces the control stream refused with the early data by a new one whose first
    /// frame is `hello`, written before anything else can use the stream.
    ///
    /// The refused stream's handles must be gone first: the new stream gets the same id, and
    /// quinn 0.11 drops the wakers registered under that id when an old handle is dropped.
    async fn reopen_control(
        &self,
        refused: quinn::RecvStream,
        hello: &[u8],
    ) -> Result<quinn::RecvStream> {
        drop(refused);
        let mut control = self.inner.control_send.lock().await;
        drop(control.take());
        let (mut send, recv) = self.inner.conn.open_bi().await.map_err(|e| self.lost(&e))?;
        write_frame(&mut send, FrameType::Hello, hello).await?;
        *control = Some(send);
        Ok(recv)
    }

    /// PINGs waiting for a PONG, to send again on a new control stream.
    pub(crate) async fn resend_pings(&self) -> Result<()> {
        let nonces: Vec<u64> = self
            .inner
            .pings
            .lock()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default();
        for nonce in nonces {
            self.send_control(FrameType::Ping, &Ping { nonce }.encode())
                .await?;
        }
        Ok(())
    }

    /// Resolves the waiter of a PONG.
    fn pong(&self, payload: &[u8]) -> Result<()> {
        let pong = Ping::decode(payload).map_err(|e| NetError::Protocol(e.to_string()))?;
        let waiter = self
            .inner
            .pings
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&pong.nonce));
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
        Ok(())
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
        self.inner
            .conn
            .close(VarInt::from_u32(code), reason.as_bytes());
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
            // Early data the peer refused: the control stream is replaced once the handshake
            // is done; send again on the new one.
            Err(_) if self.early_data() != EARLY_NONE && !*self.inner.established.borrow() => {
                drop(guard);
                self.wait_established().await?;
                Box::pin(self.send_control(kind, payload)).await
            }
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

    /// A HELLO frame signed for this connection in this side's role (conformance tests drive
    /// raw sessions with it).
    pub fn hello_frame(&self, identity: &Identity, hello: &Hello) -> Result<Vec<u8>> {
        let payload = hello.sign(identity, self.inner.role, &self.binding()?)?;
        Ok(i6p_core::frame::encode(FrameType::Hello, &payload)?)
    }

    fn record_close(&self, close: Close, by_peer: bool) {
        if let Ok(mut g) = self.inner.close.lock() {
            if g.is_none() {
                *g = Some((close, by_peer));
            }
        }
    }

    /// Ends a session whose handshake or HELLO exchange failed after it was handed out (0-RTT);
    /// `e` is what its users get from then on.
    pub(crate) fn fail(&self, e: NetError, code: u32) {
        let reason = e.to_string();
        let _ = self.inner.failure.set(e);
        self.inner.failed.send_replace(true);
        self.inner
            .conn
            .close(VarInt::from_u32(code), reason.as_bytes());
    }

    /// The error that explains why the session ended, given the connection's own error.
    pub(crate) fn lost(&self, e: &ConnectionError) -> NetError {
        if let Some(failure) = self.inner.failure.get() {
            return failure.clone();
        }
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
            Some(FrameType::Ping) => {
                match Ping::decode(&frame.payload).inspect(|_| session.note_request()) {
                    Ok(ping) => session
                        .send_control(FrameType::Pong, &ping.encode())
                        .await
                        .map_err(|_| None),
                    Err(e) => Err(Some(e.to_string())),
                }
            }
            Some(FrameType::Pong) => session
                .pong(&frame.payload)
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
pub(crate) async fn dispatch_streams(session: Session) {
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
                // Application data may be a replay until the handshake completes, so it is
                // not delivered before the session is established.
                STREAM_KIND_APP => {
                    if session.wait_established().await.is_ok() {
                        session.queue_stream(send, recv);
                    }
                }
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
