//! A node's relayed sessions: its second QUIC endpoint, over the virtual socket of its
//! circuits (made on first use), `connect_relayed`, and the handler of relay streams, which
//! serves circuits (when the node opted in to relay) and takes circuits offered to it.
//!
//! The relayed endpoint uses the node's own client configuration and verifier (the PeerId is
//! checked in TLS end to end, the relay cannot stand in for the target) and its listener runs
//! the same accept path as the main endpoint: admission, handshake, HELLO, `accept`. Its
//! transport differs only where the circuit allows: no MTU discovery, a large fixed MTU (the
//! circuit is a reliable stream, so big packets cost nothing and save per-packet work).

use super::accept::{accept_loop, Listener};
use super::{close_code_for, Node, NodeCrypto, NodeInner};
use crate::control::read_frame;
use crate::error::{NetError, Result};
use crate::relay::circuit;
use crate::relay::serve::{self, RelayService};
use crate::relay::socket::{Circuits, VirtualSocket};
use crate::session::stream::{RecvStream, SendStream};
use crate::session::{HandlerFuture, ProtocolHandler, Route, Session};
use i6p_core::codes;
use i6p_core::relay::{
    CircuitPeer, CircuitRefused, RefusalReason, FRAME_CIRCUIT, FRAME_INCOMING, MAX_CIRCUIT_PACKET,
    STREAM_RELAY,
};
use i6p_core::PeerId;
use quinn::{Endpoint, VarInt};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a peer may take to send the first frame of a relay stream.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's relayed endpoint and what makes it, and its relay service.
pub(super) struct Relayed {
    circuits: Arc<Circuits>,
    client: quinn::ClientConfig,
    /// Until the endpoint is made: what it is made of; then the endpoint.
    state: Mutex<State>,
    service: Arc<RelayService>,
}

enum State {
    Waiting(Box<(quinn::ServerConfig, Listener, VirtualSocket)>),
    Running(Endpoint),
    Closed,
}

/// Adds the relay capability to the HELLO of a node that relays.
pub(super) fn announce(config: &mut super::NodeConfig) {
    if config.relay {
        let (k, v) = crate::relay::RELAY_CAPABILITY;
        config.capabilities.push((k.into(), v.into()));
    }
}

impl Relayed {
    /// The relayed side of a node with `config`, with the node's TLS configurations and
    /// its main endpoint's listener (whose settings it adapts).
    pub(super) fn new(
        config: &super::NodeConfig,
        crypto: &NodeCrypto,
        mut listener: Listener,
    ) -> Result<Self> {
        let transport = Arc::new(relayed_transport(config, &crypto.closing)?);
        let mut client = crypto.client.clone();
        client.transport_config(transport.clone());
        let mut server = crypto.server.clone();
        server.transport_config(transport);
        let (circuits, socket) = Circuits::new(config.limits.max_relayed_sessions);
        let settings = &mut listener.settings;
        settings.circuits = Some(circuits.clone());
        settings.buffers = None;
        settings.route = Route::Relayed;
        settings.configs = Arc::new(crypto.server_configs(&server, false));
        Ok(Self {
            circuits,
            client,
            state: Mutex::new(State::Waiting(Box::new((server, listener, socket)))),
            service: RelayService::new(config.limits.clone(), config.relay_testing.clone()),
        })
    }

    /// The relayed endpoint, made (and its listener started) on first use.
    fn endpoint(&self) -> Result<Endpoint> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| NetError::Io("relayed endpoint lock poisoned".into()))?;
        let setup = match std::mem::replace(&mut *state, State::Closed) {
            State::Running(endpoint) => {
                *state = State::Running(endpoint.clone());
                return Ok(endpoint);
            }
            State::Closed => return Err(NetError::NodeClosed),
            State::Waiting(waiting) => *waiting,
        };
        let (server, listener, socket) = setup;
        let socket: Arc<VirtualSocket> = Arc::new(socket);
        // quinn's default payload bound (an Ethernet MTU) would drop the circuit's packets.
        let mut config = quinn::EndpointConfig::default();
        config
            .max_udp_payload_size(MAX_CIRCUIT_PACKET as u16)
            .map_err(|e| NetError::Config(format!("relayed endpoint: {e}")))?;
        let endpoint = Endpoint::new_with_abstract_socket(
            config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        tokio::spawn(accept_loop(endpoint.clone(), listener));
        *state = State::Running(endpoint.clone());
        Ok(endpoint)
    }

    /// Closes the relayed endpoint and forgets every circuit (the node is closing).
    pub(super) fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            if let State::Running(endpoint) = std::mem::replace(&mut *state, State::Closed) {
                endpoint.close(VarInt::from_u32(codes::NODE_CLOSED), b"node closed");
            }
        }
        self.circuits.clear();
    }
}

