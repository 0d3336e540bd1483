#![allow(clippy::unwrap_used)]

use super::*;

const NOW: u64 = 1_760_000_000;

fn record() -> DhtRecord {
    let mut rec = DhtRecord::new(NOW, 3600);
    rec.addrs = vec!["[2001:db8::1]:7000".parse().unwrap()];
    rec
}

#[test]
fn our_signable_form_is_bep44s() {
    assert_eq!(signable(4, b"Hello world!"), b"3:seqi4e1:v12:Hello world!");
    assert_eq!(signable(-1, b""), b"3:seqi-1e1:v0:");
}

#[test]
fn a_signed_record_verifies_under_its_key_only() {
    let me = Identity::generate();
    let item = sign_item(&me, &record().encode(), 7);
    assert_eq!(item.seq(), 7);
    assert_eq!(verify_item(&me.public_key(), &item, NOW).unwrap(), record());
    let other = Identity::generate();
    assert!(matches!(
        verify_item(&other.public_key(), &item, NOW),
        Err(CoreError::BadSignature(_))
    ));
}

#[test]
fn forged_signatures_and_items_signed_by_another_key_are_rejected() {
    let me = Identity::generate();
    let mallory = Identity::generate();
    let value = record().encode();
    // Mallory's signature presented under my key.
    let sig = mallory.sign(&signable(9, &value));
    let forged =
        MutableItem::new_signed_unchecked(me.public_key().to_bytes(), sig, &value, 9, None);
    assert!(matches!(
        verify_item(&me.public_key(), &forged, NOW),
        Err(CoreError::BadSignature(_))
    ));
    // My signature over another seq (a replayed value with its seq raised).
    let good = sign_item(&me, &value, 9);
    let raised = MutableItem::new_signed_unchecked(
        me.public_key().to_bytes(),
        *good.signature(),
        &value,
        10,
        None,
    );
    assert!(verify_item(&me.public_key(), &raised, NOW).is_err());
    let mut flipped = *good.signature();
    flipped[0] ^= 1;
    let flipped =
        MutableItem::new_signed_unchecked(me.public_key().to_bytes(), flipped, &value, 9, None);
    assert!(verify_item(&me.public_key(), &flipped, NOW).is_err());
}

#[test]
fn malformed_oversized_expired_and_future_values_are_typed_errors() {
    let me = Identity::generate();
    let key = me.public_key();
    let check = |value: &[u8]| verify_item(&key, &sign_item(&me, value, 1), NOW);
    assert!(matches!(
        check(b"garbage"),
        Err(CoreError::Malformed { .. })
    ));
    assert!(matches!(check(b""), Err(CoreError::Truncated(_))));
    assert!(matches!(
        check(&[1u8; 1001]),
        Err(CoreError::FrameTooLarge { .. })
    ));
    let expired = DhtRecord::new(NOW - 100, 50).encode();
    assert!(matches!(check(&expired), Err(CoreError::OutOfDate { .. })));
    let future = DhtRecord::new(NOW + 3600, 50).encode();
    assert!(matches!(check(&future), Err(CoreError::OutOfDate { .. })));
}

#[test]
fn a_resolved_seq_never_goes_back_and_the_memory_is_bounded() {
    let dht = Dht {
        client: Mutex::new(None),
        identity: Identity::generate(),
        state: Mutex::new(State {
            last_seq: None,
            seen: HashMap::new(),
        }),
        publishing: tokio::sync::Mutex::new(()),
    };
    let key = [1u8; 32];
    assert!(dht.note_seen(&key, 10));
    assert!(dht.note_seen(&key, 10));
    assert!(!dht.note_seen(&key, 9));
    assert!(dht.note_seen(&key, 11));
    for i in 0..MAX_SEEN_KEYS as u32 + 10 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k[31] = 2;
        dht.note_seen(&k, 1);
    }
    assert!(dht.state.lock().unwrap().seen.len() <= MAX_SEEN_KEYS);
    assert!(matches!(dht.client(), Err(NetError::NodeClosed)));
}

#[test]
fn seqs_grow_even_when_the_clock_does_not() {
    let dht = Dht {
        client: Mutex::new(None),
        identity: Identity::generate(),
        state: Mutex::new(State {
            last_seq: Some(i64::MAX - 1),
            seen: HashMap::new(),
        }),
        publishing: tokio::sync::Mutex::new(()),
    };
    assert_eq!(dht.next_seq(), i64::MAX);
    dht.state.lock().unwrap().last_seq = None;
    let a = dht.next_seq();
    let b = dht.next_seq();
    assert!(b > a && a > 1_700_000_000_000_000);
}

#[test]
fn bootstrap_lists_are_bounded_and_checked() {
    let local = vec!["127.0.0.1:6881".to_string(), "127.0.0.1:6882".to_string()];
    assert_eq!(bootstrap_addrs(&local).unwrap(), (local.clone(), true));
    assert!(!bootstrap_addrs(&[]).unwrap().1);
    assert!(bootstrap_addrs(&["not an address".into()]).is_err());
    let many: Vec<String> = (0..=MAX_BOOTSTRAP)
        .map(|i| format!("127.0.0.1:{}", 1000 + i))
        .collect();
    assert!(bootstrap_addrs(&many).is_err());
}

#[test]
fn a_testnet_has_bounds() {
    assert!(LocalTestnet::start(1).is_err());
    assert!(LocalTestnet::start(MAX_TESTNET_NODES + 1).is_err());
}
