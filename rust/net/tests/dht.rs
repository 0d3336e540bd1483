//! The Mainline DHT as a discovery source, on a local `mainline::Testnet` bound to
//! 127.0.0.1 (every client here bootstraps from its list only, so nothing leaves the
//! machine): records are published and resolved, a higher seq wins, items signed by another
//! key, with a lower seq, expired or malformed are not taken, and a node connects to
//! another by its key alone.

#![allow(clippy::unwrap_used)]

use i6p_core::contact::Contact;
use i6p_core::dht_record::DhtRecord;
use i6p_core::Identity;
use i6p_net::discovery::dht::{sign_item, signable, unix_now, Dht, LocalTestnet};
use i6p_net::{NetError, Node, NodeConfig};
use mainline::async_dht::AsyncDht;
use mainline::MutableItem;
use std::net::Ipv4Addr;
use std::time::Duration;

const TESTNET_NODES: usize = 20;

fn testnet(n: usize) -> LocalTestnet {
    let net = LocalTestnet::start(n).unwrap();
    assert_eq!(net.bootstrap().len(), n);
    assert!(net.bootstrap().iter().all(|b| b.starts_with("127.0.0.1:")));
    net
}

/// A plain mainline client on the testnet, to put items the i6p client would never make.
fn raw_client(net: &LocalTestnet) -> AsyncDht {
    mainline::Dht::builder()
        .bootstrap(net.bootstrap())
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .unwrap()
        .as_async()
}

