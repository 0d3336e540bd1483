//! One session per pair of peers: when two application sessions with the same peer compete,
//! both sides keep the same one without exchanging a message, and close the other with
//! [`codes::DUPLICATE`] once its streams have gone quiet.
//!
//! Two sessions compete when they are on different routes (a punched one beside a relayed
//! one, a direct one beside a punched one) or were dialed by different sides (simultaneous
//! dials). The higher route wins (direct > punched > relayed), then the connection dialed by
//! the peer with the smaller PeerId. Every input of that rule (route, who dialed, both
//! PeerIds) is the same on both sides, so both pick the same primary. Two sessions dialed by
//! the same side on the same route do not compete: the application asked for both (a second
//! `connect` to a peer returns a second session, as it always did).
//!
//! "Once its streams have gone quiet": quinn does not count open streams, so the loser is
//! closed when no STREAM frame went either way for [`QUIET`] (checked every [`CHECK`]), or
//! after [`MAX_GRACE`] whatever it carries. A stream held open but idle for longer than
//! `QUIET` is cut by the close: the application sees code DUPLICATE.

use crate::session::{Route, Session};
use i6p_core::{codes, PeerId};
use std::time::Duration;

/// No stream traffic for this long: the loser's streams have ended.
pub const QUIET: Duration = Duration::from_secs(1);
/// How often the loser's traffic is checked.
const CHECK: Duration = Duration::from_millis(100);
/// The longest a losing session stays open.
pub const MAX_GRACE: Duration = Duration::from_secs(600);

/// The session of `a` and `b` (both with the same peer, seen from node `me`) that gives way,
/// or None when they do not compete.
pub(super) fn loser(me: PeerId, a: &Session, b: &Session) -> Option<Session> {
    if a.route() != b.route() {
        return Some(if a.route() < b.route() { a } else { b }.clone());
    }
    if a.is_dialer() == b.is_dialer() {
        return None;
    }
    let peer = a.remote_peer_id();
    // The session this node dialed wins exactly when this node has the smaller PeerId.
    let mine_wins = me < peer;
    let (mine, theirs) = if a.is_dialer() { (a, b) } else { (b, a) };
    Some(if mine_wins { theirs } else { mine }.clone())
}

/// When `loser` is a relayed session replaced by a direct one (`a` or `b`, whichever is not
/// the loser), records the winner as its successor: its handles follow it (see
/// `session::successor`). True when the winner is `a`, the session being listed.
pub(super) fn hand_over(loser: &Session, a: &Session, b: &Session) -> bool {
    let winner = if loser.same(a) { b } else { a };
    let upgrade = loser.route() == Route::Relayed && winner.route().is_direct();
    upgrade && loser.set_successor(winner) && winner.same(a)
}

/// Closes `session` with DUPLICATE once its streams are quiet (see the module's doc).
pub(super) fn retire(session: Session) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let traffic = |s: &Session| {
            let stats = s.inner_conn().stats();
            stats.frame_tx.stream + stats.frame_rx.stream
        };
        let started = tokio::time::Instant::now();
        let (mut last, mut since) = (traffic(&session), started);
        while session.is_usable() && started.elapsed() < MAX_GRACE {
            tokio::time::sleep(CHECK).await;
            let now = traffic(&session);
            if now != last {
                (last, since) = (now, tokio::time::Instant::now());
            } else if since.elapsed() >= QUIET {
                break;
            }
        }
        if session.is_usable() {
            tracing::debug!(?session, "closing a duplicate session");
            session
                .close(codes::DUPLICATE, "another session of this pair is primary")
                .await;
        }
    });
}
