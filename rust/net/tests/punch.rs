//! Coordinated connections on ::1 with three real nodes: A knows only the coordinator C, C has
//! sessions with A and B, and `connect_to(B, via=C)` must reach B, verified by TLS. Also the
//! refusals, a lying coordinator, a peer that cannot be reached, and one session per pair.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use i6p_core::{codes, Identity, PeerId};
use i6p_net::session::Route;
use i6p_net::{CoordinatorLie, Limits, NetError, Node, NodeConfig, Session};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn loopback(node: &Node) -> SocketAddr {
    let port = node.local_addr().unwrap().port();
    format!("[::1]:{port}").parse().unwrap()
}

fn node_with(config: NodeConfig) -> Node {
    Node::bind(Identity::generate(), "[::]:0".parse().unwrap(), config).unwrap()
}

/// On loopback every node is reachable: with dial-backs on, A would learn that B is public
/// and dial it directly. These tests are about coordination and punching, so nodes here do
/// not ask for dial-backs (and so never believe they are public unless a test says so).
fn node() -> Node {
    node_with(NodeConfig {
        dial_back: false,
        ..NodeConfig::default()
    })
}

/// `from` dials `to` and `to` accepts: the two ends of one session.
async fn pair(from: &Node, to: &Node) -> (Session, Session) {
    let (a, b) = tokio::join!(from.connect(to.peer_id(), loopback(to)), to.accept());
    (a.unwrap(), b.unwrap())
}

/// Streams both ways over `ours` (to `theirs`): the session carries data.
async fn exchange(ours: &Session, theirs: &Session) {
    let (mut send, mut recv) = ours.open_stream().await.unwrap();
    send.write(Bytes::from_static(b"hello")).await.unwrap();
    send.finish().await.unwrap();
    let (mut send2, mut recv2) = theirs.accept_stream().await.unwrap();
    assert_eq!(&recv2.read_to_end(100).await.unwrap()[..], b"hello");
    send2.write(Bytes::from_static(b"back")).await.unwrap();
    send2.finish().await.unwrap();
    assert_eq!(&recv.read_to_end(100).await.unwrap()[..], b"back");
}

/// A, B and C with sessions A–C and B–C; returns A's session with C.
async fn triangle() -> (Node, Node, Node, Session, Session) {
    let (a, b, c) = (node(), node(), node());
    let (ac, _ca) = pair(&a, &c).await;
    let (bc, _cb) = pair(&b, &c).await;
    (a, b, c, ac, bc)
}

#[tokio::test]
async fn a_peer_known_only_through_a_coordinator_is_reached_punched_and_verified() {
    let (a, b, c, ac, _bc) = triangle().await;
    // A dead port first: the given addresses fail fast, then the coordinator is asked.
    let dead = [{
        let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
        s.local_addr().unwrap()
    }];
    let started = Instant::now();
    let (ab, ba) = tokio::join!(a.connect_to(b.peer_id(), &dead, Some(&ac)), b.accept());
    let (ab, ba) = (ab.unwrap(), ba.unwrap());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(ab.remote_peer_id(), b.peer_id());
    assert_eq!(ba.remote_peer_id(), a.peer_id());
    assert_eq!((ab.route(), ba.route()), (Route::Punched, Route::Punched));
    // Who sent the Initial follows the PeerIds, on both sides.
    assert_eq!(ab.is_dialer(), a.peer_id() < b.peer_id());
    assert_eq!(ba.is_dialer(), b.peer_id() < a.peer_id());
    exchange(&ab, &ba).await;
    exchange(&ba, &ab).await;
    // The coordinator advertises that it coordinates.
    assert!(ac
        .remote_capabilities()
        .contains(&("coordinate".into(), "1".into())));
    // Again, now that A holds a resumption ticket for B: the 0-RTT session to the dead
    // address returns at once, but is not taken for a session with B.
    ab.close(0, "again").await;
    let (again, _ba2) = tokio::join!(a.connect_to(b.peer_id(), &dead, Some(&ac)), b.accept());
    let again = again.unwrap();
    again.wait_established().await.unwrap();
    assert_eq!(again.route(), Route::Punched);
    for n in [a, b, c] {
        n.close().await;
    }
}

#[tokio::test]
async fn a_public_asker_is_dialed_back_by_the_target_with_a_direct_route() {
    let (a, b, c, ac, _bc) = triangle().await;
    a.set_believes_public(true);
    let (ab, ba) = tokio::join!(a.connect_to(b.peer_id(), &[], Some(&ac)), b.accept());
    let (ab, ba) = (ab.unwrap(), ba.unwrap());
    assert_eq!(ab.remote_peer_id(), b.peer_id());
    // Connection reversal: the target dialed, as a plain dial.
    assert!(ba.is_dialer() && !ab.is_dialer());
    assert_eq!((ab.route(), ba.route()), (Route::Direct, Route::Direct));
    exchange(&ab, &ba).await;
    for n in [a, b, c] {
        n.close().await;
    }
}

fn refused(result: Result<Session, NetError>, what: &str) {
    match result {
        Err(NetError::CoordinationRefused(why)) => assert!(why.contains(what), "{why}"),
        other => panic!("expected a refusal ({what}), got {other:?}"),
    }
}

