//! Path-MTU discovery's upper bound per peer: the MTU of the interface the route to that peer
//! leaves by, when it is smaller than the node's bound.
//!
//! A node's bound is its largest interface's MTU (65,488 bytes of payload with loopback), and
//! quinn starts its search halfway between 1,200 and that bound. quinn-proto 0.11 sends a
//! probe whenever it has nothing else queued, without asking the congestion window, and
//! counts it in flight; a 33 KB probe against a fresh 12 KB window then holds back every
//! other packet until the probe is declared lost. On a route through a 1,500-byte link the
//! kernel refuses the probe (EMSGSIZE, which quinn-udp ignores), so it is always lost, and
//! declaring it lost takes a PTO: seconds when the first RTT sample came from a lost
//! Initial. Sessions stalled through their HELLO that way. (n0-computer's fork of quinn
//! makes probes obey the window: noq#573.) Bounding the search by the route's own MTU keeps
//! ordinary paths at 1,452 as before, and loopback and jumbo-frame links keep large packets.

use crate::error::Result;
use quinn::TransportConfig;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// Distinct bounds kept (a host has a few interface MTUs; any more are built each time).
const MAX_KEPT: usize = 8;

/// The MTU of the route this host would send to `remote` by (IPv4-mapped addresses as IPv4),
/// read from a connected UDP socket, which sends nothing. None if there is no route.
pub fn route_mtu(remote: SocketAddr) -> Option<u32> {
    let remote = match remote {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => remote,
        },
        v4 => v4,
    };
    let local: SocketAddr = match remote {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.connect(remote).ok()?;
    let mtu = match remote {
        SocketAddr::V4(_) => rustix::net::sockopt::ip_mtu(&socket),
        SocketAddr::V6(_) => rustix::net::sockopt::ipv6_mtu(&socket),
    };
    mtu.ok()
}

/// Builds a node's transport configuration (the node's own, before any bound by route).
type BuildTransport = Box<dyn Fn() -> Result<TransportConfig> + Send + Sync>;

/// The transport configurations of a node's connections, by discovery bound.
pub(crate) struct PathTransports {
    /// The node's own bound (its transports' and the one it advertises).
    node_bound: u16,
    build: BuildTransport,
    kept: Mutex<Vec<(u16, Arc<TransportConfig>)>>,
}

impl PathTransports {
    pub(crate) fn new(node_bound: u16, build: BuildTransport) -> Self {
        Self {
            node_bound,
            build,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The transport for a connection with `remote` when its route bounds discovery below
    /// the node's bound; None when the node's own transport fits.
    pub(crate) fn for_remote(&self, remote: SocketAddr) -> Result<Option<Arc<TransportConfig>>> {
        let Some(mtu) = route_mtu(remote) else {
            return Ok(None);
        };
        // Loopback's 65,536 comes back as 65,535 (the largest packet): no bound either way.
        let bound = crate::mtu::payload_bound(Some(mtu));
        if mtu >= u32::from(u16::MAX) || bound >= self.node_bound {
            return Ok(None);
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = kept.iter().find(|(b, _)| *b == bound) {
            return Ok(Some(t.clone()));
        }
        let mut t = (self.build)()?;
        let mut discovery = quinn::MtuDiscoveryConfig::default();
        discovery.upper_bound(bound);
        t.mtu_discovery_config(Some(discovery));
        let t = Arc::new(t);
        if kept.len() < MAX_KEPT {
            kept.push((bound, t.clone()));
        }
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_routes_have_loopback_mtu() {
        let v6 = route_mtu("[::1]:9".parse().unwrap());
        let v4 = route_mtu("127.0.0.1:9".parse().unwrap());
        let mapped = route_mtu("[::ffff:127.0.0.1]:9".parse().unwrap());
        // Loopback's 65,536 comes back as the largest packet, 65,535.
        assert!(matches!(v6, Some(65_535..=65_536)), "{v6:?}");
        assert!(matches!(v4, Some(65_535..=65_536)), "{v4:?}");
        assert_eq!(mapped, v4);
    }

    #[test]
    fn a_route_as_large_as_the_node_bound_keeps_the_node_transport() {
        for bound in [1452, 65_488] {
            let paths = PathTransports::new(bound, Box::new(|| Ok(TransportConfig::default())));
            let t = paths.for_remote("[::1]:9".parse().unwrap()).unwrap();
            assert!(t.is_none(), "bound {bound}");
        }
    }
}
