//! Relayed sessions on three real nodes on ::1 (A, relay R, B): A reaches B through R end to
//! end (route "relayed" on both sides, streams both ways, a verified fetch), refusals are
//! typed, R's bounds end circuits with RELAY_LIMIT, a relay that flips bits or connects A to
//! the wrong peer cannot make A accept bad data or the wrong identity, and a stalled side
//! does not make R copy (and hold) more than flow control lets it.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use i6p_core::codes;
use i6p_core::relay::{RefusalReason, FRAME_CIRCUIT, STREAM_RELAY};
use i6p_core::Identity;
use i6p_net::fetch::{fetch_to_file, FetchOptions, Progress};
use i6p_net::relay::RelayTesting;
use i6p_net::session::Route;
use i6p_net::{Limits, NetError, Node, NodeConfig, Session};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn node_with(config: NodeConfig) -> Node {
    Node::bind(Identity::generate(), "[::1]:0".parse().unwrap(), config).unwrap()
}

fn node() -> Node {
    node_with(NodeConfig::default())
}

fn relay_with(limits: Limits, testing: RelayTesting) -> Node {
    node_with(NodeConfig {
        relay: true,
        limits,
        relay_testing: testing,
        ..NodeConfig::default()
    })
}

fn addr(node: &Node) -> SocketAddr {
    node.local_addr().unwrap()
}

/// A direct session from `a` to `b` (and `b`'s end of it).
async fn direct(a: &Node, b: &Node) -> (Session, Session) {
    let (sa, sb) = tokio::join!(a.connect(b.peer_id(), addr(b)), b.accept());
    (sa.unwrap(), sb.unwrap())
}