#[tokio::test]
async fn coordinators_refuse_with_a_typed_reason() {
    // Coordination off.
    let (a, b) = (node(), node());
    let c = node_with(NodeConfig {
        coordinate: false,
        ..NodeConfig::default()
    });
    let (ac, _) = pair(&a, &c).await;
    let (_bc, _) = pair(&b, &c).await;
    assert!(!ac
        .remote_capabilities()
        .iter()
        .any(|(k, _)| k == "coordinate"));
    refused(
        a.connect_to(b.peer_id(), &[], Some(&ac)).await,
        "CoordinationOff",
    );
    // A target the coordinator has no session with.
    let stranger = PeerId::from_bytes([9; 32]);
    let c2 = node();
    let (ac2, _) = pair(&a, &c2).await;
    refused(a.connect_to(stranger, &[], Some(&ac2)).await, "NoSession");
    // No addresses and no coordinator: a caller's mistake.
    assert!(matches!(
        a.connect_to(b.peer_id(), &[], None).await,
        Err(NetError::Config(_))
    ));
    for n in [a, b, c, c2] {
        n.close().await;
    }
}

#[tokio::test]
async fn a_coordinator_at_its_limit_of_introductions_refuses() {
    let limits = Limits {
        max_introductions_per_peer: 1,
        ..Limits::default()
    };
    let (a, b) = (node(), node());
    let c = node_with(NodeConfig {
        limits,
        ..NodeConfig::default()
    });
    let (ac, _) = pair(&a, &c).await;
    let (_bc, _) = pair(&b, &c).await;
    // One introduction held open by hand on a raw COORD stream: CONNECT, then silence.
    let (mut send, mut recv) = ac
        .open_protocol_stream(i6p_core::kinds::STREAM_COORD)
        .await
        .unwrap();
    let connect = i6p_core::coord::CoordMessage::Connect {
        target: b.peer_id(),
        candidates: Default::default(),
    };
    send.write(Bytes::from(connect.encode_frame()))
        .await
        .unwrap();
    let header = recv.read_exact(5).await.unwrap();
    assert_eq!(header[0], i6p_core::kinds::FRAME_COORD_ANSWER);
    refused(a.connect_to(b.peer_id(), &[], Some(&ac)).await, "Limit");
    // Once the first ends, the next is served.
    send.finish().await.unwrap();
    drop((send, recv));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ab, _ba) = tokio::join!(a.connect_to(b.peer_id(), &[], Some(&ac)), b.accept());
    assert_eq!(ab.unwrap().remote_peer_id(), b.peer_id());
    for n in [a, b, c] {
        n.close().await;
    }
}

#[tokio::test]
async fn a_lying_coordinator_cannot_make_the_asker_accept_another_peer() {
    let (a, b, c, ac, _bc) = triangle().await;
    let e = node();
    let (_ec, _) = pair(&e, &c).await;
    // Another peer's addresses as the target's candidates: A may reach the real B (B dials
    // A's true candidates when its PeerId is the smaller), never E.
    c.lie_as_coordinator(Some(CoordinatorLie::Addrs(vec![loopback(&e)])));
    let (result, _) = tokio::join!(a.connect_to(b.peer_id(), &[], Some(&ac)), async {
        let _ = tokio::time::timeout(Duration::from_secs(8), b.accept()).await;
    });
    match result {
        Ok(session) => assert_eq!(session.remote_peer_id(), b.peer_id()),
        Err(e) => assert!(matches!(e, NetError::Unreachable(_)), "{e:?}"),
    }
    // Another peer introduced in the target's place: A never takes it for B.
    c.lie_as_coordinator(Some(CoordinatorLie::Target(e.peer_id())));
    let started = Instant::now();
    let result = a.connect_to(b.peer_id(), &[], Some(&ac)).await;
    match result {
        Err(NetError::Unreachable(why)) => {
            // The failure says what was tried, and came within seconds.
            assert!(why.contains("punch 3"), "{why}");
            assert!(why.contains(&c.peer_id().short()), "{why}");
            assert!(started.elapsed() < Duration::from_secs(12));
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    for n in [a, b, c, e] {
        n.close().await;
    }
}

#[tokio::test]
async fn simultaneous_dials_end_in_one_primary_session_on_both_sides() {
    let (a, b) = (node(), node());
    let (from_a, from_b, at_b, at_a) = tokio::join!(
        a.connect(b.peer_id(), loopback(&b)),
        b.connect(a.peer_id(), loopback(&a)),
        b.accept(),
        a.accept(),
    );
    let (ab, ba, at_b, at_a) = (
        from_a.unwrap(),
        from_b.unwrap(),
        at_b.unwrap(),
        at_a.unwrap(),
    );
    // The connection dialed by the smaller PeerId is primary, on both sides.
    let a_smaller = a.peer_id() < b.peer_id();
    let (keep, keep_peer, lose, lose_peer) = if a_smaller {
        (&ab, &at_b, &ba, &at_a)
    } else {
        (&ba, &at_a, &ab, &at_b)
    };
    // The loser still carries what is under way, then closes with DUPLICATE.
    exchange(lose, lose_peer).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), lose.closed()).await;
    match closed.unwrap() {
        NetError::ConnectionLost { code, .. } => assert_eq!(code, u64::from(codes::DUPLICATE)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!lose_peer.is_usable());
    assert!(keep.is_usable() && keep_peer.is_usable());
    exchange(keep, keep_peer).await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_second_connect_to_a_peer_gives_a_second_session_that_does_not_compete() {
    let (a, b) = (node(), node());
    let (first, first_b) = pair(&a, &b).await;
    let (second, second_b) = pair(&a, &b).await;
    // Dialed by the same side on the same route: the application asked for both.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(first.is_usable() && second.is_usable());
    exchange(&first, &first_b).await;
    exchange(&second, &second_b).await;
    a.close().await;
    b.close().await;
}
