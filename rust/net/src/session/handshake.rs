//! The handshake of a session: the HELLO exchange on the control stream, signed over a
//! secret exported from this connection's TLS session, and the 0-RTT corner cases (PINGs
//! that come before the HELLO, a control stream replaced after refused early data).
//!
//! Invariant: nothing from the peer is trusted as its HELLO until the TLS handshake is
//! complete and the signature verifies against the key TLS authenticated.

use super::{dispatch_streams, Established, Session, EARLY_NONE};
use crate::control::{read_frame, write_frame};
use crate::error::{describe_connection_error, NetError, Result};
use i6p_core::{CoreError, FrameType, Hello, Identity, PeerInfo, Ping, Role};
use i6p_core::{EXPORTER_LABEL, EXPORTER_LEN};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

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

/// Dialer: sends our HELLO on the control stream (after any PINGs already sent there), then
/// takes the listener's from whichever comes first: its HELLO stream (sent at 0.5-RTT) or the
/// control stream (answering PONGs that come before it there).
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
    let recv = if refused {
        session.reopen_control(recv, &our_payload).await?
    } else {
        session.send_control(FrameType::Hello, &our_payload).await?;
        recv
    };
    // The control stream is read by a future that is never dropped half-way through a frame:
    // when the HELLO stream wins, it goes on in the task that serves the control stream.
    let mut control = Box::pin(control_hello(session.clone(), recv));
    let mut early = Box::pin(early_hello(session.inner.conn.clone()));
    let (theirs, pending) = tokio::select! {
        r = &mut control => {
            let (recv, frame) = r?;
            (frame, Err(recv))
        }
        r = &mut early => match r {
            Ok(payload) => (payload, Ok(control)),
            Err(e @ (NetError::Protocol(_) | NetError::BadFrame(_))) => return Err(e),
            // The connection ended: the control stream says why, as it always did.
            Err(_) => {
                let (recv, frame) = control.await?;
                (frame, Err(recv))
            }
        },
    };
    let hello = verify_hello(session, &theirs, Role::Listener, &binding)?;
    session.finish_exchange(hello).await?;
    let inner = session.inner.clone();
    match pending {
        Err(recv) => {
            drop(tokio::spawn(super::control::serve_control(inner, recv)));
            // The HELLO stream may still come (it lost the race): it must be the same bytes.
            tokio::spawn(check_late_hello(session.clone(), early, theirs));
        }
        Ok(control) => {
            drop(tokio::spawn(serve_after_hello(control, theirs, inner)));
            tokio::spawn(refuse_uni_streams(session.clone()));
        }
    }
    Ok(())
}

/// A dialer that took the listener's HELLO from the control stream: the HELLO stream, if it
/// comes, must carry the same bytes; then no other unidirectional stream is taken.
async fn check_late_hello(
    session: Session,
    early: std::pin::Pin<Box<impl std::future::Future<Output = Result<Vec<u8>>>>>,
    first: Vec<u8>,
) {
    match early.await {
        Ok(again) if again != first => {
            return super::control::protocol_error(&session, "a second, different hello")
        }
        Err(NetError::ConnectionLost { .. }) => return,
        _ => {}
    }
    refuse_uni_streams(session).await;
}

/// Reads the control stream up to the listener's HELLO, answering PONGs that come before it.
async fn control_hello(
    session: Session,
    mut recv: quinn::RecvStream,
) -> Result<(quinn::RecvStream, Vec<u8>)> {
    loop {
        let frame = read_frame(&mut recv)
            .await?
            .ok_or_else(|| NetError::Protocol("control stream ended before hello".into()))?;
        match frame.known() {
            Some(FrameType::Hello) => return Ok((recv, frame.payload)),
            // Answers to PINGs sent in 0-RTT come before the listener's HELLO.
            Some(FrameType::Pong) => session.pong(&frame.payload)?,
            _ => {
                return Err(NetError::Protocol(format!(
                    "expected hello, got frame type {:#04x}",
                    frame.kind
                )))
            }
        }
    }
}

/// The listener's HELLO from its HELLO stream: its first unidirectional stream, one frame.
async fn early_hello(conn: quinn::Connection) -> Result<Vec<u8>> {
    let mut recv = conn
        .accept_uni()
        .await
        .map_err(|e| describe_connection_error(&e))?;
    let frame = read_frame(&mut recv)
        .await?
        .ok_or_else(|| NetError::Protocol("hello stream ended before hello".into()))?;
    match frame.known() {
        Some(FrameType::Hello) => Ok(frame.payload),
        _ => Err(NetError::Protocol(format!(
            "expected hello on the hello stream, got frame type {:#04x}",
            frame.kind
        ))),
    }
}

/// Serves the control stream of a dialer that took the listener's HELLO from its HELLO
/// stream: the copy on the control stream must be the same bytes.
async fn serve_after_hello(
    control: std::pin::Pin<
        Box<impl std::future::Future<Output = Result<(quinn::RecvStream, Vec<u8>)>>>,
    >,
    first: Vec<u8>,
    inner: std::sync::Arc<super::SessionInner>,
) {
    let session = Session { inner };
    match control.await {
        Ok((recv, again)) if again == first => {
            super::control::serve_control(session.inner, recv).await
        }
        Ok(_) => super::control::protocol_error(&session, "a second, different hello"),
        Err(NetError::ConnectionLost { .. }) => {}
        Err(e) => super::control::protocol_error(&session, &e.to_string()),
    }
}