/// The inner connections' transport: the node's, with a fixed MTU as large as a circuit
/// packet and no MTU discovery (see the module's doc).
fn relayed_transport(
    config: &super::NodeConfig,
    closing: &crate::closing::NodeClosing,
) -> Result<quinn::TransportConfig> {
    let mut t = super::transport_config(config, closing)?;
    let mtu = MAX_CIRCUIT_PACKET as u16;
    t.mtu_discovery_config(None);
    t.initial_mtu(mtu);
    t.min_mtu(mtu);
    // The controllers' initial window (14720 bytes) is less than one such packet, which
    // would block even the first Initial: start with ten packets, as with a normal MTU.
    let window = 10 * u64::from(mtu);
    use crate::transport::Congestion;
    use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
    let factory: Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> = match config
        .congestion
    {
        Congestion::Cubic => Arc::new(CubicConfig::default().initial_window(window).clone()),
        Congestion::Bbr => Arc::new(BbrConfig::default().initial_window(window).clone()),
        Congestion::NewReno => Arc::new(NewRenoConfig::default().initial_window(window).clone()),
        Congestion::Bounded => Arc::new(crate::congestion::BoundedFactory::new(
            BbrConfig::default().initial_window(window).clone(),
        )),
    };
    t.congestion_controller_factory(Arc::new(crate::closing::CloseAwareFactory::new(
        factory, closing,
    )));
    Ok(t)
}

impl Node {
    /// Connects to `peer` through `relay` (a session with a node that relays and has a
    /// session with `peer`): a circuit through it, then the same handshake as a direct dial
    /// over the circuit, end to end. The session's route is [`Route::Relayed`] on both sides.
    ///
    /// Fails with [`NetError::RelayRefused`] (which reason) when the relay or the target
    /// refuses, [`NetError::PeerIdMismatch`] when the other end of the circuit is not `peer`.
    pub async fn connect_relayed(&self, peer: PeerId, relay: &Session) -> Result<Session> {
        self.connect_relayed_as(peer, relay, false).await
    }

    /// [`Self::connect_relayed`]; with `transfers`, the session is for blob transfers only
    /// (the HELLO says so: the peer never hands it to its application).
    pub(super) async fn connect_relayed_as(
        &self,
        peer: PeerId,
        relay: &Session,
        transfers: bool,
    ) -> Result<Session> {
        self.ensure_open()?;
        if peer == self.peer_id() {
            return Err(NetError::OwnPeerId(peer));
        }
        let timeout = self.inner.config.handshake_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let late = || {
            NetError::Handshake(format!(
                "no relayed session with {} through {} within {timeout:?}",
                peer.short(),
                relay.remote_peer_id().short()
            ))
        };
        let relayed = &self.inner.relayed;
        let endpoint = relayed.endpoint()?;
        if !relayed.circuits.has_room() {
            return Err(too_many_relayed());
        }
        let (send, recv) = relay.open_protocol_stream(STREAM_RELAY).await?;
        let (mut send, mut recv) = (send.into_inner(), recv.into_inner());
        tokio::time::timeout_at(deadline, circuit::request(&mut send, &mut recv, peer))
            .await
            .map_err(|_| late())??;
        let (addr, out) = relayed.circuits.open().ok_or_else(too_many_relayed)?;
        let hold = relay.transfer_hold();
        circuit::run(relayed.circuits.clone(), addr, out, (send, recv), hold);
        let dial = self.dial_relayed(peer, addr, &endpoint, transfers);
        let result = tokio::time::timeout_at(deadline, dial)
            .await
            .unwrap_or_else(|_| Err(late()));
        match result {
            Ok(session) => {
                circuit::attach(&relayed.circuits, addr, &session);
                let _ = self.inner.live.add_app(&session);
                self.keep_upgrading(&session, relay);
                Ok(session)
            }
            Err(e) => {
                relayed.circuits.remove(addr);
                Err(e)
            }
        }
    }

    /// The relay step of [`Self::connect_to`]: a relayed session through `via` when the
    /// coordinator relays (its HELLO says ("relay", "1")), else None.
    pub(super) async fn connect_through_relay(
        &self,
        peer: PeerId,
        via: &Session,
        transfers: bool,
    ) -> Option<Result<Session>> {
        let relays = via
            .remote_capabilities()
            .iter()
            .any(|(k, v)| k == "relay" && v == "1");
        if !relays {
            return None;
        }
        Some(self.connect_relayed_as(peer, via, transfers).await)
    }

    /// The QUIC + TLS handshake and the HELLO exchange over the circuit at `addr`.
    async fn dial_relayed(
        &self,
        peer: PeerId,
        addr: std::net::SocketAddr,
        endpoint: &Endpoint,
        transfers: bool,
    ) -> Result<Session> {
        let dial = self.inner.dials.fetch_add(1, Ordering::Relaxed);
        let name = crate::resume::dial_name(&peer, dial);
        let connecting = endpoint
            .connect_with(self.inner.relayed.client.clone(), addr, &name)
            .map_err(|e| NetError::Handshake(format!("cannot dial over the circuit: {e}")))?;
        let (mut est, resumed) = self.finish_dial(connecting, peer, dial).await?;
        est.route = Route::Relayed;
        est.buffers = None;
        let (conn, key) = (est.conn.clone(), est.remote_key);
        let hello = self.hello(transfers, None)?;
        let result = est
            .handshake_dialer(&self.inner.identity, &hello, resumed)
            .await;
        match &result {
            Ok(_) => self.inner.sessions.remember_key(peer, key),
            Err(e) => crate::closing::close(
                &conn,
                VarInt::from_u32(close_code_for(e)),
                e.to_string().as_bytes(),
            ),
        }
        result
    }

