//! `Node`: one socket, one identity; dials and accepts sessions.

use crate::errors::{invalid_argument, to_py};
use crate::handoff::AcceptedSession;
use crate::identity::Identity;
use crate::limits::Limits;
use crate::options::{int_in, FetchOptions};
use crate::peer_id::PeerId;
use crate::public_key::PublicKey;
use crate::runtime::future;
use crate::session::{positive_seconds, Session};
use crate::ticket::Ticket;
use crate::transfer;
use i6p_net::addr::{format_addr, parse_addr};
use i6p_net::transport::{Congestion, Windows};
use i6p_net::NodeConfig;
use pyo3::prelude::*;
use std::time::Duration;

/// A running node.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct Node {
    inner: i6p_net::Node,
    identity: i6p_core::Identity,
}

/// A liveness period from Python: positive and at least the engine's minimum.
fn liveness_period(value: f64) -> PyResult<Duration> {
    let period = positive_seconds("liveness", value)?;
    if period < i6p_net::session::MIN_LIVENESS {
        return Err(invalid_argument(format!(
            "liveness must be at least {} s",
            i6p_net::session::MIN_LIVENESS.as_secs_f64()
        )));
    }
    Ok(period)
}

/// Window settings from Python: `None`/"auto" (auto-tuned up to `max_window`), "quinn"
/// (quinn's defaults) or a fixed size in bytes, as a decimal string.
pub(crate) fn windows(window: Option<&str>, max_window: Option<u64>) -> PyResult<Windows> {
    let Windows::Auto { initial, max } = Windows::default() else {
        return Err(invalid_argument("no default windows"));
    };
    let max = max_window.unwrap_or(max);
    match window.unwrap_or("auto") {
        "auto" => Ok(Windows::Auto {
            initial: initial.min(max),
            max,
        }),
        "quinn" => Ok(Windows::QuinnDefault),
        fixed => fixed
            .parse()
            .map(Windows::Fixed)
            .map_err(|_| invalid_argument("window must be 'auto', 'quinn' or a size in bytes")),
    }
}

impl Node {
    /// Binds a node with `config` (already checked); an awaitable for it.
    pub(crate) fn bind_with(
        py: Python<'_>,
        identity: i6p_core::Identity,
        addr: std::net::SocketAddr,
        config: NodeConfig,
    ) -> PyResult<Bound<'_, PyAny>> {
        future(py, async move {
            let inner = i6p_net::Node::bind(identity.clone(), addr, config).map_err(to_py)?;
            Ok(Node { inner, identity })
        })
    }

    /// The engine's node.
    pub(crate) fn engine(&self) -> &i6p_net::Node {
        &self.inner
    }

    /// This node's identity key (signs HELLOs).
    pub(crate) fn identity(&self) -> &i6p_core::Identity {
        &self.identity
    }
}

