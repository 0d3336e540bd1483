//! Dialing in 0-RTT: to a peer this node holds a resumption ticket for, `connect` returns the
//! session before the handshake completes; a task finishes it (checks who answered, then runs
//! the HELLO exchange) and fails the session, naming the peer, if it cannot.

use super::{close_code_for, Node};
use crate::error::{NetError, Result};
use crate::session::{Session, EARLY_ACCEPTED, EARLY_PENDING, EARLY_REJECTED};
use crate::tls;
use i6p_core::{Hello, PeerId};

impl Node {
    /// A session in 0-RTT: returned before the handshake completes, which a task finishes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn early_session(
        &self,
        conn: quinn::Connection,
        accepted: quinn::ZeroRttAccepted,
        peer: PeerId,
        key: i6p_core::PublicKey,
        (dial, probe): (u64, crate::probe::Probe),
        hello: Hello,
        deadline: tokio::time::Instant,
    ) -> Result<Session> {
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| crate::error::describe_connection_error(&e))?;
        let session = Session::new(self.established(conn.clone(), peer, key), false, Some(send));
        session.set_early(EARLY_PENDING);
        tokio::spawn(crate::session::dispatch_streams(session.clone()));
        let (node, early) = (self.clone(), session.clone());
        let (addr, timeout) = (conn.remote_address(), self.inner.config.handshake_timeout);
        tokio::spawn(async move {
            let finish = node.finish_early(&early, accepted, recv, peer, dial, &hello);
            let finish = crate::probe::unless_unreachable(probe, peer, addr, finish);
            let result = match tokio::time::timeout_at(deadline, finish).await {
                Ok(r) => r,
                Err(_) => Err(crate::probe::silent_error(peer, addr, timeout)),
            };
            match result {
                Ok(()) => node.inner.sessions.remember_key(peer, key),
                Err(e) => {
                    tracing::debug!(error = %e, "0-rtt session failed");
                    let code = close_code_for(&e);
                    early.fail(e, code);
                }
            }
        });
        Ok(session)
    }

    /// Completes a 0-RTT session: checks who answered, then runs the HELLO exchange (on a
    /// new control stream, with pending PINGs sent again, if the early data was refused).
    async fn finish_early(
        &self,
        session: &Session,
        accepted: quinn::ZeroRttAccepted,
        recv: quinn::RecvStream,
        peer: PeerId,
        dial: u64,
        hello: &Hello,
    ) -> Result<()> {
        let accepted = accepted.await;
        let full = self.inner.verifier.take_seen(dial);
        if let Some(actual) = full.filter(|a| *a != peer) {
            return Err(NetError::PeerIdMismatch {
                expected: peer,
                actual,
            });
        }
        if let Some(e) = session.inner_conn().close_reason() {
            return Err(crate::error::describe_connection_error(&e));
        }
        let (actual, _) = tls::peer_of_connection(session.inner_conn())?;
        if actual != peer {
            return Err(NetError::PeerIdMismatch {
                expected: peer,
                actual,
            });
        }
        session.mark_handshake_done(full.is_none());
        session.set_early(if accepted {
            EARLY_ACCEPTED
        } else {
            EARLY_REJECTED
        });
        let identity = &self.inner.identity;
        crate::session::dialer_exchange(session, recv, identity, hello, !accepted).await?;
        if !accepted {
            session.resend_pings().await?;
        }
        Ok(())
    }
}
