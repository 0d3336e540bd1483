//! What a node is set up with: its tunables ([`NodeConfig`]), the QUIC transport they make,
//! its UDP socket, and the directory of its state.

use crate::error::{NetError, Result};
use crate::limits::Limits;
use crate::session::COORDINATED;
use crate::transport::{Congestion, Windows};
use i6p_core::PeerId;
use quinn::{TransportConfig, VarInt};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Tunables of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Capabilities announced in HELLO.
    pub capabilities: Vec<(String, String)>,
    /// Time allowed for the QUIC handshake plus the HELLO exchange.
    pub handshake_timeout: Duration,
    /// A session with no traffic for this long is lost.
    pub idle_timeout: Duration,
    /// Keep-alive interval (keeps NAT and firewall state and detects dead peers).
    pub keep_alive: Duration,
    /// Every session's liveness period (`Session::set_liveness`): a peer silent this long is
    /// taken for dead. None: only the idle timeout ends a silent session.
    pub liveness: Option<Duration>,
    /// Streams the peer may have open at once in each direction.
    pub max_streams: u32,
    /// Bounds on what peers can make the node hold.
    pub limits: Limits,
    /// Hand incoming sessions to `accept`. A node that only serves blobs turns this off: its
    /// peers' sessions serve their requests and never wait in a queue for an `accept` that
    /// never comes.
    pub accept_sessions: bool,
    /// Congestion controller of every connection.
    pub congestion: Congestion,
    /// Flow-control windows (auto-tuned by default).
    pub windows: Windows,
    /// Send requests in 0-RTT when reconnecting to a peer met before.
    pub zero_rtt: bool,
    /// Where the listener keeps its resumption tickets across restarts (none: in memory).
    pub state_dir: Option<PathBuf>,
    /// How long a session dialed for transfers stays open without carrying one.
    pub transfer_idle: Duration,
    /// Ask peers to dial this node back by itself, once per address that becomes trusted
    /// (see `Node::reachability`). Serving other nodes' requests does not depend on it.
    pub dial_back: bool,
    /// Announce this node on the LAN by mDNS and listen for others' announcements, which
    /// `connect_by_id` then finds (see [`crate::discovery::mdns`]).
    pub mdns: bool,
    /// Publish this node's record in the Mainline DHT and look peers up there (see
    /// [`crate::discovery::dht`]); `connect_by_key` asks it after the book and mDNS.
    pub dht: bool,
    /// `host:port` of the DHT nodes to bootstrap from (a private or test DHT); empty: the
    /// `mainline` crate's public bootstrap nodes.
    pub dht_bootstrap: Vec<String>,
    /// How long each DHT request waits for its answer (None: mainline's 2 s). A lookup
    /// ends when every request is answered or timed out, so this bounds its time when a
    /// DHT node stays silent; lower it only where DHT nodes answer quickly (a LAN, a testnet).
    pub dht_request_timeout: Option<Duration>,
    /// Put this node's reachable addresses in its DHT record. Off by default: a published
    /// address tells anyone who knows the key where the node is (a privacy decision); the
    /// record then names only the node's contacts.
    pub publish_addrs: bool,
    /// Rendezvous or relay nodes the DHT record names, through which peers can reach this
    /// node without its addresses (see `Node::set_dht_contacts`).
    pub dht_contacts: Vec<i6p_core::contact::Contact>,
    /// Relay circuits between other peers (bounded by the relay limits of `limits`); the
    /// HELLO then announces ("relay", "1").
    pub relay: bool,
    /// Test hooks that make this node a misbehaving relay (see [`crate::relay::RelayTesting`]).
    #[doc(hidden)]
    pub relay_testing: crate::relay::RelayTesting,
    /// Introduce peers that have live sessions with this node to each other when one asks
    /// (coordination, stream kind COORD); advertised in HELLO as ("coordinate", "1").
    pub coordinate: bool,
    /// A relayed session this node dialed keeps trying for a direct path through its relay
    /// (as coordinator), and moves there when one forms (see `node::upgrade`).
    pub upgrade: bool,
    /// The largest UDP payload path MTU discovery tries, and the one the node advertises
    /// (`max_udp_payload_size`). None, the default, takes the largest interface MTU less the
    /// IPv6 and UDP headers (see [`crate::mtu`]), resolved when the node binds; each
    /// connection's discovery is further bounded by the MTU of its route (see
    /// `route_mtu`), and every close gets through while discovery probes (see
    /// [`crate::closing`]). `Some(1452)` keeps QUIC's usual bound (an Ethernet frame).
    pub max_udp_payload: Option<u16>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            capabilities: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            liveness: None,
            max_streams: 1024,
            limits: Limits::default(),
            accept_sessions: true,
            congestion: Congestion::default(),
            windows: Windows::default(),
            zero_rtt: true,
            state_dir: None,
            transfer_idle: super::reuse::TRANSFER_IDLE,
            dial_back: true,
            mdns: false,
            dht: false,
            dht_bootstrap: Vec::new(),
            dht_request_timeout: None,
            publish_addrs: false,
            dht_contacts: Vec::new(),
            relay: false,
            relay_testing: crate::relay::RelayTesting::default(),
            coordinate: true,
            upgrade: true,
            max_udp_payload: None,
        }
    }
}