#[pymethods]
impl Node {
    /// Binds a node; returns an awaitable for it.
    #[staticmethod]
    #[pyo3(signature = (identity, addr, capabilities=None, *, handshake_timeout=10.0, idle_timeout=30.0, keep_alive=5.0, liveness=None, max_streams=None, congestion="cubic", window=None, max_window=None, zero_rtt=true, state_dir=None, limits=None, accept_sessions=true, relay=false, coordinate=true, dial_back=true, upgrade=true, max_udp_payload=None, mdns=false, dht=false, dht_bootstrap=Vec::new(), publish_addrs=false, dht_contacts=Vec::new(), dht_timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn bind<'py>(
        py: Python<'py>,
        identity: PyRef<'py, Identity>,
        addr: &str,
        capabilities: Option<Vec<(String, String)>>,
        handshake_timeout: f64,
        idle_timeout: f64,
        keep_alive: f64,
        liveness: Option<f64>,
        max_streams: Option<&Bound<'py, PyAny>>,
        congestion: &str,
        window: Option<&str>,
        max_window: Option<&Bound<'py, PyAny>>,
        zero_rtt: bool,
        state_dir: Option<std::path::PathBuf>,
        limits: Option<PyRef<'py, Limits>>,
        accept_sessions: bool,
        relay: bool,
        coordinate: bool,
        dial_back: bool,
        upgrade: bool,
        max_udp_payload: Option<&Bound<'py, PyAny>>,
        mdns: bool,
        dht: bool,
        dht_bootstrap: Vec<String>,
        publish_addrs: bool,
        dht_contacts: Vec<PyRef<'py, crate::contact::Contact>>,
        dht_timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let addr = parse_addr(addr).map_err(to_py)?;
        let config = NodeConfig {
            capabilities: capabilities.unwrap_or_default(),
            handshake_timeout: positive_seconds("handshake_timeout", handshake_timeout)?,
            idle_timeout: positive_seconds("idle_timeout", idle_timeout)?,
            keep_alive: positive_seconds("keep_alive", keep_alive)?,
            liveness: liveness.map(liveness_period).transpose()?,
            max_streams: match max_streams {
                Some(n) => int_in("max_streams", n, 0, u32::MAX.into())? as u32,
                None => NodeConfig::default().max_streams,
            },
            congestion: Congestion::parse(congestion).map_err(to_py)?,
            windows: windows(
                window,
                max_window
                    .map(|w| int_in("max_window", w, 0, u64::MAX))
                    .transpose()?,
            )?,
            zero_rtt,
            state_dir,
            limits: limits.map(|l| l.0.clone()).unwrap_or_default(),
            accept_sessions,
            relay,
            coordinate,
            dial_back,
            upgrade,
            mdns,
            dht,
            dht_bootstrap,
            dht_request_timeout: dht_timeout
                .map(|t| positive_seconds("dht_timeout", t))
                .transpose()?,
            dht_contacts: record_contacts(&dht_contacts)?,
            publish_addrs,
            max_udp_payload: udp_payload_setting(max_udp_payload)?,
            ..NodeConfig::default()
        };
        config.windows.validate().map_err(to_py)?;
        let hello = i6p_core::Hello {
            version: i6p_core::PROTOCOL_VERSION,
            timestamp_ms: 0,
            capabilities: config.capabilities.clone(),
            listen_addrs: Vec::new(),
            transfer_only: false,
        };
        hello
            .validate()
            .map_err(|e| invalid_argument(e.to_string()))?;
        Node::bind_with(py, identity.0.clone(), addr, config)
    }

    /// This node's PeerId.
    #[getter]
    fn peer_id(&self) -> PeerId {
        PeerId(self.inner.peer_id())
    }

    /// The bound socket address, e.g. `[::]:4433`.
    #[getter]
    fn local_addr(&self) -> PyResult<String> {
        self.inner
            .local_addr()
            .map(|a| format_addr(&a))
            .map_err(to_py)
    }

    /// Addresses other nodes can dial, most widely reachable first.
    fn reachable_addrs(&self) -> PyResult<Vec<String>> {
        Ok(self
            .inner
            .reachable_addrs()
            .map_err(to_py)?
            .iter()
            .map(format_addr)
            .collect())
    }

    /// Connects to `peer_id`: at `addrs` (none: those the address book knows; one: a plain
    /// dial; several: a few at a time), then,
    /// when `via` (a session) or `via_peer` (the PeerId of a live session) names a
    /// coordinator, through it (`Node::connect_to`).
    #[pyo3(signature = (peer_id, addrs, via=None, via_peer=None, key=None))]
    fn connect<'py>(
        &self,
        py: Python<'py>,
        peer_id: PyRef<'py, PeerId>,
        addrs: Vec<String>,
        via: Option<PyRef<'py, Session>>,
        via_peer: Option<PyRef<'py, PeerId>>,
        key: Option<PyRef<'py, PublicKey>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = key.map(|k| k.0);
        self.open()?;
        let addrs = addrs
            .iter()
            .map(|a| parse_addr(a))
            .collect::<i6p_net::Result<Vec<_>>>()
            .map_err(to_py)?;
        let via = match (via, via_peer) {
            (Some(s), _) => Some(s.engine().clone()),
            (None, Some(p)) => Some(self.inner.live_session(&p.0).ok_or_else(|| {
                to_py(i6p_net::NetError::Config(format!(
                    "no live session with {} to coordinate through",
                    p.0.short()
                )))
            })?),
            (None, None) => None,
        };
        let (node, peer, identity) = (self.inner.clone(), peer_id.0, self.identity.clone());
        future(py, async move {
            let s = match (addrs.as_slice(), via) {
                ([], None) => match key {
                    Some(key) => node.connect_by_key(key).await,
                    None => node.connect_by_id(peer).await,
                },
                ([addr], None) => node.connect(peer, *addr).await,
                (_, via) => node.connect_to(peer, &addrs, via.as_ref()).await,
            };
            Ok(Session::new(s.map_err(to_py)?, identity))
        })
    }

    /// Records `addrs` for `peer_id` in the address book; returns how many were kept.
    fn add_addrs(&self, peer_id: PyRef<'_, PeerId>, addrs: Vec<String>) -> PyResult<usize> {
        let addrs = addrs
            .iter()
            .map(|a| parse_addr(a))
            .collect::<i6p_net::Result<Vec<_>>>()
            .map_err(to_py)?;
        Ok(self.inner.add_addrs(peer_id.0, &addrs))
    }

    /// What the address book knows of `peer_id`, most recently seen first.
    fn known_addrs(&self, peer_id: PyRef<'_, PeerId>) -> Vec<String> {
        self.inner
            .known_addrs(&peer_id.0)
            .iter()
            .map(format_addr)
            .collect()
    }

    /// What the DHT holds for `key`: (seq, record as a dict) or None; fails when the node
    /// does not take part in the DHT.
    fn dht_lookup<'py>(
        &self,
        py: Python<'py>,
        key: PyRef<'py, PublicKey>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.open()?;
        let (node, key) = (self.inner.clone(), key.0);
        future(py, async move {
            let found = node.dht_lookup(&key).await.map_err(to_py)?;
            Ok(found.map(crate::dht::DhtRecord::from))
        })
    }

    /// Publishes this node's DHT record now; returns its seq.
    fn dht_publish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.open()?;
        let node = self.inner.clone();
        future(py, async move { node.dht_publish().await.map_err(to_py) })
    }

    /// Replaces the contacts this node's DHT record names; publishes it again at once.
    fn set_dht_contacts(&self, contacts: Vec<PyRef<'_, crate::contact::Contact>>) -> PyResult<()> {
        self.open()?;
        self.inner
            .set_dht_contacts(record_contacts(&contacts)?)
            .map_err(to_py)
    }

    /// The seq of the last record this node published in the DHT (None before the first).
    #[getter]
    fn dht_published(&self) -> Option<i64> {
        self.inner.dht_published()
    }

    /// Where the LAN heard `peer_id` announce itself by mDNS (empty without mDNS).
    fn mdns_addrs(&self, peer_id: PyRef<'_, PeerId>) -> Vec<String> {
        self.inner
            .mdns_addrs(&peer_id.0)
            .iter()
            .map(format_addr)
            .collect()
    }

    /// Forgets what the address book knows of `peer_id`; true if it knew something.
    fn forget_addrs(&self, peer_id: PyRef<'_, PeerId>) -> bool {
        self.inner.forget_addrs(&peer_id.0)
    }

    /// Connects to `peer_id` through a relay: `relay` is a session with a node that relays
    /// and has a session with the peer.
    fn connect_relayed<'py>(
        &self,
        py: Python<'py>,
        peer_id: PyRef<'py, PeerId>,
        relay: PyRef<'py, Session>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.open()?;
        let (node, peer, identity) = (self.inner.clone(), peer_id.0, self.identity.clone());
        let relay = relay.engine();
        future(py, async move {
            let s = node.connect_relayed(peer, &relay).await.map_err(to_py)?;
            Ok(Session::new(s, identity))
        })
    }

    /// Tries once to move a relayed session this node dialed to a direct path, through its
    /// relay as coordinator; returns the route the session has now.
    fn upgrade<'py>(
        &self,
        py: Python<'py>,
        session: PyRef<'py, Session>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.open()?;
        let (node, session) = (self.inner.clone(), session.engine());
        future(py, async move {
            let now = node.upgrade_session(&session).await.map_err(to_py)?;
            Ok(now.route().as_str())
        })
    }

    /// (relay circuits carried now, bytes they copied so far, this node's relayed circuits).
    #[getter]
    fn relay_stats(&self) -> (usize, u64, usize) {
        let (circuits, bytes) = self.inner.relay_stats();
        (circuits, bytes, self.inner.relayed_circuits())
    }

    /// The next incoming session.
    fn accept<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.open()?;
        let (node, identity) = (self.inner.clone(), self.identity.clone());
        future(py, async move {
            let session = node.accept().await.map_err(to_py)?;
            Ok(AcceptedSession {
                session: Some(session),
                node,
                identity,
            })
        })
    }

    /// The node's resource policy.
    #[getter]
    fn limits(&self) -> Limits {
        Limits(self.inner.limits().clone())
    }

    /// (incoming connections, handshakes in progress, blob requests being served) now, then
    /// (admitted, retried, refused) incoming connections so far.
    #[getter]
    fn load(&self) -> (usize, usize, usize, u64, u64, u64) {
        let (connections, handshakes) = self.inner.connection_counts();
        let a = self.inner.admission();
        let requests = self.inner.requests_in_flight();
        (
            connections,
            handshakes,
            requests,
            a.admitted,
            a.retried,
            a.refused,
        )
    }

    /// Closes all sessions and the socket.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let node = self.inner.clone();
        future(py, async move {
            node.close().await;
            Ok(())
        })
    }

    /// Hashes and serves a file; awaitable of (hash hex, size).
    fn add_path<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.open()?;
        transfer::add_path(py, self.inner.clone(), path)
    }

    /// Serves a directory as a collection; awaitable of (listing hash hex, listing size,
    /// path, files, bytes).
    fn add_dir<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.open()?;
        crate::collection::add_dir(py, self.inner.clone(), path)
    }

    /// Stops serving a blob; True if it was served.
    fn remove(&self, hash: &str) -> PyResult<bool> {
        self.open()?;
        Ok(self.inner.store().remove(&crate::ticket::parse_hash(hash)?))
    }

    /// Restricts who may fetch (None: anyone).
    fn set_allowed_peers(&self, peers: Option<Vec<PyRef<'_, PeerId>>>) -> PyResult<()> {
        self.open()?;
        self.inner
            .store()
            .set_allowed(peers.map(|p| p.iter().map(|id| id.0).collect()));
        Ok(())
    }

    /// A ticket for a served blob (a collection's listing if `collection`), listing this
    /// node's reachable addresses, or (`by_key`) naming it by its public key alone.
    #[pyo3(signature = (hash, collection=false, by_key=false))]
    fn ticket(&self, hash: &str, collection: bool, by_key: bool) -> PyResult<Ticket> {
        self.open()?;
        let hash = crate::ticket::parse_hash(hash)?;
        let blob = self
            .inner
            .store()
            .get(&hash)
            .ok_or_else(|| invalid_argument("this node does not serve that blob"))?;
        if by_key {
            let key = self.identity.public_key();
            let ticket = i6p_core::ticket::Ticket::by_key(key, hash, blob.size(), collection);
            return Ok(Ticket(ticket));
        }
        let addrs = self.inner.reachable_addrs().map_err(to_py)?;
        Ok(Ticket(i6p_core::ticket::Ticket {
            peer_id: self.inner.peer_id(),
            addrs: addrs
                .into_iter()
                .take(i6p_core::ticket::MAX_TICKET_ADDRS)
                .collect(),
            hash,
            size: blob.size(),
            collection,
            rendezvous: Vec::new(),
            key: None,
        }))
    }

    /// The most distinct bytes of a blob any one peer acknowledged receiving.
    fn served_bytes(&self, hash: &str) -> PyResult<u64> {
        self.open()?;
        Ok(self
            .inner
            .store()
            .max_served_bytes(&crate::ticket::parse_hash(hash)?))
    }

    /// Moves the node to a new socket bound at `addr`; sessions continue. Returns the address.
    fn rebind(&self, addr: &str) -> PyResult<String> {
        self.open()?;
        let addr = parse_addr(addr).map_err(to_py)?;
        // quinn registers the new socket with the runtime's reactor.
        let _runtime = crate::runtime::handle().enter();
        let local = self.inner.rebind(addr).map_err(to_py)?;
        Ok(i6p_net::addr::format_addr(&local))
    }

    /// This node's addresses as its peers observe them, the most reported first.
    fn reachability(&self) -> Vec<crate::reach::Reachability> {
        self.inner
            .reachability()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// True when an address two peers agree on was reached by their dial-backs.
    fn is_public(&self) -> bool {
        self.inner.is_public()
    }

    /// The largest UDP payload this node's path MTU discovery tries and advertises.
    #[getter]
    fn max_udp_payload(&self) -> u16 {
        self.inner.max_udp_payload()
    }

    /// Requests this node served as 0-RTT early data, over all its sessions.
    #[getter]
    fn early_requests(&self) -> u64 {
        self.inner.early_requests()
    }

    /// (peers this node holds resumption tickets for, unused tickets it issued).
    #[getter]
    fn resumption_state(&self) -> (usize, usize) {
        self.inner.resumption_state()
    }

    /// The socket's kernel (receive, send) buffer sizes in bytes.
    fn socket_buffers(&self) -> (usize, usize) {
        self.inner.socket_buffers()
    }

    /// Acknowledged bytes of a blob per peer: [(peer, bytes)].
    fn served(&self, hash: &str) -> PyResult<Vec<(PeerId, u64)>> {
        self.open()?;
        let served = self.inner.store().served(&crate::ticket::parse_hash(hash)?);
        Ok(served.into_iter().map(|(p, b)| (PeerId(p), b)).collect())
    }

    /// Starts a verified, resumable fetch into `dest` from one provider or several; returns
    /// (awaitable of a `FetchResult`, progress).
    #[pyo3(signature = (tickets, dest, options=None))]
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        tickets: Vec<PyRef<'py, Ticket>>,
        dest: std::path::PathBuf,
        options: Option<PyRef<'py, FetchOptions>>,
    ) -> PyResult<(Bound<'py, PyAny>, transfer::FetchProgress)> {
        self.open()?;
        let options = match options {
            Some(o) => o.engine(),
            None => i6p_net::fetch::FetchOptions::default(),
        };
        let tickets = tickets.iter().map(|t| (*t).clone()).collect();
        transfer::fetch(py, self.inner.clone(), tickets, dest, options)
    }

    /// Verified bytes `offset..offset+length` of a blob, fetching only the groups they span
    /// (of `group_size` bytes; by default the smallest, so that little is fetched in vain).
    #[pyo3(signature = (ticket, offset, length, *, group_size=None))]
    fn read_range<'py>(
        &self,
        py: Python<'py>,
        ticket: PyRef<'py, Ticket>,
        offset: &Bound<'py, PyAny>,
        length: &Bound<'py, PyAny>,
        group_size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.open()?;
        let group_log = match group_size {
            Some(size) => crate::options::group_log(size)?,
            None => i6p_core::tree::MIN_GROUP_LOG,
        };
        transfer::read_range(
            py,
            self.inner.clone(),
            ticket.clone(),
            (offset, length),
            group_log,
        )
    }

    /// True once closed.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn __repr__(&self) -> String {
        let addr = self
            .inner
            .local_addr()
            .map(|a| format_addr(&a))
            .unwrap_or_else(|_| "?".into());
        format!(
            "Node(peer_id={}, addr={addr})",
            self.inner.peer_id().short()
        )
    }
}

