//! Address reflection and dial-back between real nodes on ::1: after sessions with two peers
//! a node trusts its observed address and their dial-backs find it public; a dial-back never
//! reaches `accept`; a request naming another IP is refused; floods of requests are bounded
//! per peer and per node; a new socket starts reachability afresh.

#![allow(clippy::unwrap_used)]

use i6p_core::dialback::DialBackOutcome;
use i6p_core::Identity;
use i6p_net::reach::{Mapping, ReachStatus};
use i6p_net::{Limits, NetError, Node, NodeConfig, Session};
use std::net::SocketAddr;
use std::time::Duration;

fn node_with(limits: Limits) -> Node {
    let config = NodeConfig {
        limits,
        ..NodeConfig::default()
    };
    Node::bind(Identity::generate(), "[::]:0".parse().unwrap(), config).unwrap()
}

fn node() -> Node {
    node_with(Limits::default())
}

/// A node that asks for no dial-back by itself: every one it asks for is the test's (an
/// automatic one would hold the one-per-peer slot the test counts on).
fn quiet() -> Node {
    let config = NodeConfig {
        dial_back: false,
        ..NodeConfig::default()
    };
    Node::bind(Identity::generate(), "[::]:0".parse().unwrap(), config).unwrap()
}

fn loopback(node: &Node) -> SocketAddr {
    let port = node.local_addr().unwrap().port();
    format!("[::1]:{port}").parse().unwrap()
}

async fn connect(from: &Node, to: &Node) -> Session {
    from.connect(to.peer_id(), loopback(to)).await.unwrap()
}

/// Polls `node.reachability()` until `done` holds for it, for at most 10 s.
async fn reach_until(node: &Node, done: impl Fn(&[i6p_net::reach::AddrReach]) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if done(&node.reachability()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn two_peers_make_the_address_trusted_and_their_dial_backs_find_it_public() {
    let (a, b, c) = (node(), node(), node());
    // C's report makes the address trusted (B's alone does not), and A asks both to dial
    // it back.
    let _ab = connect(&a, &b).await;
    let _ac = connect(&a, &c).await;
    let firm = |r: &[i6p_net::reach::AddrReach]| {
        r.first()
            .is_some_and(|x| x.reporters == 2 && x.reached == 2)
    };
    assert!(reach_until(&a, firm).await, "{:?}", a.reachability());
    let report = a.reachability();
    assert_eq!(report.len(), 1);
    let ours = &report[0];
    assert_eq!(ours.addr, loopback(&a));
    assert!(ours.trusted);
    assert_eq!(ours.status, ReachStatus::Public);
    assert_eq!(ours.mapping, Mapping::Independent);
    assert_eq!(ours.unreached, 0);
    assert!(a.is_public());
    // The dial-back connections came in (B's and C's; a third if one was asked again), and
    // none became a session.
    let admitted = a.admission().admitted;
    assert!((2..=3).contains(&admitted), "{admitted}");
    let accepted = tokio::time::timeout(Duration::from_millis(500), a.accept()).await;
    assert!(accepted.is_err(), "a dial-back reached accept");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.connection_counts().0 != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.connection_counts(),
        (0, 0),
        "a dial-back connection stayed"
    );
}

#[tokio::test]
async fn a_dial_back_naming_another_ip_is_refused() {
    // No automatic dial-back: every connection A lets in is one this test asked for.
    let (a, b) = (quiet(), node());
    let session = connect(&a, &b).await;
    let port = a.local_addr().unwrap().port();
    for other in ["127.0.0.1", "[2001:db8::1]", "[::2]"] {
        let target: SocketAddr = format!("{other}:{port}").parse().unwrap();
        let answer = session.ask_dial_back(target).await.unwrap();
        assert_eq!(answer.outcome, DialBackOutcome::OtherIp, "{target}");
        // The refusal still says where the helper sees us.
        assert_eq!(answer.addr, loopback(&a));
    }
    // No dial went out: the only connection the asker let in is none.
    assert_eq!(a.admission().admitted, 0);
    // Its own IP, named explicitly, is dialed.
    let answer = session.ask_dial_back(loopback(&a)).await.unwrap();
    assert_eq!(answer.outcome, DialBackOutcome::Reached);
    assert!(session.dial_back(None).await.unwrap());
}

/// A UDP socket that never answers: a dial-back to it holds its slot for the whole timeout.
fn silent_port() -> (std::net::UdpSocket, u16) {
    let socket = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

#[tokio::test]
async fn a_flood_of_dial_back_requests_from_one_peer_gets_one_dial() {
    let (a, b) = (quiet(), node());
    let session = connect(&a, &b).await;
    let (_silent, port) = silent_port();
    let target: SocketAddr = format!("[::]:{port}").parse().unwrap();
    let mut asks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let session = session.clone();
        asks.spawn(async move { session.ask_dial_back(target).await.unwrap().outcome });
    }
    let mut outcomes = Vec::new();
    while let Some(o) = asks.join_next().await {
        outcomes.push(o.unwrap());
    }
    let count = |o| outcomes.iter().filter(|x| **x == o).count();
    assert_eq!(count(DialBackOutcome::Unreached), 1, "{outcomes:?}");
    assert_eq!(count(DialBackOutcome::Busy), 19, "{outcomes:?}");
    // The asker's own bound: one dial-back per peer at a time.
    let (first, second) = tokio::join!(session.dial_back(Some(port)), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        session.dial_back(Some(port)).await
    });
    assert!(!first.unwrap());
    assert!(matches!(
        second,
        Err(NetError::DialBackRefused { reason: "busy", .. })
    ));
}

#[tokio::test]
async fn dial_backs_for_many_peers_are_bounded_by_the_node_limit() {
    let helper = node_with(Limits {
        max_dial_backs: 2,
        ..Limits::default()
    });
    // Every session first, then every request at once: the two dials hold their slots for
    // their whole 3 s timeout while the other requests come in.
    let mut askers = Vec::new();
    for _ in 0..5 {
        let asker = quiet();
        let session = connect(&asker, &helper).await;
        askers.push((asker, session, silent_port()));
    }
    let mut asks = tokio::task::JoinSet::new();
    for (_, session, (_, port)) in &askers {
        let session = session.clone();
        let target: SocketAddr = format!("[::]:{port}").parse().unwrap();
        asks.spawn(async move { session.ask_dial_back(target).await.unwrap().outcome });
    }
    let mut outcomes = Vec::new();
    while let Some(o) = asks.join_next().await {
        outcomes.push(o.unwrap());
    }
    let count = |o| outcomes.iter().filter(|x| **x == o).count();
    assert_eq!(count(DialBackOutcome::Unreached), 2, "{outcomes:?}");
    assert_eq!(count(DialBackOutcome::Busy), 3, "{outcomes:?}");
}

#[tokio::test]
async fn a_new_socket_starts_reachability_afresh() {
    let (a, b, c) = (node(), node(), node());
    let ab = connect(&a, &b).await;
    let _ac = connect(&a, &c).await;
    assert!(reach_until(&a, |r| r.first().is_some_and(|x| x.reached == 2)).await);
    let moved = a.rebind("[::]:0".parse().unwrap()).unwrap();
    assert!(a.reachability().is_empty());
    assert!(!a.is_public());
    // The session goes on over the new socket; a dial-back there reflects the new address.
    assert!(ab.dial_back(None).await.unwrap());
    let report = a.reachability();
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0].addr.port(), moved.port());
    assert_eq!((report[0].reporters, report[0].reached), (1, 1));
    assert!(!report[0].trusted);
}
