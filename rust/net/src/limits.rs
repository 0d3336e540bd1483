//! The node's resource policy: one set of bounds on what peers can make it hold, and the
//! accounting that enforces them.
//!
//! Invariants: every slot is taken before the resource is used and given back in `Drop`, so
//! an aborted task or a failed handshake can never leak one; refusing is preferred to
//! waiting, and nothing waits without a deadline (a request waits at most [`SLOT_WAIT`] for
//! one of the node's request slots, in arrival order, so a burst of honest requests is served
//! rather than refused). Peers are free to make new identities, so
//! whatever one identity is bounded by is also bounded per address prefix (/64 for IPv6, /32
//! for IPv4), which an attacker cannot multiply as cheaply.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use i6p_core::PeerId;

/// Bounds on what peers can make a node hold. The defaults suit a public node serving a few
/// hundred peers; raise them for load tests or dedicated providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Incoming connections (handshaking or established) at once.
    pub max_connections: usize,
    /// Incoming connections from one PeerId at once.
    pub max_connections_per_peer: usize,
    /// Incoming connections from one address prefix (/64, or /32 for IPv4) at once.
    pub max_connections_per_prefix: usize,
    /// Incoming handshakes in progress. Above half of it, clients must first prove their
    /// address (a QUIC Retry); at the limit, new ones are refused.
    pub max_handshakes: usize,
    /// New incoming connections admitted per second from one address prefix (a token bucket
    /// holding two seconds' worth); past it, refused before any cryptography. A flood from
    /// one prefix then costs the node a stateless refusal per packet, not a key exchange and
    /// a signature.
    pub handshake_rate_per_prefix: usize,
    /// Established sessions waiting for `accept`; above it, new ones are refused (closed with
    /// [`codes::BUSY`](i6p_core::codes::BUSY)).
    pub max_queued_sessions: usize,
    /// Application streams of one session waiting for `accept_stream`; above it, new ones
    /// are refused (reset with [`codes::BUSY`](i6p_core::codes::BUSY)).
    pub max_queued_streams: usize,
    /// Blob requests (GET, FEC GET) served at once by the node.
    pub max_requests: usize,
    /// Blob requests served at once to one PeerId.
    pub max_requests_per_peer: usize,
    /// A request whose requester takes no data (grants no flow-control credit, or sends no
    /// loss report in FEC mode) for this long is reset and its slot freed.
    pub send_timeout: Duration,
    /// A FEC request with no frame from its requester for this long, once its shards are
    /// out, is ended.
    pub request_idle_timeout: Duration,
    /// Bytes of group data a request reads ahead of the network (at least one group).
    pub read_ahead: usize,
    /// Dial-backs this node runs for peers at once (each a short-lived socket and
    /// handshake); one per peer at most. Also bounds the dial-backs it asks for at once.
    pub max_dial_backs: usize,
    /// Relay circuits this node carries at once (when it relays, `NodeConfig::relay`).
    pub max_relay_circuits: usize,
    /// Relay circuits one requesting PeerId may have through this node at once.
    pub max_relay_circuits_per_peer: usize,
    /// Bytes (both directions) a relay circuit carries before the relay ends it with
    /// [`codes::RELAY_LIMIT`](i6p_core::codes::RELAY_LIMIT). None: unlimited (the operator's
    /// explicit choice; the default is finite).
    pub relay_circuit_bytes: Option<u64>,
    /// How long a relay circuit may last before the relay ends it with
    /// [`codes::RELAY_LIMIT`](i6p_core::codes::RELAY_LIMIT). None: unlimited.
    pub relay_circuit_duration: Option<Duration>,
    /// Relayed sessions (inner connections over circuits) this node has at once, as
    /// requester or target; further circuits are refused.
    pub max_relayed_sessions: usize,
    /// Introductions this node coordinates at once (as the mutual peer of two others).
    pub max_introductions: usize,
    /// Introductions one asking peer may have in flight through this node at once.
    pub max_introductions_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            // One PeerId costs an attacker nothing, so this bound is loose; it keeps one
            // identity from taking the node, while an application may open a connection per
            // concurrent fetch.
            max_connections_per_peer: 32,
            max_connections_per_prefix: 64,
            max_handshakes: 128,
            handshake_rate_per_prefix: 100,
            max_queued_sessions: 64,
            // As many as a peer may open at once (quinn's stream limit, 1024 by default); the
            // data they hold is bounded by the connection's receive window anyway.
            max_queued_streams: 1024,
            max_requests: 256,
            max_requests_per_peer: 16,
            send_timeout: Duration::from_secs(20),
            request_idle_timeout: Duration::from_secs(30),
            read_ahead: 4 << 20,
            max_dial_backs: 4,
            max_relay_circuits: 64,
            max_relay_circuits_per_peer: 4,
            relay_circuit_bytes: Some(1 << 30),
            relay_circuit_duration: Some(Duration::from_secs(30 * 60)),
            max_relayed_sessions: 32,
            max_introductions: 64,
            max_introductions_per_peer: 4,
        }
    }
}

