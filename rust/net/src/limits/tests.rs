//! The resource policy's unit tests.

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn now() -> Instant {
    Instant::now()
}

fn small() -> Limits {
    Limits {
        max_connections: 6,
        max_connections_per_peer: 2,
        max_connections_per_prefix: 3,
        max_handshakes: 4,
        ..Limits::default()
    }
}

#[test]
fn a_prefix_gets_its_share_and_others_still_get_in() {
    let table = Connections::new(small());
    let mut held = Vec::new();
    for port in 1..=3 {
        let a = table.admit(addr(&format!("[2001:db8:1:2::{port}]:{port}")), true, now());
        let Admission::Accept(mut slot) = a else {
            panic!("{a:?}")
        };
        slot.handshake_done();
        held.push(slot);
    }
    // Another host in the same /64 is refused; one in another /64 is not.
    assert!(matches!(
        table.admit(addr("[2001:db8:1:2:ffff::9]:9"), true, now()),
        Admission::Refuse("too many connections from this address prefix")
    ));
    assert!(matches!(
        table.admit(addr("[2001:db8:1:3::1]:9"), true, now()),
        Admission::Accept(_)
    ));
    drop(held.pop());
    assert!(matches!(
        table.admit(addr("[2001:db8:1:2::7]:9"), true, now()),
        Admission::Accept(_)
    ));
}

#[test]
fn ipv4_and_mapped_ipv4_are_one_prefix() {
    assert_eq!(
        Prefix::of(addr("192.0.2.7:1")),
        Prefix::of(addr("[::ffff:192.0.2.7]:2"))
    );
    assert_ne!(
        Prefix::of(addr("192.0.2.7:1")),
        Prefix::of(addr("192.0.2.8:1"))
    );
}

#[test]
fn handshakes_past_half_are_retried_and_at_the_limit_refused() {
    let table = Connections::new(small());
    let mut held = Vec::new();
    for i in 0..2 {
        match table.admit(addr(&format!("[2001:db8:{i}::1]:1")), false, now()) {
            Admission::Accept(slot) => held.push(slot),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        table.admit(addr("[2001:db8:9::1]:1"), false, now()),
        Admission::Retry
    ));
    for i in 2..4 {
        match table.admit(addr(&format!("[2001:db8:{i}::1]:1")), true, now()) {
            Admission::Accept(slot) => held.push(slot),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        table.admit(addr("[2001:db8:9::1]:1"), true, now()),
        Admission::Refuse("too many handshakes in progress")
    ));
    for slot in &mut held {
        slot.handshake_done();
    }
    assert_eq!(table.counts(), (4, 0));
    held.clear();
    assert_eq!(table.counts(), (0, 0));
}

#[test]
fn a_prefix_gets_its_rate_of_new_connections_and_others_are_untouched() {
    let limits = Limits {
        handshake_rate_per_prefix: 10,
        ..Limits::default()
    };
    let table = Connections::new(limits);
    let start = Instant::now();
    let flood = addr("[2001:db8:66::1]:1");
    // A burst of two seconds' worth is admitted, then nothing until tokens refill.
    let mut admitted = 0;
    for _ in 0..100 {
        if let Admission::Accept(mut slot) = table.admit(flood, true, start) {
            slot.handshake_done();
            admitted += 1;
        }
    }
    assert_eq!(admitted, 20);
    assert!(matches!(
        table.admit(flood, true, start),
        Admission::Refuse("too many new connections from this address prefix")
    ));
    assert!(matches!(
        table.admit(addr("[2001:db8:77::1]:1"), true, start),
        Admission::Accept(_)
    ));
    let later = start + Duration::from_millis(500);
    let refilled = (0..10)
        .filter(|_| matches!(table.admit(flood, true, later), Admission::Accept(_)))
        .count();
    assert_eq!(refilled, 5);
}

#[test]
fn a_peer_gets_its_share_of_connections() {
    let table = Connections::new(small());
    let peer = PeerId::from_bytes([7; 32]);
    let mut held = Vec::new();
    for i in 0..3 {
        let Admission::Accept(mut slot) =
            table.admit(addr(&format!("[2001:db8:{i}::1]:1")), true, now())
        else {
            panic!()
        };
        let identified = slot.identified(peer);
        if i < 2 {
            assert!(identified.is_ok());
        } else {
            assert_eq!(identified, Err("too many connections from this peer"));
        }
        held.push(slot);
    }
}

#[tokio::test]
async fn request_slots_are_per_peer_and_per_node() {
    let limits = Limits {
        max_requests: 3,
        max_requests_per_peer: 2,
        ..Limits::default()
    };
    let requests = Requests::new(&limits);
    let (a, b, c) = (
        PeerId::from_bytes([1; 32]),
        PeerId::from_bytes([2; 32]),
        PeerId::from_bytes([3; 32]),
    );
    let wait = Duration::from_millis(20);
    let a1 = requests.take(a, wait).await.unwrap();
    let _a2 = requests.take(a, wait).await.unwrap();
    let refused = requests.take(a, wait).await.err();
    assert_eq!(refused, Some("too many requests from this peer at once"));
    let _b1 = requests.take(b, wait).await.unwrap();
    // The node is full: c waits, and is refused when no slot frees in time...
    let refused = requests.take(c, wait).await.err();
    assert_eq!(
        refused,
        Some("the provider is serving as many requests as it can")
    );
    assert_eq!(requests.in_use(), 3);
    // ...or served as soon as one does.
    let waiting = tokio::spawn({
        let requests = requests.clone();
        async move { requests.take(c, Duration::from_secs(5)).await.is_ok() }
    });
    tokio::time::sleep(wait).await;
    drop(a1);
    assert!(waiting.await.unwrap());
    assert_eq!(requests.in_use(), 2);
}