impl Node {
    /// `NodeClosed` once the node is closed: every operation of a closed node raises it
    /// (nothing is served or handed out: a ticket to it would name a dead address); only
    /// what describes the node (`peer_id`, `limits`, `load`...) still answers.
    fn open(&self) -> PyResult<()> {
        if self.inner.is_closed() {
            Err(to_py(i6p_net::NetError::NodeClosed))
        } else {
            Ok(())
        }
    }
}

/// A `max_udp_payload` argument in bytes: QUIC's limits (1,200..=65,527 bytes).
pub(crate) fn udp_payload(value: &Bound<'_, PyAny>) -> PyResult<u16> {
    let (lo, hi) = (i6p_net::mtu::MIN_PAYLOAD, i6p_net::mtu::MAX_PAYLOAD);
    Ok(int_in("max_udp_payload", value, lo.into(), hi.into())? as u16)
}

/// The contacts a DHT record may name: at most `MAX_RECORD_CONTACTS`, refused beyond.
fn record_contacts(
    contacts: &[PyRef<'_, crate::contact::Contact>],
) -> PyResult<Vec<i6p_core::contact::Contact>> {
    let most = i6p_core::dht_record::MAX_RECORD_CONTACTS;
    if contacts.len() > most {
        return Err(invalid_argument(format!(
            "{} DHT record contacts (at most {most})",
            contacts.len()
        )));
    }
    Ok(contacts.iter().map(|c| c.0.without_via()).collect())
}

/// `max_udp_payload`: None for the default, "auto" for the host's largest MTU, or a size.
fn udp_payload_setting(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u16>> {
    Ok(match value {
        None => NodeConfig::default().max_udp_payload,
        Some(v) if v.extract::<String>().is_ok_and(|s| s == "auto") => None,
        Some(v) => Some(udp_payload(v)?),
    })
}