impl Limits {
    /// Checks that every bound is usable (at least 1, timeouts non-zero).
    pub fn validate(&self) -> crate::Result<()> {
        let counts = [
            ("max_connections", self.max_connections),
            ("max_connections_per_peer", self.max_connections_per_peer),
            (
                "max_connections_per_prefix",
                self.max_connections_per_prefix,
            ),
            ("max_handshakes", self.max_handshakes),
            ("handshake_rate_per_prefix", self.handshake_rate_per_prefix),
            ("max_queued_sessions", self.max_queued_sessions),
            ("max_queued_streams", self.max_queued_streams),
            ("max_requests", self.max_requests),
            ("max_requests_per_peer", self.max_requests_per_peer),
            ("read_ahead", self.read_ahead),
            ("max_dial_backs", self.max_dial_backs),
            ("max_relay_circuits", self.max_relay_circuits),
            (
                "max_relay_circuits_per_peer",
                self.max_relay_circuits_per_peer,
            ),
            ("max_relayed_sessions", self.max_relayed_sessions),
            ("max_introductions", self.max_introductions),
            (
                "max_introductions_per_peer",
                self.max_introductions_per_peer,
            ),
        ];
        for (name, value) in counts {
            if value == 0 {
                return Err(crate::NetError::Config(format!(
                    "{name} must be at least 1"
                )));
            }
        }
        if self.relay_circuit_bytes == Some(0) {
            return Err(crate::NetError::Config(
                "relay_circuit_bytes must be at least 1 (None: unlimited)".into(),
            ));
        }
        let duration = self.relay_circuit_duration.unwrap_or(Duration::MAX);
        for (name, value) in [
            ("send_timeout", self.send_timeout),
            ("request_idle_timeout", self.request_idle_timeout),
            ("relay_circuit_duration", duration),
        ] {
            if value.is_zero() {
                return Err(crate::NetError::Config(format!("{name} must be positive")));
            }
        }
        Ok(())
    }
}

/// The address prefix a peer is bounded by: its /64 (IPv6) or /32 (IPv4; IPv4-mapped
/// addresses count as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// An IPv4 address (a /32).
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl Prefix {
    /// The prefix of `addr`.
    pub fn of(addr: SocketAddr) -> Self {
        match addr.ip() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Counts per key with a cap; entries at zero are removed, so the map holds only live keys.
struct Tally<K> {
    counts: HashMap<K, usize>,
}

impl<K: Eq + Hash + Copy> Tally<K> {
    fn new() -> Self {
        Self {
            counts: HashMap::new(),
        }
    }

    fn get(&self, key: &K) -> usize {
        self.counts.get(key).copied().unwrap_or(0)
    }

    fn add(&mut self, key: K) {
        *self.counts.entry(key).or_insert(0) += 1;
    }

    fn remove(&mut self, key: &K) {
        if let Some(n) = self.counts.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(key);
            }
        }
    }
}

