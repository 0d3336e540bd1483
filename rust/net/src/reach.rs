//! What a node knows about its own reachability: the reflections of its sessions (PEER_INFO,
//! dial-back answers) in a [`Reflector`], and the bounds on dial-backs in flight.
//!
//! Every session of a node is linked to its [`Reach`] (a session extension) and observed by
//! it, so the control task feeds it the PEER_INFO it reads. The link and the PEER_INFO may
//! come in either order (see `session::control`); feeding the same report twice changes
//! nothing.
//!
//! Once an address becomes trusted (two peers report it), the node asks up to
//! [`AUTO_HELPERS`] of its reporters that offer dial-back ("dialback" in their HELLO) to
//! dial it back, once per newly trusted address, so `Node::reachability` fills in by itself.
//!
//! Invariants: a dial-back slot (helper or asker side) is held from before the dial until its
//! connection is gone, and given back in `Drop`; at most one per peer and `max_dial_backs`
//! per node on each side. Sessions are held weakly: being a reporter keeps no session open.

use crate::session::{Session, SessionInner};
pub use i6p_core::reflect::{Mapping, ReachStatus};
use i6p_core::reflect::{Reflector, MAX_REPORTERS};
use i6p_core::PeerId;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// The HELLO capability of a node that serves dial-back requests.
pub const CAPABILITY: (&str, &str) = ("dialback", "1");

/// Helpers asked automatically for each newly trusted address: two agreeing answers make
/// the status firm.
pub const AUTO_HELPERS: usize = 2;

/// What is known about one of the node's addresses as peers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrReach {
    /// The address, as peers observe it.
    pub addr: SocketAddr,
    /// Public (a helper reached it unsolicited), filtered (helpers did not), or unknown.
    pub status: ReachStatus,
    /// The mapping of its IP: independent, dependent (EDM), or unknown.
    pub mapping: Mapping,
    /// Distinct peers that report this address now.
    pub reporters: usize,
    /// Reported by at least two peers.
    pub trusted: bool,
    /// Helpers whose dial-back reached it.
    pub reached: usize,
    /// Helpers whose dial-back did not.
    pub unreached: usize,
}

/// Which side of a dial-back a slot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// This node dials a peer back.
    Helper,
    /// This node asked a peer to dial it back.
    Asker,
}

/// A node's reflections and dial-back bounds.
pub(crate) struct Reach {
    reflector: Mutex<Reflector>,
    /// The sessions of reporters, weakly, for automatic dial-backs.
    sessions: Mutex<HashMap<PeerId, Weak<SessionInner>>>,
    helping: Mutex<HashSet<PeerId>>,
    asking: Mutex<HashSet<PeerId>>,
    max_dial_backs: usize,
    /// Run dial-backs by themselves when an address becomes trusted.
    auto: bool,
}

/// A session's link to its node's [`Reach`].
#[derive(Default)]
struct Link(OnceLock<Weak<Reach>>);

/// A dial-back in flight, counted until dropped.
pub(crate) struct Slot {
    reach: Arc<Reach>,
    side: Side,
    peer: PeerId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut set) = self.reach.set(self.side).lock() {
            set.remove(&self.peer);
        }
    }
}

impl Reach {
    pub(crate) fn new(local: SocketAddr, max_dial_backs: usize, auto: bool) -> Arc<Self> {
        let mut reflector = Reflector::new();
        reflector.reset(local);
        Arc::new(Self {
            reflector: Mutex::new(reflector),
            sessions: Mutex::default(),
            helping: Mutex::default(),
            asking: Mutex::default(),
            max_dial_backs,
            auto,
        })
    }

    fn set(&self, side: Side) -> &Mutex<HashSet<PeerId>> {
        match side {
            Side::Helper => &self.helping,
            Side::Asker => &self.asking,
        }
    }

    /// A dial-back slot for `peer`, or None: one is in flight for it, or the node is at its
    /// limit.
    pub(crate) fn take(self: &Arc<Self>, side: Side, peer: PeerId) -> Option<Slot> {
        let mut set = self.set(side).lock().ok()?;
        if set.contains(&peer) || set.len() >= self.max_dial_backs {
            return None;
        }
        set.insert(peer);
        Some(Slot {
            reach: self.clone(),
            side,
            peer,
        })
    }

    /// The node moved to a new socket: what was known about the old one is void.
    pub(crate) fn reset(&self, local: SocketAddr) {
        if let Ok(mut r) = self.reflector.lock() {
            r.reset(local);
        }
    }

