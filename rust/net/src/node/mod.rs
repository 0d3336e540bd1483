//! A node: one UDP socket, one QUIC endpoint, one identity; it dials and accepts sessions.
//!
//! Incoming connections are handshaken (TLS, then HELLO) in their own tasks (`accept`), so
//! a slow or hostile peer never holds up others; only completed sessions reach `accept`.
//! What a node is set up with (its config, transport and socket) is in `config`.

mod accept;
mod config;
mod contacts;
mod coordinator;
mod dial;
mod discovery;
mod early;
#[cfg(test)]
mod early_hello_tests;
mod primary;
mod punch;
mod reach;
mod relayed;
mod reuse;
mod upgrade;

use crate::route_mtu::PathTransports;
use accept::{accept_loop, AcceptSettings};
use config::tickets_path;
pub use config::NodeConfig;
pub(crate) use config::{bind_socket, transport_config};
pub use punch::{CoordinatorLie, MAX_PENDING_PUNCHES};
pub use reuse::{TransferLease, TRANSFER_IDLE};

use crate::addr;
use crate::blobs::BlobStore;
use crate::discovery::AddressBook;
use crate::error::{NetError, Result};
use crate::limits::{Connections, Limits};
use crate::mtu::BatchSizedSocket;
use crate::resume::{PeerSessions, ServerConfigs, ServerSessions};
use crate::session::{now_ms, Established, ProtocolHandler, Protocols, Session, COORDINATED};
use crate::socket::SocketBuffers;
use crate::tls::{self, PeerVerifier, TlsIdentity};
use i6p_core::codes;
use i6p_core::{Hello, Identity, PeerId, Role, PROTOCOL_VERSION};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, Endpoint, VarInt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// A running node. Cheap to clone; all clones are the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    identity: Identity,
    /// One client configuration for every dial: rustls resumes only with the config (verifier
    /// and client key) that made the session.
    client: quinn::ClientConfig,
    verifier: Arc<PeerVerifier>,
    /// Resumption tickets from the peers this node dialed.
    sessions: Arc<PeerSessions>,
    /// Resumption tickets this node issued as a listener.
    server_sessions: Arc<ServerSessions>,
    /// Numbers dials, so the verifier can report on each one.
    dials: AtomicU64,
    /// Dropped on close, so the socket is released even while sessions objects live on.
    endpoint: std::sync::RwLock<Option<Endpoint>>,
    /// Set before the endpoint closes every connection (see `crate::closing`).
    closing: crate::closing::NodeClosing,
    /// Discovery bounds of its connections, by the route to each peer.
    paths: Arc<PathTransports>,
    local_addr: std::sync::RwLock<SocketAddr>,
    config: NodeConfig,
    closed: Arc<AtomicBool>,
    store: Arc<BlobStore>,
    /// The handlers of the protocols this node serves, by stream kind.
    protocols: Arc<Protocols>,
    /// Requests served before their session's handshake completed (0-RTT), on all sessions.
    early_requests: Arc<AtomicU64>,
    buffers: Arc<SocketBuffers>,
    incoming: Mutex<mpsc::Receiver<Session>>,
    /// Feeds `incoming`; also used to hand back sessions whose accept was not delivered.
    incoming_tx: mpsc::Sender<Session>,
    /// Incoming connections, counted against the limits.
    connections: Arc<Connections>,
    /// Wakes pending `accept` calls when the node closes.
    shutdown: tokio::sync::Notify,
    accept_task: tokio::task::JoinHandle<()>,
    /// Live sessions per peer, which transfers reuse.
    live: Arc<reuse::LiveSessions>,
    /// What peers say about this node's addresses, and dial-backs in flight.
    reach: Arc<crate::reach::Reach>,
    /// The relayed endpoint (over circuits) and the relay service.
    relayed: relayed::Relayed,
    /// Coordination: the peers this node is punching to, and introductions in flight.
    punch: Arc<punch::PunchState>,
    /// Where peers were seen (see [`crate::discovery`]).
    book: Arc<AddressBook>,
    /// The LAN's announcements, when the node takes part in mDNS.
    mdns: Option<Arc<crate::discovery::Mdns>>,
    /// The DHT client and its publisher, when the node takes part in the DHT.
    dht: Option<Arc<discovery::DhtPart>>,
}