/// What to do with a new incoming connection.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Go on with the handshake, holding this slot.
    Accept(ConnectionSlot),
    /// Ask the client to prove its address first (QUIC Retry).
    Retry,
    /// Refuse it: the node is at a limit. The reason is for the logs.
    Refuse(&'static str),
}

/// Counts of what [`Connections::admit`] decided, since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionCounts {
    /// Connections let in to handshake.
    pub admitted: u64,
    /// Clients asked to prove their address first (QUIC Retry).
    pub retried: u64,
    /// Connections refused before any handshake work.
    pub refused: u64,
}

#[derive(Default)]
struct ConnState {
    total: usize,
    handshaking: usize,
    counts: AdmissionCounts,
    prefixes: Option<Tally<Prefix>>,
    peers: Option<Tally<PeerId>>,
    /// Admission rate per prefix; prefixes whose bucket is full again are forgotten.
    rates: HashMap<Prefix, Bucket>,
}

/// Prefixes whose admission rate is tracked at once; past it, the full buckets (prefixes
/// quiet for two seconds) are dropped.
const MAX_RATE_PREFIXES: usize = 1 << 16;

/// A token bucket: `tokens` at `at`, refilled at the prefix's rate up to twice that.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, rate: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate).min(2.0 * rate)
    }
}

/// The node's incoming connections: how many, from which prefixes and peers, and how many are
/// still handshaking.
pub(crate) struct Connections {
    limits: Limits,
    state: Mutex<ConnState>,
}

impl Connections {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(ConnState {
                prefixes: Some(Tally::new()),
                peers: Some(Tally::new()),
                ..ConnState::default()
            }),
        })
    }

    /// Decides on a new connection from `addr` at `now`; `validated`: the client has already
    /// proved its address (it answered a Retry).
    pub(crate) fn admit(
        self: &Arc<Self>,
        addr: SocketAddr,
        validated: bool,
        now: Instant,
    ) -> Admission {
        let prefix = Prefix::of(addr);
        let Ok(mut s) = self.state.lock() else {
            return Admission::Refuse("connection table poisoned");
        };
        let decision = self.decide(&mut s, prefix, validated, now);
        match &decision {
            Admission::Accept(_) => s.counts.admitted += 1,
            Admission::Retry => s.counts.retried += 1,
            Admission::Refuse(_) => s.counts.refused += 1,
        }
        decision
    }

    fn decide(
        self: &Arc<Self>,
        s: &mut ConnState,
        prefix: Prefix,
        validated: bool,
        now: Instant,
    ) -> Admission {
        if s.total >= self.limits.max_connections {
            return Admission::Refuse("too many connections");
        }
        if s.handshaking >= self.limits.max_handshakes {
            return Admission::Refuse("too many handshakes in progress");
        }
        let per_prefix = s.prefixes.as_ref().map_or(0, |t| t.get(&prefix));
        if per_prefix >= self.limits.max_connections_per_prefix {
            return Admission::Refuse("too many connections from this address prefix");
        }
        let rate = self.limits.handshake_rate_per_prefix as f64;
        let tokens = s
            .rates
            .get(&prefix)
            .map_or(2.0 * rate, |b| b.refilled(now, rate));
        if tokens < 1.0 {
            return Admission::Refuse("too many new connections from this address prefix");
        }
        if !validated && s.handshaking >= self.limits.max_handshakes.div_ceil(2) {
            return Admission::Retry;
        }
        if s.rates.len() >= MAX_RATE_PREFIXES && !s.rates.contains_key(&prefix) {
            s.rates.retain(|_, b| b.refilled(now, rate) < 2.0 * rate);
        }
        s.rates.insert(
            prefix,
            Bucket {
                tokens: tokens - 1.0,
                at: now,
            },
        );
        s.total += 1;
        s.handshaking += 1;
        if let Some(t) = s.prefixes.as_mut() {
            t.add(prefix);
        }
        Admission::Accept(ConnectionSlot {
            table: self.clone(),
            prefix,
            peer: None,
            handshaking: true,
        })
    }

    /// What admission decided so far.
    pub(crate) fn admission(&self) -> AdmissionCounts {
        self.state.lock().map(|s| s.counts).unwrap_or_default()
    }

    /// (connections, handshakes in progress) right now.
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.state
            .lock()
            .map(|s| (s.total, s.handshaking))
            .unwrap_or((0, 0))
    }
}