    /// Links `session` to this node's reflections, which hear of its PEER_INFO from now on
    /// (and of the one it already received).
    pub(crate) fn link(self: &Arc<Self>, session: &Session) {
        let link = session.extension(|_| Arc::new(Link::default()));
        let _ = link.0.set(Arc::downgrade(self));
        let reach = Arc::downgrade(self);
        session.observe_peer_info(Arc::new(move |session, addr| {
            if let Some(reach) = reach.upgrade() {
                reach.observed(session, addr);
            }
        }));
    }

    /// `session`'s peer observes us at `addr`.
    pub(crate) fn observed(self: &Arc<Self>, session: &Session, addr: SocketAddr) {
        let peer = session.remote_peer_id();
        let newly = match self.reflector.lock() {
            Ok(mut r) => match r.local() {
                Some(local) => r.observe(local, peer, addr),
                None => None,
            },
            Err(_) => None,
        };
        self.remember(session);
        if let Some(addr) = newly.filter(|_| self.auto) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(auto_dial_back(self.clone(), addr));
            }
        }
    }

    /// Records a helper's dial-back answer for `addr` (its own observation included).
    pub(crate) fn answered(
        self: &Arc<Self>,
        session: &Session,
        addr: SocketAddr,
        reached: Option<bool>,
    ) {
        self.observed(session, addr);
        if let (Some(reached), Ok(mut r)) = (reached, self.reflector.lock()) {
            if let Some(local) = r.local() {
                r.record_dial_back(local, session.remote_peer_id(), addr, reached);
            }
        }
    }

    /// Keeps the reporter's session (weakly), for automatic dial-backs; bounded like the
    /// reporters themselves.
    fn remember(&self, session: &Session) {
        let Ok(mut sessions) = self.sessions.lock() else {
            return;
        };
        sessions.insert(session.remote_peer_id(), session.downgrade());
        if sessions.len() > 2 * MAX_REPORTERS {
            sessions.retain(|_, w| w.strong_count() > 0);
            if sessions.len() > 2 * MAX_REPORTERS {
                sessions.clear();
                sessions.insert(session.remote_peer_id(), session.downgrade());
            }
        }
    }

    /// One entry per observed address, the most reported first.
    pub(crate) fn report(&self) -> Vec<AddrReach> {
        let Ok(r) = self.reflector.lock() else {
            return Vec::new();
        };
        r.report()
            .into_iter()
            .map(|a| AddrReach {
                addr: a.addr,
                status: a.status,
                mapping: a.mapping,
                reporters: a.reporters,
                trusted: a.trusted,
                reached: a.reached,
                unreached: a.unreached,
            })
            .collect()
    }

    /// True when some trusted address is public by the dial-backs' answers.
    pub(crate) fn is_public(&self) -> bool {
        self.reflector.lock().is_ok_and(|r| r.is_public())
    }

    /// Live sessions to the peers that report `addr` and offer dial-back, newest report
    /// first.
    fn helpers_for(&self, addr: SocketAddr) -> Vec<Session> {
        let reporters = match self.reflector.lock() {
            Ok(r) => r.reporters_of(addr),
            Err(_) => return Vec::new(),
        };
        let Ok(sessions) = self.sessions.lock() else {
            return Vec::new();
        };
        reporters
            .iter()
            .rev()
            .filter_map(|p| sessions.get(p).and_then(Session::upgrade))
            .filter(|s| s.is_usable() && offers_dial_back(s))
            .take(AUTO_HELPERS)
            .collect()
    }
}

/// The [`Reach`] a session is linked to, if any.
pub(crate) fn of(session: &Session) -> Option<Arc<Reach>> {
    session
        .extension(|_| Arc::new(Link::default()))
        .0
        .get()
        .and_then(Weak::upgrade)
}

/// True when the peer's HELLO says it serves dial-back requests.
pub(crate) fn offers_dial_back(session: &Session) -> bool {
    session
        .remote_capabilities()
        .iter()
        .any(|(k, v)| k == CAPABILITY.0 && v == CAPABILITY.1)
}

/// Asks the reporters of a newly trusted address to dial it back (at most
/// [`AUTO_HELPERS`], concurrently); the answers land in the reflector.
async fn auto_dial_back(reach: Arc<Reach>, addr: SocketAddr) {
    let helpers = reach.helpers_for(addr);
    drop(reach);
    let asks = helpers.into_iter().map(|session| async move {
        if let Err(e) = session.dial_back(Some(addr.port())).await {
            tracing::debug!(peer = %session.remote_peer_id().short(), error = %e, "dial-back");
        }
    });
    join_all(asks).await;
}

/// Runs the futures concurrently to their ends (the crate has no `futures` dependency).
async fn join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}