/// A relayed session from `a` to `b` through `relay` (and `b`'s end).
async fn relayed(a: &Node, b: &Node, via: &Session) -> (Session, Session) {
    let (sa, sb) = tokio::join!(a.connect_relayed(b.peer_id(), via), b.accept());
    (sa.unwrap(), sb.unwrap())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("i6p-relay-{}-{name}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("blob")
}

fn random_bytes(n: usize) -> Bytes {
    (0..n)
        .map(|_| rand::random::<u8>())
        .collect::<Vec<_>>()
        .into()
}

async fn fetch(
    session: &Session,
    data: &Bytes,
    provider: &Node,
    name: &str,
) -> Result<PathBuf, NetError> {
    let blob = provider.store().add_bytes(data.clone());
    let dest = scratch(name);
    let progress = Arc::new(Progress::default());
    let fetched = fetch_to_file(
        session,
        blob.hash(),
        blob.size(),
        dest.clone(),
        FetchOptions::default(),
        progress,
    )
    .await;
    fetched.map(|_| dest)
}

async fn echo_once(from: &Session, to: &Session, what: &'static [u8]) {
    let (mut send, mut recv) = from.open_stream().await.unwrap();
    send.write(Bytes::from_static(what)).await.unwrap();
    send.finish().await.unwrap();
    let (mut s2, mut r2) = to.accept_stream().await.unwrap();
    let got = r2.read_to_end(1024).await.unwrap();
    s2.write(got).await.unwrap();
    s2.finish().await.unwrap();
    assert_eq!(recv.read_to_end(1024).await.unwrap(), what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaches_b_through_r_end_to_end_and_fetches_a_verified_blob() {
    let (a, r, b) = (
        node(),
        relay_with(Limits::default(), RelayTesting::default()),
        node(),
    );
    let (a_r, _) = direct(&a, &r).await;
    let (_b_r, _) = direct(&b, &r).await;
    assert!(a_r
        .remote_capabilities()
        .contains(&("relay".into(), "1".into())));

    let (ab, ba) = relayed(&a, &b, &a_r).await;
    assert_eq!((ab.route(), ba.route()), (Route::Relayed, Route::Relayed));
    assert_eq!(ab.remote_peer_id(), b.peer_id());
    assert_eq!(ba.remote_peer_id(), a.peer_id());
    echo_once(&ab, &ba, b"from a").await;
    echo_once(&ba, &ab, b"from b").await;

    let data = random_bytes(4 << 20);
    let copied_before = r.relay_stats().1;
    let dest = fetch(&ab, &data, &b, "verified").await.unwrap();
    let written = std::fs::read(&dest).unwrap();
    assert_eq!(blake3::hash(&written), blake3::hash(&data));
    // The bytes went through R (and R carries one circuit).
    assert!(r.relay_stats().1 - copied_before >= data.len() as u64);
    assert_eq!(r.relay_stats().0, 1);

    // Closing the relayed session frees the circuit at both ends and at R.
    ab.close(0, "done").await;
    for _ in 0..100 {
        if r.relay_stats().0 == 0 && a.relayed_circuits() == 0 && b.relayed_circuits() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (
            r.relay_stats().0,
            a.relayed_circuits(),
            b.relayed_circuits()
        ),
        (0, 0, 0)
    );
}

fn refusal(result: Result<Session, NetError>) -> RefusalReason {
    match result {
        Err(NetError::RelayRefused { reason, .. }) => reason,
        other => panic!("expected a relay refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_which_reason() {
    let limits = Limits {
        max_relay_circuits_per_peer: 1,
        ..Limits::default()
    };
    let (a, b, stranger) = (node(), node(), node());
    // Not a relay: a node that did not opt in.
    let plain = node();
    let (a_plain, _) = direct(&a, &plain).await;
    let (_b_plain, _) = direct(&b, &plain).await;
    let refused = a.connect_relayed(b.peer_id(), &a_plain).await;
    assert_eq!(refusal(refused), RefusalReason::NotARelay);

    let r = relay_with(limits, RelayTesting::default());
    let (a_r, _) = direct(&a, &r).await;
    let (_b_r, _) = direct(&b, &r).await;
    // A target the relay has no session with.
    let refused = a.connect_relayed(stranger.peer_id(), &a_r).await;
    assert_eq!(refusal(refused), RefusalReason::TargetNotConnected);
    // The relay itself is no target.
    let refused = a.connect_relayed(r.peer_id(), &a_r).await;
    assert_eq!(refusal(refused), RefusalReason::BadRequest);
    // One circuit per peer: the second is refused while the first lives.
    let (first, _on_b) = relayed(&a, &b, &a_r).await;
    let refused = a.connect_relayed(b.peer_id(), &a_r).await;
    assert_eq!(refusal(refused), RefusalReason::RelayLimit);
    assert_eq!(first.route(), Route::Relayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_ends_the_circuit_mid_transfer_with_relay_limit() {
    let limits = Limits {
        relay_circuit_bytes: Some(2 << 20),
        ..Limits::default()
    };
    let (a, r, b) = (node(), relay_with(limits, RelayTesting::default()), node());
    let (a_r, _) = direct(&a, &r).await;
    let (_b_r, _) = direct(&b, &r).await;
    let (ab, _ba) = relayed(&a, &b, &a_r).await;
    let data = random_bytes(8 << 20);
    let err = fetch(&ab, &data, &b, "limited").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("limit"), "{text}");
    assert!(
        text.contains(&format!("code {}", codes::RELAY_LIMIT)),
        "{text}"
    );
    match ab.closed().await {
        NetError::ConnectionLost { code, .. } => assert_eq!(code, u64::from(codes::RELAY_LIMIT)),
        other => panic!("expected the session lost with RELAY_LIMIT, got {other:?}"),
    }
    // R let go of the circuit.
    for _ in 0..100 {
        if r.relay_stats().0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r.relay_stats().0, 0);
    assert!(r.relay_stats().1 <= 2 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_flips_bits_only_costs_retransmissions() {
    let testing = RelayTesting {
        flip_every: Some(5),
        ..RelayTesting::default()
    };
    let (a, r, b) = (node(), relay_with(Limits::default(), testing), node());
    let (a_r, _) = direct(&a, &r).await;
    let (_b_r, _) = direct(&b, &r).await;
    let (ab, _ba) = relayed(&a, &b, &a_r).await;
    let data = random_bytes(4 << 20);
    let dest = fetch(&ab, &data, &b, "flipped").await.unwrap();
    assert_eq!(
        blake3::hash(&std::fs::read(&dest).unwrap()),
        blake3::hash(&data)
    );
    // Damaged packets were dropped by QUIC's integrity check and sent again.
    assert!(ab.stats().packets_lost > 0 || _ba.stats().packets_lost > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_connects_to_the_wrong_peer_is_caught_by_tls() {
    let (a, b, c) = (node(), node(), node());
    let testing = RelayTesting {
        misroute_to: Some(c.peer_id()),
        ..RelayTesting::default()
    };
    let r = relay_with(Limits::default(), testing);
    let (a_r, _) = direct(&a, &r).await;
    let (_b_r, _) = direct(&b, &r).await;
    let (_c_r, _) = direct(&c, &r).await;
    match a.connect_relayed(b.peer_id(), &a_r).await {
        Err(NetError::PeerIdMismatch { expected, actual }) => {
            assert_eq!((expected, actual), (b.peer_id(), c.peer_id()));
        }
        other => panic!("expected a PeerId mismatch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_target_stops_the_copy_at_flow_control() {
    // A asks for a circuit by hand and floods it; B takes the circuit and never reads it.
    // R must stop copying (and reading A) once B's window is full: the flood stalls, and
    // what R copied stays within one stream window (R holds at most its buffer meanwhile).
    let (a, r) = (
        node(),
        relay_with(Limits::default(), RelayTesting::default()),
    );
    let b = node_with(NodeConfig {
        relay_testing: RelayTesting {
            stall_offers: true,
            ..RelayTesting::default()
        },
        ..NodeConfig::default()
    });
    let (a_r, _) = direct(&a, &r).await;
    let (_b_r, _) = direct(&b, &r).await;
    let (mut send, mut recv) = a_r.open_protocol_stream(STREAM_RELAY).await.unwrap();
    let mut circuit = vec![FRAME_CIRCUIT, 0, 0, 0, 32];
    circuit.extend_from_slice(b.peer_id().as_bytes());
    send.write(circuit.into()).await.unwrap();
    let ok = recv.read_exact(5).await.unwrap();
    assert_eq!(ok[0], i6p_core::relay::FRAME_CIRCUIT_OK);
    let mut packet = vec![0x04, 0xb0];
    packet.extend(std::iter::repeat_n(0u8, 1200));
    let flood = Bytes::from(packet.repeat(256));
    let mut written = 0u64;
    let writing = async {
        // At most ~600 MB, far beyond any window: the writes must stall first.
        for _ in 0..2000 {
            send.write(flood.clone()).await.unwrap();
            written += flood.len() as u64;
        }
    };
    let stalled = tokio::time::timeout(Duration::from_secs(4), writing).await;
    assert!(stalled.is_err(), "the flood never stalled");
    let copied = r.relay_stats().1;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        r.relay_stats().1,
        copied,
        "R kept copying towards a stalled side"
    );
    let window = 64u64 << 20;
    assert!(copied <= window + serve_buffer(), "R copied {copied} bytes");
    assert!(
        written <= 3 * window,
        "A wrote {written} bytes into a stalled circuit"
    );
}

fn serve_buffer() -> u64 {
    i6p_net::relay::serve::RELAY_BUFFER as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duration_bound_ends_the_circuit_with_relay_limit_on_both_ends() {
    let limits = Limits {
        relay_circuit_duration: Some(Duration::from_millis(800)),
        ..Limits::default()
    };
    let (a, r, b) = (node(), relay_with(limits, RelayTesting::default()), node());
    let (a_r, _) = direct(&a, &r).await;
    let (_b_r, _) = direct(&b, &r).await;
    let (ab, ba) = relayed(&a, &b, &a_r).await;
    let started = tokio::time::Instant::now();
    for end in [&ab, &ba] {
        let lost = tokio::time::timeout(Duration::from_secs(10), end.closed())
            .await
            .unwrap();
        match lost {
            NetError::ConnectionLost { code, .. } => {
                assert_eq!(code, u64::from(codes::RELAY_LIMIT))
            }
            other => panic!("expected RELAY_LIMIT, got {other:?}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The sessions with the relay itself are untouched.
    assert!(a_r.is_usable());
}

/// A fetch that reaches its provider through a ticket's rendezvous node, where no punch gets
/// through (the coordinator gives addresses nobody listens at) and the rendezvous node
/// relays: the relayed session is for transfers, so the provider's `accept` never gets it.
#[tokio::test]
async fn a_fetch_through_a_relaying_rendezvous_node_stays_away_from_the_providers_accept() {
    let quiet = NodeConfig {
        dial_back: false,
        ..NodeConfig::default()
    };
    // A has the smaller PeerId, so it is the side that dials in a simultaneous open, and
    // only toward the dead address the coordinator gives it: no punch can get through
    // (were B the dialer, it would dial A's real candidates).
    let mut ids = [Identity::generate(), Identity::generate()];
    ids.sort_by_key(|id| id.peer_id());
    let [id_a, id_b] = ids;
    let bind = |id: Identity| Node::bind(id, "[::1]:0".parse().unwrap(), quiet.clone()).unwrap();
    let (a, b) = (bind(id_a), bind(id_b));
    let r = relay_with(Limits::default(), RelayTesting::default());
    let (_ab, _ra) = direct(&a, &r).await;
    let (_br, _rb) = direct(&b, &r).await;
    let nobody = std::net::UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap();
    r.lie_as_coordinator(Some(i6p_net::CoordinatorLie::Addrs(vec![nobody])));
    let contact = i6p_core::contact::Contact {
        peer_id: r.peer_id(),
        addrs: vec![addr(&r)],
        relay: true,
        via: Vec::new(),
    };
    let lease = tokio::time::timeout(
        Duration::from_secs(60),
        a.transfer_session_via(b.peer_id(), &[], &[contact]),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(lease.route(), Route::Relayed);
    let data = random_bytes(300_000);
    fetch(&lease, &data, &b, "relayed-transfer").await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_millis(500), b.accept()).await;
    assert!(
        accepted.is_err(),
        "the provider's application got the session"
    );
}
