//! Fast failures and liveness on real nodes on ::1: a dial the kernel answers with ICMP port
//! unreachable ends at once, a node cannot dial itself, liveness periods are bounded.

#![allow(clippy::unwrap_used)]

use i6p_core::Identity;
use i6p_net::session::MIN_LIVENESS;
use i6p_net::{NetError, Node, NodeConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn node() -> Node {
    let config = NodeConfig {
        handshake_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    Node::bind(Identity::generate(), "[::1]:0".parse().unwrap(), config).unwrap()
}

fn loopback(node: &Node) -> SocketAddr {
    format!("[::1]:{}", node.local_addr().unwrap().port())
        .parse()
        .unwrap()
}

/// A port on ::1 nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("[::1]:0").unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test]
async fn a_dial_the_network_refuses_ends_at_once() {
    let a = node();
    let target = closed_port();
    let start = Instant::now();
    let e = a.connect(Identity::generate().peer_id(), target).await;
    match e {
        Err(NetError::Unreachable(why)) => {
            assert!(why.contains(&target.to_string()), "{why}");
            assert!(why.contains("port unreachable"), "{why}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // The handshake timeout is 30 s.
    assert!(start.elapsed() < Duration::from_secs(3));
    // A live peer is not disturbed by the probes.
    let b = node();
    let (ab, ba) = tokio::join!(a.connect(b.peer_id(), loopback(&b)), b.accept());
    let (ab, _ba) = (ab.unwrap(), ba.unwrap());
    assert!(ab.ping_within(Some(Duration::from_secs(10))).await.is_ok());
}

#[tokio::test]
async fn a_node_cannot_dial_itself() {
    let a = node();
    let own = a.peer_id();
    assert!(matches!(a.connect(own, loopback(&a)).await, Err(NetError::OwnPeerId(p)) if p == own));
    let addrs = [loopback(&a)];
    assert!(matches!(
        a.connect_any(own, &addrs).await,
        Err(NetError::OwnPeerId(_))
    ));
}

#[tokio::test]
async fn liveness_periods_are_bounded_and_can_be_turned_off() {
    let (a, b) = (node(), node());
    let (ab, ba) = tokio::join!(a.connect(b.peer_id(), loopback(&b)), b.accept());
    let (ab, _ba) = (ab.unwrap(), ba.unwrap());
    assert!(matches!(
        ab.set_liveness(Some(MIN_LIVENESS / 2)),
        Err(NetError::Config(_))
    ));
    assert_eq!(ab.liveness(), None);
    ab.set_liveness(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(ab.liveness(), Some(Duration::from_secs(1)));
    ab.set_liveness(None).unwrap();
    assert_eq!(ab.liveness(), None);
}