/// Stops every unidirectional stream the peer opens (beyond the listener's HELLO stream, no
/// I6P protocol uses them), so none holds data nobody reads.
async fn refuse_uni_streams(session: Session) {
    while let Ok(mut recv) = session.inner.conn.accept_uni().await {
        let _ = recv.stop(quinn::VarInt::from_u32(
            i6p_core::codes::UNKNOWN_STREAM_KIND,
        ));
    }
}

/// The listener's HELLO, signed over the binding derived at 0.5-RTT (see `exporter`).
pub(crate) struct EarlyHello {
    binding: [u8; EXPORTER_LEN],
    payload: Vec<u8>,
}

/// Listener: signs its HELLO as soon as the TLS exporter is known (its first flight, before
/// the client is authenticated) and sends it on its HELLO stream; `None` when the binding is
/// not known yet (the HELLO then goes on the control stream only).
///
/// The HELLO says nothing a listener would not tell any client that completes a handshake,
/// and nothing the dialer sent is used for it.
pub(crate) fn send_early_hello(
    conn: &quinn::Connection,
    exporter: &crate::exporter::EarlyExporter,
    identity: &Identity,
    ours: &Hello,
) -> Option<EarlyHello> {
    let binding = exporter.binding()?;
    let payload = ours.sign(identity, Role::Listener, &binding).ok()?;
    let (conn, frame) = (conn.clone(), payload.clone());
    tokio::spawn(async move {
        // A dialer that allows no unidirectional stream (before this protocol change) gives
        // no credit: the task then ends with the connection.
        if let Ok(mut send) = conn.open_uni().await {
            if write_frame(&mut send, FrameType::Hello, &frame)
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
        }
    });
    Some(EarlyHello { binding, payload })
}

/// Listener: accepts the control stream, answers PINGs that come before the dialer's HELLO
/// (in 0-RTT on a resumed session), waits for the TLS handshake to complete, verifies the
/// HELLO and sends ours on the control stream too (the same bytes as on the HELLO stream).
pub(crate) async fn listener_exchange(
    session: &Session,
    identity: &Identity,
    ours: &Hello,
    early: Option<EarlyHello>,
) -> Result<()> {
    let conn = &session.inner.conn;
    tokio::spawn(refuse_uni_streams(session.clone()));
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
                let ping = Ping::decode(&frame.payload).map_err(NetError::BadFrame)?;
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
    let our_payload = match early {
        Some(early) if early.binding == binding => early.payload,
        // Our derivation and rustls's disagree: the dialer rejects that HELLO anyway.
        Some(_) => {
            return Err(NetError::Tls(
                "the early exporter differs from rustls's".into(),
            ))
        }
        None => ours.sign(identity, Role::Listener, &binding)?,
    };
    session.send_control(FrameType::Hello, &our_payload).await?;
    session.finish_exchange(hello).await?;
    tokio::spawn(super::control::serve_control(session.inner.clone(), recv));
    Ok(())
}

fn verify_hello(
    session: &Session,
    payload: &[u8],
    role: Role,
    binding: &[u8; EXPORTER_LEN],
) -> Result<Hello> {
    Hello::verify(payload, &session.inner.remote_key, role, binding).map_err(|e| match e {
        CoreError::UnsupportedVersion(_) => NetError::Core(e),
        other => NetError::BadFrame(other),
    })
}

impl Session {
    /// The secret both ends export from this connection's TLS session for HELLO signatures.
    pub(super) fn binding(&self) -> Result<[u8; EXPORTER_LEN]> {
        let mut out = [0u8; EXPORTER_LEN];
        self.inner
            .conn
            .export_keying_material(&mut out, EXPORTER_LABEL, b"")
            .map_err(|_| NetError::Tls("cannot export keying material".into()))?;
        Ok(out)
    }

    /// Tells the node's address book where the verified peer is: the address its packets come
    /// from (unless through a relay) and the listen addresses its HELLO lists (its loopback
    /// ones only when it is on this host, and no unscoped link-local one).
    fn learn_addrs(&self, hello: &Hello) {
        let Some(book) = &self.inner.book else {
            return;
        };
        let remote = self.inner.conn.remote_address();
        let relayed = self.route() == super::Route::Relayed;
        let here = !relayed && remote.ip().to_canonical().is_loopback();
        let mut addrs = Vec::with_capacity(hello.listen_addrs.len() + 1);
        if !relayed {
            addrs.push(remote);
        }
        addrs.extend(hello.listen_addrs.iter().filter(|a| {
            let ip = a.ip().to_canonical();
            let unscoped = matches!(a, SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() && v6.scope_id() == 0);
            (here || !ip.is_loopback()) && !unscoped
        }));
        book.add(self.inner.remote_peer_id, &addrs);
    }

    /// Records the peer's HELLO, sends PEER_INFO and marks the session established (the
    /// caller then serves the control stream).
    async fn finish_exchange(&self, hello: Hello) -> Result<()> {
        self.learn_addrs(&hello);
        let _ = self.inner.remote_hello.set(hello);
        let observed = PeerInfo {
            observed_addr: crate::addr::canonical(self.inner.conn.remote_address()),
        };
        self.send_control(FrameType::PeerInfo, &observed.encode())
            .await?;
        self.inner.established.send_replace(true);
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
}