fn record(port: u16) -> DhtRecord {
    // Issued at one second for the whole run, so two calls make equal records (rounding
    // the clock instead failed when an hour began between two calls).
    static ISSUED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let mut rec = DhtRecord::new(*ISSUED.get_or_init(unix_now), 7200);
    rec.addrs = vec![format!("[2001:db8::1]:{port}").parse().unwrap()];
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_record_resolves_and_a_higher_seq_replaces_it() {
    let net = testnet(TESTNET_NODES);
    let me = Identity::generate();
    let publisher = Dht::start(me.clone(), net.bootstrap(), None).unwrap();
    assert!(publisher.local_addr().await.unwrap().ip().is_loopback());
    let reader = Dht::start(Identity::generate(), net.bootstrap(), None).unwrap();
    let first = publisher.publish(&record(7001)).await.unwrap();
    let found = reader.resolve(&me.public_key()).await.unwrap().unwrap();
    assert_eq!((found.seq, found.record.clone()), (first, record(7001)));
    assert_eq!(found.key, me.public_key());
    let second = publisher.publish(&record(7002)).await.unwrap();
    assert!(second > first);
    let found = reader.resolve(&me.public_key()).await.unwrap().unwrap();
    assert_eq!((found.seq, found.record), (second, record(7002)));
    // A restarted publisher (no memory of its seqs) still goes above the DHT's.
    let restarted = Dht::start(me.clone(), net.bootstrap(), None).unwrap();
    assert!(restarted.publish(&record(7003)).await.unwrap() > second);
    let nobody = Identity::generate().public_key();
    assert_eq!(reader.resolve(&nobody).await.unwrap(), None);
}

/// A shorter request timeout (the way round mainline's 2 s floor where DHT nodes answer
/// quickly) still publishes and resolves; one out of bounds is a configuration error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_request_timeout_works_and_a_bad_one_is_refused() {
    let net = testnet(TESTNET_NODES);
    let quick = Some(Duration::from_millis(300));
    let me = Identity::generate();
    let publisher = Dht::start(me.clone(), net.bootstrap(), quick).unwrap();
    let reader = Dht::start(Identity::generate(), net.bootstrap(), quick).unwrap();
    let seq = publisher.publish(&record(7005)).await.unwrap();
    let found = reader.resolve(&me.public_key()).await.unwrap().unwrap();
    assert_eq!((found.seq, found.record), (seq, record(7005)));
    for bad in [Duration::from_millis(10), Duration::from_secs(11)] {
        let refused = Dht::start(Identity::generate(), net.bootstrap(), Some(bad));
        assert!(matches!(refused, Err(NetError::Config(_))), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_signed_by_another_key_or_with_a_lower_seq_are_not_taken() {
    let net = testnet(TESTNET_NODES);
    let raw = raw_client(&net);
    let me = Identity::generate();
    let mallory = Identity::generate();
    let reader = Dht::start(Identity::generate(), net.bootstrap(), None).unwrap();
    // Mallory's signature under my key: the DHT nodes refuse to store it.
    let value = record(7001).encode();
    let sig = mallory.sign(&signable(5, &value));
    let forged =
        MutableItem::new_signed_unchecked(me.public_key().to_bytes(), sig, &value, 5, None);
    assert!(raw.put_mutable(forged, None).await.is_err());
    assert_eq!(reader.resolve(&me.public_key()).await.unwrap(), None);
    // Mallory's own record is found under Mallory's key, never under mine.
    raw.put_mutable(sign_item(&mallory, &value, 5), None)
        .await
        .unwrap();
    assert_eq!(reader.resolve(&me.public_key()).await.unwrap(), None);
    assert!(reader
        .resolve(&mallory.public_key())
        .await
        .unwrap()
        .is_some());
    // My record, then an older one of mine (replayed): the newer one stays.
    let publisher = Dht::start(me.clone(), net.bootstrap(), None).unwrap();
    let seq = publisher.publish(&record(7002)).await.unwrap();
    let older = sign_item(&me, &record(6999).encode(), seq - 1);
    assert!(raw.put_mutable(older, None).await.is_err());
    let found = reader.resolve(&me.public_key()).await.unwrap().unwrap();
    assert_eq!((found.seq, found.record), (seq, record(7002)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_malformed_records_resolve_to_nothing() {
    let net = testnet(TESTNET_NODES);
    let raw = raw_client(&net);
    let reader = Dht::start(Identity::generate(), net.bootstrap(), None).unwrap();
    let short = Identity::generate();
    let mut rec = DhtRecord::new(unix_now(), 5);
    rec.relay = true;
    raw.put_mutable(sign_item(&short, &rec.encode(), 1), None)
        .await
        .unwrap();
    let found = reader.resolve(&short.public_key()).await.unwrap().unwrap();
    assert_eq!(found.record, rec);
    while unix_now() < rec.issued + 5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(reader.resolve(&short.public_key()).await.unwrap(), None);
    let garbled = Identity::generate();
    for (seq, value) in [(1, b"not a record".to_vec()), (2, vec![1u8; 1000])] {
        raw.put_mutable(sign_item(&garbled, &value, seq), None)
            .await
            .unwrap();
        assert_eq!(reader.resolve(&garbled.public_key()).await.unwrap(), None);
    }
}

fn dht_node(id: &Identity, net: &LocalTestnet, publish_addrs: bool) -> Node {
    let config = NodeConfig {
        dht: true,
        dht_bootstrap: net.bootstrap().to_vec(),
        publish_addrs,
        ..Default::default()
    };
    Node::bind(id.clone(), "[::1]:0".parse().unwrap(), config).unwrap()
}

/// The seq of `node`'s next record published after `after` (within 30 s).
async fn wait_published(node: &Node, after: Option<i64>) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match node.dht_published() {
            Some(seq) if after.is_none_or(|a| seq > a) => return seq,
            _ => assert!(std::time::Instant::now() < deadline, "not published"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_another_by_its_key_alone() {
    let net = testnet(TESTNET_NODES);
    let (a_id, b_id) = (Identity::generate(), Identity::generate());
    let a = dht_node(&a_id, &net, true);
    let b = dht_node(&b_id, &net, false);
    let seq = a.dht_publish().await.unwrap();
    assert!(a.dht_published().unwrap() >= seq);
    let found = b.dht_lookup(&a_id.public_key()).await.unwrap().unwrap();
    assert_eq!(found.record.addrs, vec![a.local_addr().unwrap()]);
    assert!(b.known_addrs(&a.peer_id()).is_empty());
    let (session, _) = tokio::join!(b.connect_by_key(a_id.public_key()), a.accept());
    let session = session.unwrap();
    assert_eq!(session.remote_peer_id(), a.peer_id());
    assert!(session
        .ping_within(Some(Duration::from_secs(5)))
        .await
        .is_ok());
    // B publishes no address (the default): its record says nothing of where it is.
    b.dht_publish().await.unwrap();
    let of_b = a.dht_lookup(&b_id.public_key()).await.unwrap().unwrap();
    assert!(of_b.record.addrs.is_empty() && of_b.record.contacts.is_empty());
    a.close().await;
    b.close().await;
    assert!(matches!(
        b.dht_lookup(&a_id.public_key()).await,
        Err(NetError::NodeClosed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_published_addresses_is_reached_through_its_contact() {
    let net = testnet(TESTNET_NODES);
    let rendezvous = Node::bind(
        Identity::generate(),
        "[::1]:0".parse().unwrap(),
        NodeConfig::default(),
    )
    .unwrap();
    let contact = Contact {
        peer_id: rendezvous.peer_id(),
        addrs: vec![rendezvous.local_addr().unwrap()],
        relay: false,
        via: Vec::new(),
    };
    let (a_id, b_id) = (Identity::generate(), Identity::generate());
    let a = dht_node(&a_id, &net, false);
    let b = dht_node(&b_id, &net, false);
    let _a_to_rendezvous = a
        .connect(rendezvous.peer_id(), rendezvous.local_addr().unwrap())
        .await
        .unwrap();
    // The publisher puts A's first record out at bind, and a new one when its contacts change.
    let first = wait_published(&a, None).await;
    a.set_dht_contacts(vec![contact.clone()]).unwrap();
    wait_published(&a, Some(first)).await;
    let found = b.dht_lookup(&a_id.public_key()).await.unwrap().unwrap();
    assert!(found.record.addrs.is_empty());
    assert_eq!(found.record.contacts, vec![contact]);
    let session = b.connect_by_key(a_id.public_key()).await.unwrap();
    assert_eq!(session.remote_peer_id(), a.peer_id());
    assert!(session
        .ping_within(Some(Duration::from_secs(5)))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_nobody_published_is_not_found_and_the_dht_off_is_a_config_error() {
    let net = testnet(TESTNET_NODES);
    let b = dht_node(&Identity::generate(), &net, false);
    let nobody = Identity::generate().public_key();
    assert!(matches!(
        b.connect_by_key(nobody).await,
        Err(NetError::NotFound(_))
    ));
    let plain = Node::bind(
        Identity::generate(),
        "[::1]:0".parse().unwrap(),
        NodeConfig::default(),
    )
    .unwrap();
    assert!(matches!(
        plain.dht_lookup(&nobody).await,
        Err(NetError::Config(_))
    ));
}

/// Publish and resolve times on local testnets of 20 and 200 nodes (p50/p95 of `ROUNDS`
/// each, and the 200/20 ratio of the medians), with mainline's 2 s request timeout and
/// with 300 ms. Run on purpose:
/// `cargo test --release -p i6p-net --test dht -- --ignored --nocapture dht_times`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures, not a check: run on purpose"]
async fn dht_times() {
    for timeout in [None, Some(Duration::from_millis(300))] {
        let mut medians = Vec::new();
        for size in [20, 200] {
            medians.push(times_on(size, timeout).await);
        }
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "request timeout {timeout:?}, 200 vs 20 nodes: publish p50 x{:.2}, resolve p50 x{:.2}",
            ratio(medians[1].0, medians[0].0),
            ratio(medians[1].1, medians[0].1)
        );
    }
}

/// Prints publish and resolve p50/p95 on a testnet of `size`; returns the two p50s.
async fn times_on(size: usize, timeout: Option<Duration>) -> (Duration, Duration) {
    const ROUNDS: usize = 15;
    let net = testnet(size);
    // The same number of bootstrap nodes for every size (the testnet lists all of them).
    let boot = &net.bootstrap()[..16];
    let reader = Dht::start(Identity::generate(), boot, timeout).unwrap();
    let (mut publish, mut resolve) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let id = Identity::generate();
        let publisher = Dht::start(id.clone(), boot, timeout).unwrap();
        let start = std::time::Instant::now();
        publisher.publish(&record(7000)).await.unwrap();
        publish.push(start.elapsed());
        let start = std::time::Instant::now();
        assert!(reader.resolve(&id.public_key()).await.unwrap().is_some());
        resolve.push(start.elapsed());
    }
    let pct = |v: &mut Vec<Duration>, p: usize| {
        v.sort();
        v[(v.len() * p / 100).min(v.len() - 1)]
    };
    let (p50p, p95p) = (pct(&mut publish, 50), pct(&mut publish, 95));
    let (p50r, p95r) = (pct(&mut resolve, 50), pct(&mut resolve, 95));
    println!(
        "testnet of {size}, request timeout {timeout:?}: publish p50 {p50p:?} p95 {p95p:?}; resolve p50 {p50r:?} p95 {p95r:?} ({ROUNDS} rounds)"
    );
    (p50p, p50r)
}
