//! The control stream of an established session: PING/PONG, PEER_INFO and CLOSE, and the
//! protocol-error close.
//!
//! Unknown frame types are skipped (their payload was read within the 1 MiB bound); a frame
//! that does not decode closes the session with [`codes::PROTOCOL_ERROR`].
//!
//! Who hears of the peer's PEER_INFO: the node's reflections (the `reach` module) register
//! an observer on each of its sessions, called with every address the peer says it observes
//! for us; the session knows nothing of what the observer does with it. The observer may be
//! registered after the PEER_INFO came: registering calls it with the address already
//! received. Both paths take the lock of that address, so the observer is never missed (it
//! may hear one address twice).

use super::{poisoned, Session, SessionInner, EARLY_NONE};
use crate::control::{read_frame, write_frame};
use crate::error::{NetError, Result};
use i6p_core::codes;
use i6p_core::{Close, FrameType, PeerInfo, Ping};
use quinn::VarInt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// At most this many PINGs may await their PONG at once on one session.
const MAX_PENDING_PINGS: usize = 1024;

impl Session {
    /// Resolves the waiter of a PONG.
    pub(super) fn pong(&self, payload: &[u8]) -> Result<()> {
        let pong = Ping::decode(payload).map_err(NetError::BadFrame)?;
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

    pub(super) async fn send_control(&self, kind: FrameType, payload: &[u8]) -> Result<()> {
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
        crate::closing::close(
            &self.inner.conn,
            VarInt::from_u32(code),
            close.reason.as_bytes(),
        );
    }

    pub(super) fn record_close(&self, close: Close, by_peer: bool) {
        if let Ok(mut g) = self.inner.close.lock() {
            if g.is_none() {
                *g = Some((close, by_peer));
            }
        }
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

/// Serves the control stream until it or the connection ends.
pub(super) async fn serve_control(inner: Arc<SessionInner>, mut recv: quinn::RecvStream) {
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
                    session.peer_info_observed(info.observed_addr);
                })
                .map_err(|e| Some(e.to_string())),
            Some(FrameType::Close) => match Close::decode(&frame.payload) {
                Ok(close) => {
                    session.record_close(close.clone(), true);
                    crate::closing::close(
                        &session.inner.conn,
                        VarInt::from_u32(close.code),
                        close.reason.as_bytes(),
                    );
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
    crate::closing::close(
        &session.inner.conn,
        VarInt::from_u32(codes::PROTOCOL_ERROR),
        reason.as_bytes(),
    );
}

/// Called with the session and the address its peer observes for us.
pub(crate) type PeerInfoObserver = Arc<dyn Fn(&Session, SocketAddr) + Send + Sync>;

#[derive(Default)]
struct Slot(OnceLock<PeerInfoObserver>);

impl Session {
    /// Calls `observer` with every PEER_INFO from now on, and with the one already received.
    /// A session has one observer; a second registration is ignored.
    pub(crate) fn observe_peer_info(&self, observer: PeerInfoObserver) {
        let slot = self.extension(|_| Arc::new(Slot::default()));
        if slot.0.set(observer.clone()).is_ok() {
            if let Some(addr) = self.observed_addr() {
                observer(self, addr);
            }
        }
    }

    /// The control task read a PEER_INFO (already recorded as `observed_addr`).
    pub(super) fn peer_info_observed(&self, addr: SocketAddr) {
        let slot = self.extension(|_| Arc::new(Slot::default()));
        if let Some(observer) = slot.0.get() {
            observer(self, addr);
        }
    }
}