    /// Relay circuits this node carries now, and the bytes its circuits copied so far.
    pub fn relay_stats(&self) -> (usize, u64) {
        self.inner.relayed.service.stats()
    }

    /// Circuits this node is an end of now (its relayed sessions, and those being made).
    pub fn relayed_circuits(&self) -> usize {
        self.inner.relayed.circuits.len()
    }

    /// Serves one relay stream a peer opened: a CIRCUIT request (relaying) or an INCOMING
    /// offer (a circuit to this node).
    async fn serve_relay_stream(&self, session: Session, send: SendStream, recv: RecvStream) {
        let (mut send, mut recv) = (send.into_inner(), recv.into_inner());
        // Circuits are not replay-safe: nothing is done for 0-RTT data.
        if session.wait_established().await.is_err() {
            return;
        }
        let frame = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_frame(&mut recv)).await {
            Ok(Ok(Some(frame))) => frame,
            _ => return,
        };
        let peer = match CircuitPeer::decode(&frame.payload) {
            Ok(m) if frame.kind == FRAME_CIRCUIT || frame.kind == FRAME_INCOMING => m.peer,
            _ => {
                let _ = send.reset(VarInt::from_u32(codes::PROTOCOL_ERROR));
                let _ = recv.stop(VarInt::from_u32(codes::PROTOCOL_ERROR));
                return;
            }
        };
        let refused = if frame.kind == FRAME_CIRCUIT {
            match self.admit_circuit(&session, peer) {
                Ok((slot, target)) => {
                    let service = self.inner.relayed.service.clone();
                    return serve::bridge(service, slot, target, send, recv).await;
                }
                Err(refused) => refused,
            }
        } else {
            match self.take_offer() {
                Ok((addr, out)) => {
                    if self.inner.relayed.service.testing().stall_offers {
                        let _ = circuit::accept(&mut send).await;
                        let _held = (send, recv, out);
                        return self.inner.relayed.circuits.stalled(addr).await;
                    }
                    if circuit::accept(&mut send).await.is_ok() {
                        let circuits = self.inner.relayed.circuits.clone();
                        let hold = session.transfer_hold();
                        circuit::run(circuits, addr, out, (send, recv), hold);
                    } else {
                        self.inner.relayed.circuits.remove(addr);
                    }
                    return;
                }
                Err(refused) => refused,
            }
        };
        circuit::refuse(&mut send, &refused).await;
    }

    /// A slot and the target's session for a circuit `session`'s peer asks for, or why not.
    fn admit_circuit(
        &self,
        session: &Session,
        target: PeerId,
    ) -> std::result::Result<(serve::CircuitSlot, Session), CircuitRefused> {
        let refuse = |reason, message: String| CircuitRefused { reason, message };
        if !self.inner.config.relay {
            let why = "this node does not relay (it did not opt in)".into();
            return Err(refuse(RefusalReason::NotARelay, why));
        }
        let requester = session.remote_peer_id();
        if target == requester || target == self.peer_id() {
            let why = "the target is the requester or the relay itself".into();
            return Err(refuse(RefusalReason::BadRequest, why));
        }
        let target = self
            .inner
            .relayed
            .service
            .testing()
            .misroute_to
            .unwrap_or(target);
        let Some(to_target) = self.inner.live.direct_session(&target) else {
            let why = format!("the relay has no session with {}", target.short());
            return Err(refuse(RefusalReason::TargetNotConnected, why));
        };
        let slot = self.inner.relayed.service.admit(requester)?;
        Ok((slot, to_target))
    }

    /// A circuit for an offer a relay made, or why this node refuses it.
    fn take_offer(
        &self,
    ) -> std::result::Result<(std::net::SocketAddr, mpsc::Receiver<bytes::Bytes>), CircuitRefused>
    {
        let refused = |message: String| CircuitRefused {
            reason: RefusalReason::TargetRefused,
            message,
        };
        self.inner
            .relayed
            .endpoint()
            .map_err(|e| refused(e.to_string()))?;
        self.inner
            .relayed
            .circuits
            .open()
            .ok_or_else(|| refused(too_many_relayed().to_string()))
    }
}

fn too_many_relayed() -> NetError {
    NetError::Busy("this node has as many relayed sessions as its limits allow".into())
}

/// The handler of stream kind RELAY on every session of a node.
pub(super) struct RelayStreams {
    pub(super) node: Weak<NodeInner>,
}

impl ProtocolHandler for RelayStreams {
    fn handle(&self, session: Session, send: SendStream, recv: RecvStream) -> HandlerFuture {
        let node = self.node.upgrade().map(|inner| Node { inner });
        Box::pin(async move {
            if let Some(node) = node {
                node.serve_relay_stream(session, send, recv).await;
            }
        })
    }
}