/// One incoming connection's place in [`Connections`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    table: Arc<Connections>,
    prefix: Prefix,
    peer: Option<PeerId>,
    handshaking: bool,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (total, handshaking) = self.counts();
        write!(f, "Connections(total={total}, handshaking={handshaking})")
    }
}

impl ConnectionSlot {
    /// The TLS handshake proved `peer`: counts the connection against it, or refuses it if
    /// that peer already has its share.
    pub(crate) fn identified(&mut self, peer: PeerId) -> Result<(), &'static str> {
        let Ok(mut s) = self.table.state.lock() else {
            return Err("connection table poisoned");
        };
        let count = s.peers.as_ref().map_or(0, |t| t.get(&peer));
        if count >= self.table.limits.max_connections_per_peer {
            return Err("too many connections from this peer");
        }
        if let Some(t) = s.peers.as_mut() {
            t.add(peer);
        }
        self.peer = Some(peer);
        Ok(())
    }

    /// The handshake is over (the session is established or failed).
    pub(crate) fn handshake_done(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            if let Ok(mut s) = self.table.state.lock() {
                s.handshaking = s.handshaking.saturating_sub(1);
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let Ok(mut s) = self.table.state.lock() else {
            return;
        };
        s.total = s.total.saturating_sub(1);
        if self.handshaking {
            s.handshaking = s.handshaking.saturating_sub(1);
        }
        if let Some(t) = s.prefixes.as_mut() {
            t.remove(&self.prefix);
        }
        if let (Some(peer), Some(t)) = (self.peer, s.peers.as_mut()) {
            t.remove(&peer);
        }
    }
}

/// How long a request waits for one of the node's request slots before it is refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

/// Request slots of the blob provider: per node (waited for, briefly) and per peer (a peer
/// over its share is refused at once: it is asking for more than any requester needs).
pub(crate) struct Requests {
    node: Arc<tokio::sync::Semaphore>,
    per_peer: usize,
    peers: Mutex<Tally<PeerId>>,
}

impl Requests {
    pub(crate) fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            node: Arc::new(tokio::sync::Semaphore::new(limits.max_requests)),
            per_peer: limits.max_requests_per_peer,
            peers: Mutex::new(Tally::new()),
        })
    }

    /// A slot for one request of `peer`, waiting up to `wait` for the node to have one; or
    /// why there is none.
    pub(crate) async fn take(
        self: &Arc<Self>,
        peer: PeerId,
        wait: Duration,
    ) -> Result<RequestSlot, &'static str> {
        {
            let Ok(mut peers) = self.peers.lock() else {
                return Err("request table poisoned");
            };
            if peers.get(&peer) >= self.per_peer {
                return Err("too many requests from this peer at once");
            }
            peers.add(peer);
        }
        // From here the peer's count is held by `share`, so every way out gives it back.
        let share = PeerShare {
            table: self.clone(),
            peer,
        };
        match tokio::time::timeout(wait, self.node.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(RequestSlot {
                _permit: permit,
                _share: share,
            }),
            _ => Err("the provider is serving as many requests as it can"),
        }
    }

    /// Requests being served now.
    pub(crate) fn in_use(&self) -> usize {
        self.peers
            .lock()
            .map(|p| p.counts.values().sum())
            .unwrap_or(0)
    }
}

/// One request's count against its peer's share; given back when dropped.
struct PeerShare {
    table: Arc<Requests>,
    peer: PeerId,
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        if let Ok(mut peers) = self.table.peers.lock() {
            peers.remove(&self.peer);
        }
    }
}

/// One request's slot, node-wide and in its peer's share; given back when dropped.
pub(crate) struct RequestSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _share: PeerShare,
}

#[cfg(test)]
mod tests;
