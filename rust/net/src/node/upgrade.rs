//! A relayed session keeps trying for a direct path: the dialer of the relayed session asks
//! its relay, acting as coordinator (it has a session with both peers by construction), to
//! introduce the two again, and runs the same procedure as `connect_to` (connection reversal,
//! then coordinated simultaneous opens). Middleboxes change (a firewall opens, a NAT's
//! mapping becomes predictable, a peer moves to a better network), so a path that failed at
//! connect may form later.
//!
//! When one forms, the new session is listed like any other and wins the one-session-per-pair
//! rule (`primary`: direct and punched beat relayed) on both sides; the relayed session
//! records it as its successor, so its handles and the transfers running on it move there
//! (`session::successor`).
//!
//! Attempts are spaced out: [`FIRST_TRY`] after the relayed session forms, then the wait
//! doubles up to [`MAX_WAIT`]. Only the dialer tries, so the two sides never race two
//! introductions; the loop ends with the relayed session, its relay session or the node.

use super::Node;
use crate::error::{NetError, Result};
use crate::session::{Route, Session, SessionInner};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The first attempt, this long after the relayed session formed.
pub const FIRST_TRY: Duration = Duration::from_secs(2);
/// The longest wait between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The session with the relay a relayed session was dialed through (kept in its extension
/// slots, weakly: the circuit holds the relay session, not the other way round).
struct DialedThrough(Weak<SessionInner>);

impl Node {
    /// Records that this node dialed `relayed` through `relay`, and starts trying to upgrade
    /// it to a direct path unless the node was bound without it.
    pub(super) fn keep_upgrading(&self, relayed: &Session, relay: &Session) {
        relayed.extension(|_| Arc::new(DialedThrough(relay.downgrade())));
        if !self.inner.config.upgrade {
            return;
        }
        let node = Arc::downgrade(&self.inner);
        let relayed = relayed.downgrade();
        tokio::spawn(async move {
            let mut wait = FIRST_TRY;
            loop {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
                let Some(node) = node.upgrade().map(|inner| Node { inner }) else {
                    return;
                };
                let Some(session) = Session::upgrade(&relayed) else {
                    return;
                };
                let peer = session.remote_peer_id();
                match node.upgrade_session(&session).await {
                    Ok(_) => return,
                    Err(
                        e @ (NetError::Unreachable(_) | NetError::Busy(_) | NetError::Handshake(_)),
                    ) => {
                        tracing::debug!(peer = %peer.short(), error = %e, next = ?wait,
                            "relayed session: no direct path yet");
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.short(), error = %e, "no more upgrades");
                        return;
                    }
                }
            }
        });
    }

    /// Tries once to move `relayed` to a direct path (see the module's doc). Returns the
    /// session it reaches now: itself when it is not relayed (or no longer usable), its
    /// successor when the attempt succeeded. Fails with [`NetError::Unreachable`] when no
    /// direct path formed this time, and with [`NetError::Config`] on a relayed session this
    /// node did not dial (only the dialer knows the relay to ask).
    pub async fn upgrade_session(&self, relayed: &Session) -> Result<Session> {
        self.ensure_open()?;
        let current = relayed.current();
        if current.route() != Route::Relayed || !current.is_usable() {
            return Ok(current);
        }
        let through = current.extension(|_| Arc::new(DialedThrough(Weak::new())));
        let Some(relay) = Session::upgrade(&through.0).filter(Session::is_usable) else {
            return Err(NetError::Config(
                "only the side that dialed a relayed session, while its session with the \
                 relay is open, can upgrade it"
                    .into(),
            ));
        };
        let peer = current.remote_peer_id();
        // Listed when it formed, the new session became the relayed one's successor.
        let direct = self.connect_coordinated(peer, &relay, false).await?;
        Ok(if current.successor().is_some() {
            current.current()
        } else {
            direct
        })
    }
}
