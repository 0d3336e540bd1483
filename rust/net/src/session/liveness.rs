//! Liveness: noticing within a few seconds that a peer died without a word.
//!
//! QUIC's idle timeout is negotiated at the handshake (30 s by default), so a killed peer is
//! noticed that late. A session may instead be given a liveness period: once it is
//! established, a watcher checks a few times per period whether anything arrived from the
//! peer (any datagram of the connection counts: data, acknowledgements, PONGs); after a
//! quarter of the period of silence it sends a PING on the control stream, which a live peer
//! answers within a round trip. A peer silent for the whole period is taken for dead: the
//! session is closed locally with [`codes::TIMED_OUT`], and pending and later calls fail with
//! that code.
//!
//! The watcher holds the session weakly, so it never keeps a session alive, and ends with
//! the connection. Pings with a deadline of their own are [`Session::ping_within`].

use super::{Session, SessionInner};
use crate::error::{NetError, Result};
use i6p_core::codes;
use i6p_core::{Close, FrameType, Ping};
use quinn::VarInt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The shortest liveness period accepted: below it, scheduling delays on a loaded machine
/// would look like a dead peer.
pub const MIN_LIVENESS: Duration = Duration::from_millis(100);

/// How often the watcher looks, at most: a quarter of the period, within these bounds.
const MIN_STEP: Duration = Duration::from_millis(25);
const MAX_STEP: Duration = Duration::from_secs(1);

/// A session's liveness period (none: off), in the session's extension slot.
struct Liveness(watch::Sender<Option<Duration>>);

impl Session {
    /// Sends a PING and returns the time to its PONG; with a `timeout`, fails with
    /// [`NetError::Timeout`] when no PONG came in that time (the session goes on). Without
    /// one it waits as long as the session lives.
    pub async fn ping_within(&self, timeout: Option<Duration>) -> Result<Duration> {
        let Some(timeout) = timeout else {
            return self.ping().await;
        };
        match tokio::time::timeout(timeout, self.ping()).await {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout(format!(
                "no answer to a ping from peer {} within {:.3} s",
                self.remote_peer_id().short(),
                timeout.as_secs_f64()
            ))),
        }
    }

    /// Ends the session when the peer stays silent for `period` (see the module's doc);
    /// `None` turns the check off. May be called at any time, inside tokio; a new period
    /// applies at once.
    pub fn set_liveness(&self, period: Option<Duration>) -> Result<()> {
        if period.is_some_and(|p| p < MIN_LIVENESS) {
            return Err(NetError::Config(format!(
                "liveness must be at least {} s",
                MIN_LIVENESS.as_secs_f64()
            )));
        }
        let slot = self.liveness_slot();
        slot.0.send_replace(period);
        // One watcher per session, started when first needed (it ends with the connection).
        if period.is_some() && slot.0.receiver_count() == 0 {
            tokio::spawn(watch_liveness(self.clone(), slot.0.subscribe()));
        }
        Ok(())
    }

    /// The session's liveness period, if one is set.
    pub fn liveness(&self) -> Option<Duration> {
        let period = *self.liveness_slot().0.borrow();
        period
    }

    fn liveness_slot(&self) -> Arc<Liveness> {
        self.extension(|_| Arc::new(Liveness(watch::channel(None).0)))
    }

    /// Closes the session because the peer was silent for `period`.
    fn time_out(&self, period: Duration) {
        let reason = format!(
            "timed out: no answer from the peer for {:.1} s",
            period.as_secs_f64()
        );
        tracing::debug!(peer = %self.remote_peer_id().short(), %reason, "closing session");
        self.record_close(
            Close {
                code: codes::TIMED_OUT,
                reason: reason.clone(),
            },
            false,
        );
        crate::closing::close(
            &self.inner.conn,
            VarInt::from_u32(codes::TIMED_OUT),
            reason.as_bytes(),
        );
    }
}

/// Watches one session (see the module's doc): waits for it to be established, then checks
/// every step of the current period.
async fn watch_liveness(session: Session, mut period: watch::Receiver<Option<Duration>>) {
    // The handshake has its own deadline; liveness starts with the established session.
    if session.wait_established().await.is_err() {
        return;
    }
    let weak = Arc::downgrade(&session.inner);
    // The silence is counted from now: when the peer was last heard of is not known.
    let mut heard = (session.inner.conn.stats().udp_rx.datagrams, Instant::now());
    drop(session);
    loop {
        let Some(current) = *period.borrow_and_update() else {
            if period.changed().await.is_err() {
                return;
            }
            heard.1 = Instant::now();
            continue;
        };
        let step = (current / 4).clamp(MIN_STEP, MAX_STEP);
        tokio::select! {
            changed = period.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            () = tokio::time::sleep(step) => {}
        }
        if !check(&weak, current, step, &mut heard).await {
            return;
        }
    }
}

/// One look at the session: false once it ended (or was ended for silence).
async fn check(
    weak: &Weak<SessionInner>,
    period: Duration,
    step: Duration,
    heard: &mut (u64, Instant),
) -> bool {
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    let session = Session { inner };
    if session.inner.conn.close_reason().is_some() {
        return false;
    }
    let received = session.inner.conn.stats().udp_rx.datagrams;
    let now = Instant::now();
    if received != heard.0 {
        *heard = (received, now);
    }
    let silent = now.saturating_duration_since(heard.1);
    if silent >= period {
        session.time_out(period);
        return false;
    }
    if silent >= step {
        // Anything the peer sends back (the PONG, or just QUIC's acknowledgement) counts.
        let nonce = session.inner.next_nonce.fetch_add(1, Ordering::Relaxed);
        let ping = Ping { nonce }.encode();
        let _ = tokio::time::timeout(step, session.send_control(FrameType::Ping, &ping)).await;
    }
    true
}
