//! Connecting to a peer that may sit behind a firewall or NAT: [`Node::connect_to`] tries the
//! addresses it was given, then asks a coordinator (any peer with live sessions to both) to
//! introduce the two, and drives the asker's punch procedure ([`i6p_core::punch`]) over the
//! COORD stream: a plain dial when the target is public, connection reversal when this node
//! is, else up to three coordinated simultaneous opens.
//!
//! Roles in a simultaneous open: the peer with the smaller PeerId sends the QUIC Initial
//! (from the node's own endpoint, so the mapping is the one the other side was told about),
//! the other sends a few one-byte datagrams from the same socket toward the candidates to
//! open its own firewall's pinhole, and accepts. One connection per attempt, so the two sides
//! never race two handshakes. Both mark the session `Route::Punched`: the dialer names the
//! attempt in its HELLO and the listener takes its word (see `session::route`).
//!
//! The pending-punch table ([`PunchState`]) is how the listener side recognises a connection
//! from a peer it is punching to: such a session gets a provisional route at accept (a peer
//! too old to name its attempt keeps it), and one that the asker is waiting for goes to its
//! `connect_to`, not to `accept`. The table is bounded ([`MAX_PENDING_PUNCHES`]) and every
//! entry expires.

use super::Node;
use crate::error::{NetError, Result};
use crate::session::{Route, Session};
use i6p_core::coord::{filter_candidates, Candidates, CoordMessage, SyncMode};
use i6p_core::punch::{GiveUpReason, PunchAction, PunchProcedure, PunchTimers};
use i6p_core::{codes, PeerId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Peers this node may be punching to at once (as asker and as target together).
pub const MAX_PENDING_PUNCHES: usize = 64;
/// How long an entry of the pending-punch table lives at most.
const PUNCH_TTL: Duration = Duration::from_secs(30);
/// Time given to the addresses the caller knows before asking the coordinator: enough for a
/// handshake on any sane path; a filtered address is a black hole that would hold the whole
/// handshake timeout.
pub(super) const DIRECT_FIRST: Duration = Duration::from_secs(2);
/// Rounds of pinhole datagrams the non-dialing side sends, and the pause between them.
const PINHOLE_ROUNDS: u32 = 4;
const PINHOLE_PAUSE: Duration = Duration::from_millis(25);

/// How much later than the agreed moment the dialing side of a simultaneous open sends its
/// Initial: both sides start at about the same moment, and an Initial that reaches the
/// other side's firewall before that side's pinhole datagram has left is dropped, costing
/// QUIC's first retransmission timeout (about 1 s). Half the round trip to the coordinator
/// (about a quarter of the path's through it), at least [`MIN_MARGIN`] (scheduling jitter on
/// a busy host), at most the time the pinhole datagrams keep going.
pub(super) fn dial_margin(to_coordinator: &Session) -> Duration {
    (to_coordinator.stats().rtt / 2).clamp(MIN_MARGIN, PINHOLE_PAUSE * (PINHOLE_ROUNDS - 1))
}

/// The least [`dial_margin`].
const MIN_MARGIN: Duration = Duration::from_millis(5);

/// The node's coordination state: pending punches and introductions in flight.
pub(crate) struct PunchState {
    pending: Mutex<HashMap<PeerId, Pending>>,
    next_id: AtomicU64,
    /// Introductions this node coordinates now, per asker.
    introductions: Mutex<HashMap<PeerId, usize>>,
    max_introductions: usize,
    max_introductions_per_peer: usize,
    pub(super) coordinate: bool,
    /// Whether this node believes it is publicly reachable. Until REACH's `is_public()` is
    /// wired in at merge, it is false (the safe belief: it never skips a punch) unless a
    /// test or the application sets it.
    public: AtomicBool,
    /// A test's instruction to coordinate dishonestly (see [`CoordinatorLie`]).
    pub(super) lie: Mutex<Option<CoordinatorLie>>,
}

/// How a coordinator under test lies, so tests can check that a dishonest coordinator
/// cannot make the asker accept anyone but the peer it named.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum CoordinatorLie {
    /// Forward the target's answer with these candidates instead of its own.
    Addrs(Vec<SocketAddr>),
    /// Introduce the asker to this peer instead of the one it named.
    Target(PeerId),
}

