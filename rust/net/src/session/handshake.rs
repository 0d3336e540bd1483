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

    /// Records the peer's HELLO, sends PEER_INFO and serves the control stream from now on.
    async fn finish_exchange(&self, hello: Hello, recv: quinn::RecvStream) -> Result<()> {
        let _ = self.inner.remote_hello.set(hello);
        let observed = PeerInfo {
            observed_addr: crate::addr::canonical(self.inner.conn.remote_address()),
        };
        self.send_control(FrameType::PeerInfo, &observed.encode())
            .await?;
        self.inner.established.send_replace(true);
        tokio::spawn(super::control::serve_control(self.inner.clone(), recv));
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