/// The node's QUIC endpoint on a new UDP socket at `addr`, and the socket's buffers.
fn open_endpoint(
    addr: SocketAddr,
    config: &NodeConfig,
    crypto: &NodeCrypto,
) -> Result<(Endpoint, Arc<SocketBuffers>)> {
    let socket = bind_socket(addr)?;
    let buffers = Arc::new(SocketBuffers::new(&socket)?);
    let endpoint = Endpoint::new_with_abstract_socket(
        config.endpoint_config()?,
        Some(crypto.server.clone()),
        BatchSizedSocket::wrap(socket, config.udp_payload())?,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok((endpoint, buffers))
}

impl Node {
    /// Binds a UDP socket at `addr` and starts accepting sessions. Must run inside tokio.
    pub fn bind(identity: Identity, addr: SocketAddr, config: NodeConfig) -> Result<Self> {
        let mut config = config.resolved();
        relayed::announce(&mut config);
        let crypto = NodeCrypto::new(&identity, &config)?;
        let (endpoint, buffers) = open_endpoint(addr, &config, &crypto)?;
        let closed = Arc::new(AtomicBool::new(false));
        config.limits.validate()?;
        let store = Arc::new(BlobStore::new(&config.limits));
        let protocols = Arc::new(Protocols::default());
        crate::protocols::register_blobs(&protocols, store.clone())?;
        let early_requests = Arc::new(AtomicU64::new(0));
        let connections = Connections::new(config.limits.clone());
        let (tx, rx) = mpsc::channel(config.limits.max_queued_sessions);
        let live = reuse::LiveSessions::new(config.transfer_idle, identity.peer_id());
        let punch = punch::PunchState::new(&config);
        let book = Arc::new(AddressBook::in_state_dir(config.state_dir.as_deref()));
        let reach = reach::start(&identity, &endpoint, &mut config, &protocols)?;
        let settings = AcceptSettings {
            live: live.clone(),
            reach: reach.clone(),
            timeout: config.handshake_timeout,
            windows: config.windows,
            buffers: Some(buffers.clone()),
            max_queued_streams: config.limits.max_queued_streams,
            liveness: config.liveness,
            deliver: config.accept_sessions,
            configs: Arc::new(crypto.server_configs(&crypto.server, true)),
            protocols: protocols.clone(),
            early_requests: early_requests.clone(),
            closed: closed.clone(),
            route: crate::session::Route::Direct,
            circuits: None,
            punch: punch.clone(),
            book: book.clone(),
        };
        let listener = accept::Listener {
            identity: identity.clone(),
            hello: accept::listener_hello(&config)?,
            settings,
            connections: connections.clone(),
            tx: tx.clone(),
        };
        let relayed = relayed::Relayed::new(&config, &crypto, listener.clone())?;
        let mdns = discovery::start_mdns(&identity, &endpoint, &config)?;
        let dht = discovery::start_dht(&identity, &config)?;
        let accept_task = tokio::spawn(accept_loop(endpoint.clone(), listener));
        let node = Self {
            inner: Arc::new(NodeInner {
                identity,
                client: crypto.client,
                verifier: crypto.verifier,
                closing: crypto.closing,
                paths: crypto.paths,
                sessions: crypto.sessions,
                server_sessions: crypto.server_sessions,
                dials: AtomicU64::new(0),
                local_addr: std::sync::RwLock::new(endpoint.local_addr()?),
                endpoint: std::sync::RwLock::new(Some(endpoint)),
                config,
                closed,
                store,
                protocols,
                early_requests,
                buffers,
                incoming: Mutex::new(rx),
                incoming_tx: tx,
                connections,
                shutdown: tokio::sync::Notify::new(),
                accept_task,
                live,
                reach,
                relayed,
                punch,
                book,
                mdns,
                dht,
            }),
        };
        Self::started(node)
    }

    /// `node`, with the protocols that need the node itself registered.
    fn started(node: Self) -> Result<Self> {
        coordinator::register(&node)?;
        let relay = relayed::RelayStreams {
            node: Arc::downgrade(&node.inner),
        };
        node.register_protocol(i6p_core::kinds::STREAM_RELAY, relay)?;
        discovery::spawn_dht(&node);
        Ok(node)
    }

    /// This node's identity.
    pub fn peer_id(&self) -> PeerId {
        self.inner.identity.peer_id()
    }

    /// The socket's kernel (receive, send) buffer sizes; they grow with the links it carries.
    pub fn socket_buffers(&self) -> (usize, usize) {
        self.inner.buffers.sizes()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner
            .local_addr
            .read()
            .map(|a| *a)
            .map_err(|_| NetError::Io("local address lock poisoned".into()))
    }

    /// Moves the node to a new UDP socket bound at `addr` (a new port, or another local
    /// address). Sessions continue: QUIC validates the new path with each peer, and their
    /// streams and transfers go on over it. Returns the new address.
    pub fn rebind(&self, addr: SocketAddr) -> Result<SocketAddr> {
        self.ensure_open()?;
        let socket = bind_socket(addr)?;
        self.inner.buffers.replace(&socket)?;
        let endpoint = self.endpoint()?;
        endpoint.rebind_abstract(BatchSizedSocket::wrap(
            socket,
            self.inner.config.udp_payload(),
        )?)?;
        let local = endpoint.local_addr()?;
        if let Ok(mut a) = self.inner.local_addr.write() {
            *a = local;
        }
        self.inner.reach.reset(local);
        Ok(local)
    }

    /// The largest UDP payload this node's path MTU discovery tries and advertises to peers.
    pub fn max_udp_payload(&self) -> u16 {
        self.inner.config.udp_payload()
    }

    /// Requests this node served as early data (before their session's handshake completed).
    pub fn early_requests(&self) -> u64 {
        self.inner.early_requests.load(Ordering::Relaxed)
    }

    /// Addresses other nodes can use to reach this one.
    pub fn reachable_addrs(&self) -> Result<Vec<SocketAddr>> {
        Ok(addr::reachable_addrs(self.local_addr()?))
    }

    /// The dialer's HELLO; a coordinated dial names its route (see [`crate::session::route`]).
    fn hello(
        &self,
        transfer_only: bool,
        coordinated: Option<crate::session::Route>,
    ) -> Result<Hello> {
        let mut capabilities = self.inner.config.advertised_capabilities();
        if let Some(route) = coordinated {
            capabilities.truncate(i6p_core::hello::MAX_CAPABILITIES - 1);
            capabilities.push((COORDINATED.into(), route.as_str().into()));
        }
        Ok(Hello {
            transfer_only,
            version: PROTOCOL_VERSION,
            timestamp_ms: now_ms(),
            capabilities,
            listen_addrs: self
                .reachable_addrs()?
                .into_iter()
                .take(i6p_core::hello::MAX_LISTEN_ADDRS)
                .collect(),
        })
    }

    fn ensure_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(NetError::NodeClosed)
        } else {
            Ok(())
        }
    }

    /// Dials `addr`, requires the peer there to be `peer`, and runs the HELLO exchange.
    ///
    /// To a peer this node holds a resumption ticket for, the session is returned at once,
    /// in 0-RTT: PINGs and GETs sent on it travel as early data, the rest is held back by
    /// the peer until the handshake completes, and the HELLO exchange finishes in the
    /// background (`Session::wait_established`).
    pub async fn connect(&self, peer: PeerId, addr: SocketAddr) -> Result<Session> {
        let session = self.connect_with(peer, addr, false).await?;
        let _ = self.inner.live.add_app(&session);
        Ok(session)
    }

    /// [`Self::connect`]; a session for transfers only says so in its HELLO and is not
    /// listed as an application session (transfers list it themselves).
    pub(crate) async fn connect_with(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        transfer_only: bool,
    ) -> Result<Session> {
        self.dial_session(peer, addr, transfer_only, None).await
    }

    /// [`Self::connect_with`]; `coordinated` names the route of a dial made by a coordinated
    /// connection (punched, or reversal), which sends no ICMP probe: the probe comes from
    /// another port, so it opens no pinhole on the path this dial needs and a firewall's
    /// answer to it says nothing about that path.
    pub(crate) async fn dial_session(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        transfer_only: bool,
        coordinated: Option<crate::session::Route>,
    ) -> Result<Session> {
        let hello = self.hello(transfer_only, coordinated)?;
        let timeout = self.inner.config.handshake_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let late = move || no_session_in_time(addr, timeout);
        let known = self
            .inner
            .config
            .zero_rtt
            .then(|| self.inner.sessions.resumable(&peer))
            .flatten();
        // The probe goes out before the dial's first packet (see `probe`).
        let target = self.dial_target(peer, addr)?;
        let probe = match coordinated {
            Some(_) => crate::probe::Probe::Off,
            None => crate::probe::Probe::send(target),
        };
        let (connecting, dial) = self.start_dial(peer, addr)?;
        let connecting = match known {
            Some(key) => match connecting.into_0rtt() {
                Ok((conn, accepted)) => {
                    let dial = (dial, probe);
                    let early =
                        self.early_session(conn, accepted, peer, key, dial, hello, deadline);
                    return early.await.inspect(|s| {
                        self.inner.reach.link(s);
                        punch::mark(s, coordinated);
                    });
                }
                Err(connecting) => connecting,
            },
            None => connecting,
        };
        let dialing = self.finish_dial_retrying(connecting, peer, addr, dial, deadline);
        let dialing = crate::probe::unless_unreachable(probe, peer, addr, dialing);
        let (est, resumed) = tokio::time::timeout_at(deadline, dialing)
            .await
            .map_err(|_| late())??;
        let conn = est.conn.clone();
        let key = est.remote_key;
        let handshake = est.handshake_dialer(&self.inner.identity, &hello, resumed);
        let result = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(r) => r,
            Err(_) => Err(late()),
        };
        match &result {
            Ok(s) => {
                self.inner.sessions.remember_key(peer, key);
                self.inner.reach.link(s);
            }
            // Tell the listener why, with the same codes it would use.
            Err(e) => crate::closing::close(
                &conn,
                VarInt::from_u32(close_code_for(e)),
                e.to_string().as_bytes(),
            ),
        }
        result.inspect(|s| punch::mark(s, coordinated))
    }

    fn established(
        &self,
        conn: quinn::Connection,
        peer: PeerId,
        key: i6p_core::PublicKey,
    ) -> Established {
        Established {
            conn,
            remote_peer_id: peer,
            remote_key: key,
            role: Role::Dialer,
            node_closed: self.inner.closed.clone(),
            node_early_requests: self.inner.early_requests.clone(),
            protocols: self.inner.protocols.clone(),
            windows: self.inner.config.windows,
            buffers: Some(self.inner.buffers.clone()),
            max_queued_streams: self.inner.config.limits.max_queued_streams,
            book: Some(self.inner.book.clone()),
            liveness: self.inner.config.liveness,
            route: crate::session::Route::Direct,
        }
    }

    /// Dials and authenticates the peer but runs no HELLO and serves no control stream.
    /// The caller drives the control stream itself; conformance tests use this.
    pub async fn connect_raw(&self, peer: PeerId, addr: SocketAddr) -> Result<Session> {
        let timeout = self.inner.config.handshake_timeout;
        let (connecting, dial) = self.start_dial(peer, addr)?;
        let (est, _) = tokio::time::timeout(timeout, self.finish_dial(connecting, peer, dial))
            .await
            .map_err(|_| {
                NetError::Handshake(format!("no handshake with {addr} within {timeout:?}"))
            })??;
        Ok(Session::new(est, true, None))
    }

    /// Peers this node holds resumption tickets for (dialer side), and tickets it issued
    /// that are still unused (listener side).
    pub fn resumption_state(&self) -> (usize, usize) {
        (self.inner.sessions.len(), self.inner.server_sessions.len())
    }

    /// Where a dial to `peer` at `addr` goes, or why it cannot start.
    fn dial_target(&self, peer: PeerId, addr: SocketAddr) -> Result<SocketAddr> {
        self.ensure_open()?;
        if peer == self.peer_id() {
            return Err(NetError::OwnPeerId(peer));
        }
        self.dialable(addr)
    }

    /// On a dual-stack IPv6 socket, IPv4 destinations must be written as IPv4-mapped.
    fn dialable(&self, addr: SocketAddr) -> Result<SocketAddr> {
        crate::addr::dialable_from(self.local_addr()?, addr)
    }

    /// The next incoming session whose handshake completed.
    pub async fn accept(&self) -> Result<Session> {
        if !self.inner.config.accept_sessions {
            return Err(NetError::Config(
                "this node does not accept sessions (accept_sessions is off)".into(),
            ));
        }
        let shutdown = self.inner.shutdown.notified();
        tokio::pin!(shutdown);
        shutdown.as_mut().enable();
        self.ensure_open()?;
        let mut rx = self.inner.incoming.lock().await;
        tokio::select! {
            s = rx.recv() => s.ok_or(NetError::NodeClosed),
            () = shutdown => Err(NetError::NodeClosed),
        }
    }

    /// Hands back a session whose acceptance was not delivered (a cancelled `accept`), so
    /// the next `accept` returns it instead of the session being lost.
    pub fn return_session(&self, session: Session) {
        if let Err(mpsc::error::TrySendError::Full(session)) =
            self.inner.incoming_tx.try_send(session)
        {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    let tx = self.inner.incoming_tx.clone();
                    handle.spawn(async move {
                        let _ = tx.send(session).await;
                    });
                }
                Err(_) => tracing::debug!(?session, "accept backlog full; session dropped"),
            }
        }
    }

    /// Closes every session and the socket; pending and later calls fail with `NodeClosed`.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.accept_task.abort();
        self.inner.shutdown.notify_waiters();
        discovery::stop(&self.inner);
        self.inner.buffers.release();
        // The endpoint's close below ends them; the table must not keep them (or the socket).
        drop(self.inner.live.clear());
        self.inner.relayed.close();
        // Sessions nobody accepted hold the socket (QUIC connections share it): drop them.
        {
            let mut rx = self.inner.incoming.lock().await;
            rx.close();
            while rx.try_recv().is_ok() {}
        }
        let endpoint = self.inner.endpoint.write().ok().and_then(|mut e| e.take());
        if let Some(endpoint) = endpoint {
            self.inner.closing.set();
            endpoint.close(VarInt::from_u32(codes::NODE_CLOSED), b"node closed");
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        }
        // Saves the listener's tickets for the next run (a write and fsyncs).
        let tickets = self.inner.server_sessions.clone();
        let _ = tokio::task::spawn_blocking(move || tickets.close()).await;
        let book = self.inner.book.clone();
        let _ = tokio::task::spawn_blocking(move || book.save_now()).await;
        // Dropping the last handle lets the endpoint's driver finish and close the socket, a
        // moment later. Wait for that (briefly), so the address can be bound again at once.
        // Sessions the application still holds keep the socket open: give up after 200 ms.
        for attempt in 0..100 {
            let Ok(local) = self.local_addr() else { break };
            if bind_socket(local).is_ok() {
                break;
            }
            if attempt < 10 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    fn endpoint(&self) -> Result<Endpoint> {
        self.inner
            .endpoint
            .read()
            .ok()
            .and_then(|e| e.clone())
            .ok_or(NetError::NodeClosed)
    }

    /// The blobs this node serves.
    pub fn store(&self) -> &Arc<BlobStore> {
        &self.inner.store
    }

    /// The protocols this node serves, by stream kind.
    pub fn protocols(&self) -> &Arc<Protocols> {
        &self.inner.protocols
    }

    /// Serves the streams peers open with kind byte `kind` with `handler`, on every session,
    /// present and future. Fails if the kind already has a handler (application streams and
    /// blob transfers are registered from the start).
    pub fn register_protocol(&self, kind: u8, handler: impl ProtocolHandler) -> Result<()> {
        self.inner.protocols.register(kind, Arc::new(handler))
    }

    /// The node's resource policy.
    pub fn limits(&self) -> &Limits {
        &self.inner.config.limits
    }

    /// Incoming connections now (handshaking or established), and handshakes in progress.
    pub fn connection_counts(&self) -> (usize, usize) {
        self.inner.connections.counts()
    }

    /// How many incoming connections were admitted, asked to Retry and refused so far.
    pub fn admission(&self) -> crate::limits::AdmissionCounts {
        self.inner.connections.admission()
    }

    /// Blob requests being served now.
    pub fn requests_in_flight(&self) -> usize {
        self.inner.store.requests_in_flight()
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

/// A node's TLS and QUIC configurations, for its endpoints (main and relayed).
pub(super) struct NodeCrypto {
    client: quinn::ClientConfig,
    verifier: Arc<PeerVerifier>,
    /// Resumption tickets from the peers this node dials.
    sessions: Arc<PeerSessions>,
    /// Resumption tickets this node issues as a listener.
    server_sessions: Arc<ServerSessions>,
    server_tls: rustls::ServerConfig,
    server: quinn::ServerConfig,
    /// The switch of every connection this node makes (see `crate::closing`).
    closing: crate::closing::NodeClosing,
    /// Discovery bounds of its connections, by the route to each peer.
    paths: Arc<PathTransports>,
}

impl NodeCrypto {
    /// Per-connection server configurations made from `server` (see `ServerConfigs`).
    /// `by_route`: discovery bounded by each peer's route (not on a relayed endpoint, which
    /// does not discover).
    fn server_configs(&self, server: &quinn::ServerConfig, by_route: bool) -> ServerConfigs {
        let tls = self.server_tls.clone();
        let paths = by_route.then(|| self.paths.clone());
        ServerConfigs::new(tls, server.clone(), self.server_sessions.clone(), paths)
    }

    fn new(identity: &Identity, config: &NodeConfig) -> Result<Self> {
        let tls = TlsIdentity::new(identity)?;
        let closing = crate::closing::NodeClosing::default();
        let transport = Arc::new(transport_config(config, &closing)?);
        let paths = {
            let bound = config.udp_payload();
            let (config, closing) = (config.clone(), closing.clone());
            let build = move || transport_config(&config, &closing);
            Arc::new(PathTransports::new(bound, Box::new(build)))
        };
        let server_sessions = Arc::new(match &config.state_dir {
            Some(dir) => ServerSessions::persistent(tickets_path(dir, &identity.peer_id())?),
            None => ServerSessions::in_memory(),
        });
        let sessions = Arc::new(PeerSessions::default());
        let (client, verifier) = client_config(&tls, sessions.clone(), transport.clone())?;
        let server_tls = tls::server_crypto(&tls, server_sessions.clone())?;
        let server_crypto = QuicServerConfig::try_from(server_tls.clone())
            .map_err(|e| NetError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport);
        Ok(Self {
            client,
            verifier,
            sessions,
            server_sessions,
            server_tls,
            server,
            closing,
            paths,
        })
    }
}

/// The one client configuration of a node's dials, and the verifier that reports on them.
fn client_config(
    tls: &TlsIdentity,
    sessions: Arc<PeerSessions>,
    transport: Arc<quinn::TransportConfig>,
) -> Result<(quinn::ClientConfig, Arc<PeerVerifier>)> {
    let (client_crypto, verifier) = tls::client_crypto(tls, sessions)?;
    let client_crypto =
        QuicClientConfig::try_from(client_crypto).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    Ok((client, verifier))
}

/// A dial that reached no session before its handshake timeout.
fn no_session_in_time(addr: SocketAddr, timeout: Duration) -> NetError {
    NetError::Handshake(format!("no session with {addr} within {timeout:?}"))
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.buffers.release();
        if let Some(endpoint) = self.endpoint.get_mut().ok().and_then(|e| e.take()) {
            self.closing.set();
            endpoint.close(VarInt::from_u32(codes::NODE_CLOSED), b"node closed");
        }
    }
}

fn handshake_error(e: &ConnectionError) -> NetError {
    match e {
        ConnectionError::TimedOut => NetError::Handshake("peer did not answer (timed out)".into()),
        ConnectionError::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            NetError::Busy(
                "the peer refused the connection (it is at its limit of connections or handshakes)"
                    .into(),
            )
        }
        other => NetError::Handshake(other.to_string()),
    }
}

/// The close code that reports a failed HELLO exchange to the peer.
fn close_code_for(e: &NetError) -> u32 {
    match e {
        NetError::Handshake(_) => codes::HANDSHAKE_TIMEOUT,
        NetError::Core(i6p_core::CoreError::UnsupportedVersion(_)) => codes::UNSUPPORTED_VERSION,
        _ => codes::PROTOCOL_ERROR,
    }
}
