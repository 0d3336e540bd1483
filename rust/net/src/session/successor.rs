//! A relayed session's successor: when a direct path to the same peer forms (a relayed
//! session keeps trying, see `node::upgrade`), the new session is recorded here and every
//! handle of the relayed one follows it ([`Session::current`]): transfers take their next
//! request there, the application's streams open there, and the relayed session closes once
//! its streams are quiet (`node::primary`). Requests in flight finish where they started, so
//! nothing verified is fetched twice.
//!
//! The successor is held by the session it replaces: while the application holds the old
//! handle, it holds the new session too (an application hold, so dropping the old handle
//! closes both, as it would have closed the one).

use super::{AppHandle, Session};
use std::sync::{Arc, OnceLock};

/// Successors followed at most in one [`Session::current`]: an upgrade replaces a relayed
/// session by a direct one, which has none, so a longer chain is a bug, not a path.
const MAX_CHAIN: usize = 4;

#[derive(Default)]
struct Successor(OnceLock<(Session, Option<AppHandle>)>);

impl Session {
    fn successor_slot(&self) -> Arc<Successor> {
        self.extension(|_| Arc::new(Successor::default()))
    }

    /// The session that replaced this one, if any.
    pub fn successor(&self) -> Option<Session> {
        self.successor_slot().0.get().map(|(s, _)| s.clone())
    }

    /// Records `next` as this session's successor (once: a later call is ignored). When the
    /// application holds this session, it holds `next` through it.
    pub(crate) fn set_successor(&self, next: &Session) -> bool {
        let hold = self.app_held().then(|| next.app_handle());
        let set = self.successor_slot().0.set((next.clone(), hold)).is_ok();
        if set {
            tracing::info!(peer = %self.remote_peer_id().short(), from = self.route().as_str(),
                to = next.route().as_str(), "session moved to a better path");
        }
        set
    }

    /// This session, or the live session that replaced it: what a new request should use.
    pub fn current(&self) -> Session {
        let mut at = self.clone();
        for _ in 0..MAX_CHAIN {
            match at.successor() {
                Some(next) if next.is_usable() || !at.is_usable() => at = next,
                _ => break,
            }
        }
        at
    }
}
