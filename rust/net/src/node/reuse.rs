//! The node's live sessions per peer, so that transfers ride on one connection per peer.
//!
//! A transfer (fetch, read_range, FEC, a reconnect) takes a [`TransferLease`] on a session to
//! its provider: an application session to that peer (from `connect` or `accept`) if one is
//! live, else the session an earlier transfer dialed, else the result of one dial that every
//! transfer asking meanwhile shares. A session dialed for transfers says so in its HELLO (the
//! provider serves it but never hands it to `accept`), and is closed once it has carried no
//! transfer for the node's `transfer_idle`, or when the node closes.
//!
//! Invariants: application sessions are held weakly (the application owns them: being listed
//! here must not keep one open); a session that is closing or closed is never handed out; an
//! entry lives only while it holds something live or a dial is running (the map is pruned as
//! it grows, so peers that came and went cost nothing).

use super::Node;
use crate::error::{NetError, Result};
use crate::session::{Session, SessionInner, TransferHold};
use i6p_core::PeerId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// How long a session dialed for transfers stays open without carrying one, by default: long
/// enough for a script's next fetch to find it, short against the 30 s idle timeout.
pub const TRANSFER_IDLE: Duration = Duration::from_secs(5);

/// The result of a dial that transfers share: `None` while it runs.
type Dialing = watch::Receiver<Option<Result<Session>>>;

/// Live sessions, per peer (see the module's doc).
pub(crate) struct LiveSessions {
    peers: Mutex<HashMap<PeerId, Peer>>,
    idle: Duration,
    /// The map's size after the last prune; it is pruned again at twice that.
    pruned_at: Mutex<usize>,
    /// Set when the node closes: a dial that ends later files nothing.
    closed: AtomicBool,
    /// This node's identity, which the one-session-per-pair rule compares (`primary`).
    me: PeerId,
}

#[derive(Default)]
struct Peer {
    /// Application sessions (either role), weakly.
    app: Vec<Weak<SessionInner>>,
    /// The session this node dialed for transfers.
    owned: Option<Owned>,
    /// A dial for transfers in flight.
    dialing: Option<Dialing>,
}

struct Owned {
    session: Session,
    /// Transfers using it now.
    leases: usize,
    /// Bumped when the last lease goes; an idle timer only closes the session it started for.
    generation: u64,
}

impl Peer {
    fn live_app(&mut self) -> Option<Session> {
        self.app.retain(|w| w.strong_count() > 0);
        self.app
            .iter()
            .filter_map(Session::upgrade)
            .find(Session::is_usable)
    }

    fn is_empty(&self) -> bool {
        self.owned.is_none() && self.dialing.is_none() && self.app.is_empty()
    }
}

/// A session a transfer uses; for a session dialed for transfers, dropping it starts the idle
/// timer once no other transfer holds one.
pub struct TransferLease {
    session: Session,
    owner: Option<(Arc<LiveSessions>, PeerId)>,
    /// On an application session: keeps the application's drop from closing it mid-transfer.
    _hold: Option<TransferHold>,
}

impl std::ops::Deref for TransferLease {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Drop for TransferLease {
    fn drop(&mut self) {
        if let Some((sessions, peer)) = self.owner.take() {
            sessions.release(peer, &self.session);
        }
    }
}

impl LiveSessions {
    pub(crate) fn new(idle: Duration, me: PeerId) -> Arc<Self> {
        Arc::new(Self {
            peers: Mutex::new(HashMap::new()),
            idle,
            pruned_at: Mutex::new(0),
            closed: AtomicBool::new(false),
            me,
        })
    }