struct Pending {
    id: u64,
    route: Route,
    deliver: Option<oneshot::Sender<Session>>,
    until: Instant,
}

/// Removes its pending-punch entry when dropped.
pub(super) struct PendingGuard {
    state: Arc<PunchState>,
    peer: PeerId,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut p) = self.state.pending.lock() {
            if p.get(&self.peer).is_some_and(|e| e.id == self.id) {
                p.remove(&self.peer);
            }
        }
    }
}

impl PendingGuard {
    /// The route an incoming session from the peer gets from now on.
    pub(super) fn set_route(&self, route: Route) {
        if let Ok(mut p) = self.state.pending.lock() {
            if let Some(e) = p.get_mut(&self.peer).filter(|e| e.id == self.id) {
                e.route = route;
            }
        }
    }
}

/// An introduction counted against the coordinator's limits while it lives.
pub(super) struct IntroductionSlot {
    state: Arc<PunchState>,
    asker: PeerId,
}

impl Drop for IntroductionSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.state.introductions.lock() {
            if let Some(n) = m.get_mut(&self.asker) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.asker);
                }
            }
        }
    }
}

impl PunchState {
    pub(super) fn new(config: &super::NodeConfig) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            introductions: Mutex::new(HashMap::new()),
            max_introductions: config.limits.max_introductions,
            max_introductions_per_peer: config.limits.max_introductions_per_peer,
            coordinate: config.coordinate,
            public: AtomicBool::new(false),
            lie: Mutex::new(None),
        })
    }

    /// Expects a connection from `peer` (its sessions get `route`); `deliver` takes the first
    /// one instead of `accept`. A newer entry for the same peer replaces an older one.
    pub(super) fn expect(
        self: &Arc<Self>,
        peer: PeerId,
        route: Route,
        deliver: Option<oneshot::Sender<Session>>,
    ) -> Result<PendingGuard> {
        let mut p = self.pending.lock().map_err(|_| poisoned())?;
        let now = Instant::now();
        p.retain(|_, e| e.until > now);
        if p.len() >= MAX_PENDING_PUNCHES && !p.contains_key(&peer) {
            return Err(NetError::Busy(format!(
                "{MAX_PENDING_PUNCHES} coordinated connections in progress"
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let until = now + PUNCH_TTL;
        p.insert(
            peer,
            Pending {
                id,
                route,
                deliver,
                until,
            },
        );
        Ok(PendingGuard {
            state: self.clone(),
            peer,
            id,
        })
    }

    /// The route of an incoming session from `peer`: its pending punch's, else direct.
    pub(super) fn route_for(&self, peer: &PeerId) -> Route {
        let now = Instant::now();
        self.pending
            .lock()
            .ok()
            .and_then(|p| p.get(peer).filter(|e| e.until > now).map(|e| e.route))
            .unwrap_or(Route::Direct)
    }

    /// Hands an incoming session to the `connect_to` waiting for it; gives it back when
    /// none is (it goes to `accept` as usual).
    pub(super) fn claim(&self, session: Session) -> Option<Session> {
        let deliver = self.pending.lock().ok().and_then(|mut p| {
            p.get_mut(&session.remote_peer_id())
                .and_then(|e| e.deliver.take())
        });
        match deliver {
            Some(tx) => tx.send(session).err(),
            None => Some(session),
        }
    }

    /// Counts an introduction `asker` asked this node for, within the limits.
    pub(super) fn begin_introduction(
        self: &Arc<Self>,
        asker: PeerId,
    ) -> std::result::Result<IntroductionSlot, String> {
        let mut m = self.introductions.lock().map_err(|_| "lock poisoned")?;
        let total: usize = m.values().sum();
        if total >= self.max_introductions {
            return Err(format!("{total} introductions in flight (node limit)"));
        }
        let n = m.entry(asker).or_insert(0);
        if *n >= self.max_introductions_per_peer {
            return Err(format!("{n} introductions in flight for this peer (limit)"));
        }
        *n += 1;
        Ok(IntroductionSlot {
            state: self.clone(),
            asker,
        })
    }
}

/// Gives a session made by a coordinated dial its route.
pub(super) fn mark(session: &Session, coordinated: Option<Route>) {
    if let Some(route) = coordinated {
        session.set_route(route);
    }
}

/// Whether this side sends the QUIC Initial in a simultaneous open with `peer`.
pub(super) fn dials_first(me: PeerId, peer: PeerId) -> bool {
    me < peer
}

impl Node {
    /// Connects to `peer`: at `addrs` first (a few at a time, as [`Node::connect_any`]),
    /// then through `via`, a session with a coordinator that has a live session with `peer`
    /// (connection reversal, then up to three coordinated simultaneous opens), then, where a
    /// relay is wired in, through it. Fails within seconds when nothing works, with an
    /// [`NetError::Unreachable`] that says what was tried.
    pub async fn connect_to(
        &self,
        peer: PeerId,
        addrs: &[SocketAddr],
        via: Option<&Session>,
    ) -> Result<Session> {
        self.connect_to_as(peer, addrs, via, false).await
    }

    /// [`Self::connect_to`]; with `transfers`, the sessions made through `via` are for blob
    /// transfers only: the peer serves them and never hands them to its application.
    pub(super) async fn connect_to_as(
        &self,
        peer: PeerId,
        addrs: &[SocketAddr],
        via: Option<&Session>,
        transfers: bool,
    ) -> Result<Session> {
        self.ensure_open()?;
        if peer == self.peer_id() {
            return Err(NetError::OwnPeerId(peer));
        }
        let mut tried = Vec::new();
        if !addrs.is_empty() {
            let result = match via {
                Some(_) => self.connect_proven(peer, addrs).await,
                None => self.connect_any(peer, addrs).await,
            };
            match result {
                Ok(session) => return Ok(session),
                Err(e @ (NetError::NodeClosed | NetError::OwnPeerId(_))) => return Err(e),
                Err(e) if via.is_none() => return Err(e),
                Err(e) => tried.push(format!("addresses {} ({e})", list(addrs))),
            }
        }
        let Some(via) = via else {
            return Err(NetError::Config(
                "connect_to needs addresses or a coordinator (via)".into(),
            ));
        };
        match self.connect_coordinated(peer, via, transfers).await {
            Ok(session) => return Ok(session),
            Err(e @ (NetError::NodeClosed | NetError::CoordinationRefused(_))) => return Err(e),
            Err(e) => tried.push(e.to_string()),
        }
        match self.connect_through_relay(peer, via, transfers).await {
            Some(Ok(session)) => return Ok(session),
            Some(Err(e @ NetError::NodeClosed)) => return Err(e),
            Some(Err(e)) => tried.push(format!("relay {} ({e})", via.remote_peer_id().short())),
            None => tried.push("no relay (the coordinator does not relay)".into()),
        }
        Err(NetError::Unreachable(format!(
            "peer {} not reached; tried: {}",
            peer.short(),
            tried.join("; ")
        )))
    }

    /// [`Self::connect_any`] within [`DIRECT_FIRST`], and only a session the peer answered
    /// on: a 0-RTT session returns before any answer, and one to a stale address would
    /// otherwise end the attempt with a session that is dead.
    async fn connect_proven(&self, peer: PeerId, addrs: &[SocketAddr]) -> Result<Session> {
        let proven = async {
            let session = self.connect_any(peer, addrs).await?;
            match session.wait_established().await {
                Ok(()) => Ok(session),
                Err(e) => {
                    session.close(codes::ABANDONED, "no answer").await;
                    Err(e)
                }
            }
        };
        tokio::time::timeout(DIRECT_FIRST, proven)
            .await
            .unwrap_or_else(|_| {
                Err(NetError::Handshake(format!(
                    "no answer within {DIRECT_FIRST:?}"
                )))
            })
    }

    /// Makes this node believe it is publicly reachable (unsolicited packets reach it)
    /// whatever dial-backs found (`Node::is_public`), which decides connection reversal;
    /// tests set it by hand.
    #[doc(hidden)]
    pub fn set_believes_public(&self, public: bool) {
        self.inner.punch.public.store(public, Ordering::Relaxed);
    }

    /// A live application session with `peer` (or one dialed for transfers), if any: what
    /// a caller can coordinate through when it names the coordinator by PeerId.
    pub fn live_session(&self, peer: &PeerId) -> Option<Session> {
        self.inner.live.any_session(peer)
    }

    /// Makes this node a dishonest coordinator (tests only; see [`CoordinatorLie`]).
    #[doc(hidden)]
    pub fn lie_as_coordinator(&self, lie: Option<CoordinatorLie>) {
        if let Ok(mut l) = self.inner.punch.lie.lock() {
            *l = lie;
        }
    }

    pub(super) fn believes_public(&self) -> bool {
        self.inner.punch.public.load(Ordering::Relaxed) || self.is_public()
    }

    /// This node's candidates for a peer reached through `via`: its listen addresses and the
    /// address `via` observes (the coordinator adds its own observation again).
    pub(super) fn candidates_for(&self, via: &Session) -> Candidates {
        let mut addrs = via.observed_addr().into_iter().collect::<Vec<_>>();
        addrs.extend(self.reachable_addrs().unwrap_or_default());
        let loopback_ok = via.remote_addr().ip().is_loopback();
        Candidates {
            addrs: filter_candidates(&addrs, loopback_ok),
            public: self.believes_public(),
            transfers: false,
        }
    }

    /// Introduction through `via`, then the punch procedure (see the module's doc).
    pub(super) async fn connect_coordinated(
        &self,
        peer: PeerId,
        via: &Session,
        transfers: bool,
    ) -> Result<Session> {
        let coordinator = via.remote_peer_id();
        if coordinator == peer {
            return Err(NetError::Config(
                "the coordinator is the peer itself".into(),
            ));
        }
        let what = format!(
            "coordinator {} at {}",
            coordinator.short(),
            crate::addr::format_addr(&via.remote_addr())
        );
        let (send, recv) = via
            .open_kind(Some(i6p_core::kinds::STREAM_COORD))
            .await
            .map_err(|e| NetError::Unreachable(format!("{what}: {e}")))?;
        let (tx, rx) = oneshot::channel();
        let guard = self.inner.punch.expect(peer, Route::Punched, Some(tx))?;
        let messages = super::coordinator::read_messages(recv);
        let asker = Asker {
            margin: dial_margin(via),
            node: self.clone(),
            peer,
            send,
            loopback_ok: via.remote_addr().ip().is_loopback(),
            ours: Candidates {
                transfers,
                ..self.candidates_for(via)
            },
            target: Vec::new(),
            dials: JoinSet::new(),
            errors: Vec::new(),
            guard,
        };
        asker.run(rx, messages).await.map_err(|e| match e {
            NetError::Unreachable(why) => NetError::Unreachable(format!("{what}: {why}")),
            other => other,
        })
    }

    /// Sends one-byte datagrams from the node's own socket to `addrs` at `at` and a few
    /// times after: they open this side's firewall or NAT toward the peer (quinn on the other
    /// end drops them as not QUIC).
    pub(super) fn open_pinholes(&self, addrs: &[SocketAddr], at: tokio::time::Instant) {
        let Ok(targets) = addrs
            .iter()
            .map(|a| self.dialable(*a))
            .collect::<Result<Vec<_>>>()
        else {
            return;
        };
        let buffers = self.inner.buffers.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            for _ in 0..PINHOLE_ROUNDS {
                for addr in &targets {
                    buffers.send_to(&[0], *addr);
                }
                tokio::time::sleep(PINHOLE_PAUSE).await;
            }
        });
    }

    /// Dials `peer` at every one of `addrs` at `at`, marking the session `route`. A dial
    /// counts once the peer answered (a 0-RTT session returns before that, and a punch that
    /// did not get through would leave a dead one).
    pub(super) fn dial_all_at(
        &self,
        dials: &mut JoinSet<Result<Session>>,
        (peer, addrs): (PeerId, &[SocketAddr]),
        at: tokio::time::Instant,
        route: Route,
        transfers: bool,
    ) {
        for addr in addrs {
            let (node, addr) = (self.clone(), *addr);
            dials.spawn(async move {
                tokio::time::sleep_until(at).await;
                let session = node
                    .dial_session(peer, addr, transfers, Some(route))
                    .await?;
                session.wait_established().await?;
                Ok(session)
            });
        }
    }
}

/// What the COORD stream's reader task reports: a message, or the stream's end (None) or
/// failure.
pub(super) type Incoming = Result<Option<CoordMessage>>;

/// The asker's side of one introduction (see the module's doc).
struct Asker {
    node: Node,
    /// How much after the agreed moment this side dials, when it is the dialing side.
    margin: Duration,
    peer: PeerId,
    send: quinn::SendStream,
    loopback_ok: bool,
    /// This node's candidates, sent in CONNECT.
    ours: Candidates,
    /// The target's candidates, once its answer arrived.
    target: Vec<SocketAddr>,
    /// Dials of the current step.
    dials: JoinSet<Result<Session>>,
    /// Distinct errors of failed dials, for the failure's message (bounded).
    errors: Vec<String>,
    guard: PendingGuard,
}

impl Asker {
    async fn run(
        mut self,
        mut incoming: oneshot::Receiver<Session>,
        mut messages: mpsc::Receiver<Incoming>,
    ) -> Result<Session> {
        let timers = PunchTimers::default();
        let public = self.node.believes_public();
        let (mut procedure, mut actions) =
            PunchProcedure::start(Instant::now(), public, rand::random(), timers);
        // The table drops the sender when a newer punch to the same peer replaces this one:
        // from then on only this node's own dials can complete it.
        let mut waiting = true;
        loop {
            for action in std::mem::take(&mut actions) {
                self.act(action).await?;
            }
            let Some(deadline) = procedure.poll_timeout() else {
                return Err(NetError::Unreachable("procedure ended".into()));
            };
            let deadline = tokio::time::Instant::from_std(deadline);
            tokio::select! {
                got = &mut incoming, if waiting => {
                    waiting = false;
                    if let Ok(session) = got {
                        procedure.handle_connected();
                        self.finish().await;
                        return Ok(session);
                    }
                }
                message = messages.recv() => {
                    let message = message.unwrap_or(Ok(None));
                    actions = self.on_message(&mut procedure, message)?;
                }
                Some(joined) = self.dials.join_next(), if !self.dials.is_empty() => {
                    match joined {
                        Ok(Ok(session)) => {
                            procedure.handle_connected();
                            self.node.note_app_session(&session);
                            self.finish().await;
                            return Ok(session);
                        }
                        Ok(Err(e)) => self.note_error(&e),
                        Err(_) => {}
                    }
                    if self.dials.is_empty() {
                        actions = procedure.handle_failed(Instant::now());
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    actions = procedure.handle_timeout(Instant::now());
                }
            }
            if actions.iter().any(|a| matches!(a, PunchAction::GiveUp(_))) {
                return Err(self.failure(&procedure, &actions));
            }
        }
    }

    async fn act(&mut self, action: PunchAction) -> Result<()> {
        let now = tokio::time::Instant::now();
        match action {
            PunchAction::SendConnect => {
                let candidates = self.ours.clone();
                self.write(CoordMessage::Connect {
                    target: self.peer,
                    candidates,
                })
                .await?;
            }
            PunchAction::DialDirect => {
                self.dials = JoinSet::new();
                let target = self.target.clone();
                let to = (self.peer, &target[..]);
                let transfers = self.ours.transfers;
                self.node
                    .dial_all_at(&mut self.dials, to, now, Route::Direct, transfers);
            }
            PunchAction::SendSync { attempt, mode } => {
                let route = match mode {
                    SyncMode::Reverse => Route::Direct,
                    SyncMode::Punch => Route::Punched,
                };
                self.guard.set_route(route);
                self.write(CoordMessage::Sync { attempt, mode }).await?;
            }
            PunchAction::AwaitIncoming => self.dials = JoinSet::new(),
            PunchAction::StartAt { at, .. } => {
                let at = tokio::time::Instant::from_std(at);
                self.dials = JoinSet::new();
                let target = self.target.clone();
                if dials_first(self.node.peer_id(), self.peer) {
                    let at = at + self.margin;
                    let to = (self.peer, &target[..]);
                    let transfers = self.ours.transfers;
                    self.node
                        .dial_all_at(&mut self.dials, to, at, Route::Punched, transfers);
                } else {
                    self.node.open_pinholes(&target, at);
                }
            }
            PunchAction::SendRtt { nonce } => self.write(CoordMessage::Rtt { nonce }).await?,
            PunchAction::GiveUp(_) => {}
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        procedure: &mut PunchProcedure,
        message: Incoming,
    ) -> Result<Vec<PunchAction>> {
        let now = Instant::now();
        match message {
            Ok(Some(CoordMessage::Answer(c))) if self.target.is_empty() => {
                self.target = filter_candidates(&c.addrs, self.loopback_ok);
                Ok(procedure.handle_answer(now, c.public))
            }
            Ok(Some(CoordMessage::Rtt { nonce })) => Ok(procedure.handle_rtt(now, nonce)),
            Ok(Some(CoordMessage::Refuse { reason, text })) => {
                Err(NetError::CoordinationRefused(format!("{reason:?}: {text}")))
            }
            Ok(Some(_)) => Ok(Vec::new()),
            Ok(None) => Err(NetError::Unreachable(format!(
                "the coordinator ended the introduction ({})",
                self.summary(procedure)
            ))),
            Err(e) => Err(NetError::Unreachable(format!(
                "introduction failed: {e} ({})",
                self.summary(procedure)
            ))),
        }
    }

    async fn write(&mut self, message: CoordMessage) -> Result<()> {
        self.send
            .write_all(&message.encode_frame())
            .await
            .map_err(|e| NetError::Unreachable(format!("cannot write to the coordinator: {e}")))
    }

    fn note_error(&mut self, e: &NetError) {
        let e = e.to_string();
        if self.errors.len() < 4 && !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    fn summary(&self, procedure: &PunchProcedure) -> String {
        let rtt = procedure
            .rtt()
            .map_or("not measured".into(), |r| format!("{r:?}"));
        let mut s = format!(
            "steps: {}; candidates of the peer: {}; rtt through the coordinator {rtt}",
            if procedure.tried().is_empty() {
                "none".into()
            } else {
                procedure.tried().join(", ")
            },
            list(&self.target)
        );
        if !self.errors.is_empty() {
            s.push_str(&format!("; dial errors: {}", self.errors.join(" | ")));
        }
        s
    }

    fn failure(&self, procedure: &PunchProcedure, actions: &[PunchAction]) -> NetError {
        let why = match actions.iter().find_map(|a| match a {
            PunchAction::GiveUp(why) => Some(*why),
            _ => None,
        }) {
            Some(GiveUpReason::NoAnswer) => "no answer from the target",
            _ => "no direct path formed",
        };
        NetError::Unreachable(format!("{why} ({})", self.summary(procedure)))
    }

    /// Ends the COORD stream cleanly: the target stops expecting this introduction.
    async fn finish(&mut self) {
        let _ = self.send.finish();
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "none".into();
    }
    addrs
        .iter()
        .map(crate::addr::format_addr)
        .collect::<Vec<_>>()
        .join(", ")
}

fn poisoned() -> NetError {
    NetError::Io("punch table lock poisoned".into())
}