impl NodeConfig {
    /// The capabilities a HELLO announces: the configured ones, plus ("coordinate", "1")
    /// when the node introduces peers (unless the application already lists that key).
    /// The reserved [`COORDINATED`] key is the node's own, set per dial.
    pub(crate) fn advertised_capabilities(&self) -> Vec<(String, String)> {
        let mut caps = self.capabilities.clone();
        caps.retain(|(k, _)| k != COORDINATED);
        let room = caps.len() < i6p_core::hello::MAX_CAPABILITIES;
        if self.coordinate && room && !caps.iter().any(|(k, _)| k == "coordinate") {
            caps.push(("coordinate".into(), "1".into()));
        }
        caps
    }

    /// This configuration with its payload bound fixed, read from the interfaces once: the
    /// endpoint and every connection's discovery must agree on it.
    pub(crate) fn resolved(self) -> Self {
        Self {
            max_udp_payload: Some(self.udp_payload()),
            ..self
        }
    }

    /// The payload bound: the configured one (within QUIC's limits), or this host's.
    pub fn udp_payload(&self) -> u16 {
        self.max_udp_payload
            .map(|p| p.clamp(crate::mtu::MIN_PAYLOAD, crate::mtu::MAX_PAYLOAD))
            .unwrap_or_else(crate::mtu::local_payload_bound)
    }

    /// The endpoint's settings: the payload bound advertised to peers, since quinn's
    /// discovery never goes past what the peer advertises.
    pub(crate) fn endpoint_config(&self) -> Result<quinn::EndpointConfig> {
        let mut config = quinn::EndpointConfig::default();
        config
            .max_udp_payload_size(self.udp_payload())
            .map_err(|e| NetError::Config(format!("max UDP payload: {e}")))?;
        Ok(config)
    }
}

/// The stream limit to advertise so that the peer can always have `max_streams` open at
/// once. quinn announces credit for closed streams only once more than 1/8 of its limit is
/// owed (quinn-proto `StreamsState::queue_max_stream_id`), so up to 1/8 of the limit can be
/// closed on our side and still counted on the peer's: a session whose peer had opened and
/// closed 100 streams could then open only 924 of 1024. With a limit of n + ceil(n/7), what
/// is owed is at most 1/8 of it, and at least n remain open to the peer.
pub(crate) fn advertised_streams(max_streams: u32) -> VarInt {
    let n = u64::from(max_streams);
    VarInt::from_u64(n + n.div_ceil(7)).unwrap_or(VarInt::MAX)
}

/// The QUIC transport every connection of a node with `config` uses.
pub(crate) fn transport_config(
    config: &NodeConfig,
    closing: &crate::closing::NodeClosing,
) -> Result<TransportConfig> {
    let mut t = TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| NetError::Tls("idle timeout out of range".into()))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(config.keep_alive));
    t.max_concurrent_bidi_streams(advertised_streams(config.max_streams));
    // The one unidirectional stream is the listener's HELLO stream (sent at 0.5-RTT); a
    // session stops any other at once, so none can pin data nobody reads.
    t.max_concurrent_uni_streams(VarInt::from_u32(1));
    // FEC mode's shards: room for a burst the router has not taken yet, and a send queue
    // short enough that a request's END does not overtake its shards by much.
    t.datagram_receive_buffer_size(Some(8 << 20));
    t.datagram_send_buffer_size(256 << 10);
    let mut discovery = quinn::MtuDiscoveryConfig::default();
    discovery.upper_bound(config.udp_payload());
    t.mtu_discovery_config(Some(discovery));
    config.windows.validate()?;
    crate::transport::apply(&mut t, config.congestion, config.windows, closing);
    Ok(t)
}

/// A UDP socket for the endpoint; IPv6 wildcard sockets are made dual-stack explicitly.
pub(crate) fn bind_socket(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Only a wildcard bind can receive IPv4; specific IPv6 addresses stay IPv6-only.
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| NetError::Io(format!("cannot bind {addr}: {e}")))?;
    Ok(socket.into())
}

/// The file of a node's listener tickets in `dir`: one per identity, in a 0700 directory.
pub(super) fn tickets_path(dir: &std::path::Path, peer: &PeerId) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| NetError::file("cannot create the state directory", dir, e))?;
    Ok(dir.join(format!("{peer}.tickets")))
}

#[cfg(test)]
mod tests {
    use super::advertised_streams;

    #[test]
    fn the_peer_keeps_max_streams_open_whatever_credit_quinn_holds_back() {
        for n in (0..5000).chain([u32::MAX]) {
            let advertised = advertised_streams(n).into_inner();
            // quinn holds back at most 1/8 of the advertised limit.
            assert!(advertised - advertised / 8 >= u64::from(n), "{n}");
            assert!(advertised <= u64::from(n) + u64::from(n) / 7 + 1, "{n}");
        }
    }
}