    /// Lists an application session (dialed by `connect` or accepted). True when it
    /// replaces a relayed session the node has with the peer (it became that session's
    /// successor: the application reaches it through the relayed session's handles).
    pub(crate) fn add_app(&self, session: &Session) -> bool {
        let Ok(mut peers) = self.peers.lock() else {
            return false;
        };
        let peer = peers.entry(session.remote_peer_id()).or_default();
        peer.app.retain(|w| w.strong_count() > 0);
        if peer.app.iter().any(|w| w.ptr_eq(&session.downgrade())) {
            return false;
        }
        // One session per pair: the ones that give way close once quiet (`primary`).
        let mut continues = false;
        for other in peer.app.iter().filter_map(Session::upgrade) {
            if other.is_usable() {
                if let Some(loser) = super::primary::loser(self.me, session, &other) {
                    continues |= super::primary::hand_over(&loser, session, &other);
                    super::primary::retire(loser);
                }
            }
        }
        peer.app.push(session.downgrade());
        let mut pruned_at = self.pruned_at.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() > (*pruned_at * 2).max(64) {
            peers.retain(|_, p| {
                p.app
                    .retain(|w| Session::upgrade(w).is_some_and(|s| s.is_usable()));
                !p.is_empty()
            });
            *pruned_at = peers.len();
        }
        continues
    }

    /// A usable session with `peer` that is not itself relayed (a relay carries circuits
    /// over it).
    pub(crate) fn direct_session(&self, peer: &PeerId) -> Option<Session> {
        let mut peers = self.peers.lock().ok()?;
        let entry = peers.get_mut(peer)?;
        entry.app.retain(|w| w.strong_count() > 0);
        let direct = |s: &Session| s.is_usable() && s.route() != crate::session::Route::Relayed;
        let owned = entry.owned.as_ref().map(|o| o.session.clone());
        entry
            .app
            .iter()
            .filter_map(Session::upgrade)
            .chain(owned)
            .find(direct)
    }

    /// A usable session with `peer`, an application's or one dialed for transfers (a
    /// coordinator introduces only peers it has one with).
    pub(crate) fn any_session(&self, peer: &PeerId) -> Option<Session> {
        let mut peers = self.peers.lock().ok()?;
        let p = peers.get_mut(peer)?;
        p.live_app().or_else(|| {
            p.owned
                .as_ref()
                .map(|o| o.session.clone())
                .filter(Session::is_usable)
        })
    }

    /// Closes every session dialed for transfers and forgets them all (the node is closing).
    pub(crate) fn clear(&self) -> Vec<Session> {
        self.closed.store(true, Ordering::Release);
        let Ok(mut peers) = self.peers.lock() else {
            return Vec::new();
        };
        peers
            .drain()
            .filter_map(|(_, p)| p.owned.map(|o| o.session))
            .collect()
    }

    /// Sessions dialed for transfers that are open now.
    pub(crate) fn transfer_sessions(&self) -> usize {
        self.peers
            .lock()
            .map(|p| {
                p.values()
                    .filter(|p| p.owned.as_ref().is_some_and(|o| o.session.is_usable()))
                    .count()
            })
            .unwrap_or(0)
    }

    /// A lease on a live session to `peer`, or what to wait for: a dial in flight (started by
    /// this call when none is).
    fn lease_or_dial(
        self: &Arc<Self>,
        node: &Node,
        peer: PeerId,
        addrs: &[SocketAddr],
    ) -> Result<std::result::Result<TransferLease, Dialing>> {
        let mut peers = self.peers.lock().map_err(|_| poisoned())?;
        let entry = peers.entry(peer).or_default();
        if let Some(session) = entry.live_app() {
            let hold = Some(session.transfer_hold());
            return Ok(Ok(TransferLease {
                session,
                owner: None,
                _hold: hold,
            }));
        }
        if let Some(owned) = entry.owned.as_mut() {
            if owned.session.is_usable() {
                owned.leases += 1;
                return Ok(Ok(TransferLease {
                    session: owned.session.clone(),
                    owner: Some((self.clone(), peer)),
                    _hold: None,
                }));
            }
            entry.owned = None;
        }
        if let Some(dialing) = &entry.dialing {
            return Ok(Err(dialing.clone()));
        }
        let (tx, rx) = watch::channel(None);
        entry.dialing = Some(rx.clone());
        // The dial runs on its own: a transfer that gives up waiting does not cancel it for
        // the others (and a session nobody takes is closed when idle).
        let (sessions, node, addrs) = (self.clone(), node.clone(), addrs.to_vec());
        tokio::spawn(async move {
            let result = node.dial_for_transfers(peer, &addrs).await;
            if let Ok(session) = &result {
                sessions.adopt(peer, session.clone());
            } else if let Ok(mut peers) = sessions.peers.lock() {
                if let Some(p) = peers.get_mut(&peer) {
                    p.dialing = None;
                    if p.is_empty() {
                        peers.remove(&peer);
                    }
                }
            }
            tx.send_replace(Some(result));
        });
        Ok(Err(rx))
    }

    /// Files a session just dialed for transfers, idle until a transfer takes it.
    fn adopt(self: &Arc<Self>, peer: PeerId, session: Session) {
        let generation = {
            let Ok(mut peers) = self.peers.lock() else {
                return;
            };
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let entry = peers.entry(peer).or_default();
            entry.dialing = None;
            let generation = entry.owned.as_ref().map_or(0, |o| o.generation + 1);
            entry.owned = Some(Owned {
                session,
                leases: 0,
                generation,
            });
            generation
        };
        self.close_when_idle(peer, generation);
    }

    fn release(self: &Arc<Self>, peer: PeerId, session: &Session) {
        let generation = {
            let Ok(mut peers) = self.peers.lock() else {
                return;
            };
            let Some(owned) = peers
                .get_mut(&peer)
                .and_then(|p| p.owned.as_mut())
                .filter(|o| o.session.same(session))
            else {
                return;
            };
            owned.leases = owned.leases.saturating_sub(1);
            if owned.leases > 0 {
                return;
            }
            owned.generation += 1;
            owned.generation
        };
        self.close_when_idle(peer, generation);
    }

    /// After the idle grace, closes the peer's transfer session if no transfer took it since.
    fn close_when_idle(self: &Arc<Self>, peer: PeerId, generation: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sessions = Arc::downgrade(self);
        let idle = self.idle;
        runtime.spawn(async move {
            tokio::time::sleep(idle).await;
            let Some(sessions) = sessions.upgrade() else {
                return;
            };
            let idle = {
                let Ok(mut peers) = sessions.peers.lock() else {
                    return;
                };
                let Some(p) = peers.get_mut(&peer) else {
                    return;
                };
                let idle = p
                    .owned
                    .take_if(|o| o.leases == 0 && o.generation == generation);
                if p.is_empty() {
                    peers.remove(&peer);
                }
                idle
            };
            if let Some(owned) = idle {
                tracing::debug!(peer = %peer.short(), "closing an idle transfer session");
                owned.session.close(0, "idle").await;
            }
        });
    }
}

impl Node {
    /// Lists an application session the node dialed, for transfers to reuse.
    pub(crate) fn note_app_session(&self, session: &Session) {
        let _ = self.inner.live.add_app(session);
    }

    /// Sessions this node dialed for transfers that are open now.
    pub fn transfer_sessions(&self) -> usize {
        self.inner.live.transfer_sessions()
    }

    /// A session to `peer` for a transfer: a live one if this node has one, else one dial at
    /// `addrs` shared with every transfer to `peer` that asks meanwhile (see [`self`]).
    pub async fn transfer_session(
        &self,
        peer: PeerId,
        addrs: &[SocketAddr],
    ) -> Result<TransferLease> {
        let sessions = self.inner.live.clone();
        // A session can close between its dial and our lease; then dial again, a few times.
        let mut last = None;
        for _ in 0..3 {
            self.ensure_open()?;
            let mut dialing = match sessions.lease_or_dial(self, peer, addrs)? {
                Ok(lease) => return Ok(lease),
                Err(dialing) => dialing,
            };
            let done = dialing
                .wait_for(Option::is_some)
                .await
                .map_err(|_| NetError::Io("dial task ended without a result".into()))?
                .clone();
            match done {
                Some(Ok(session)) => last = Some(session.lost_now()),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Err(last.unwrap_or_else(|| NetError::Handshake("no session to the provider".into())))
    }
}

fn poisoned() -> NetError {
    NetError::Io("session table lock poisoned".into())
}
