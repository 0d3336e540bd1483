//! The fuzz corpus as a regression test: every committed seed and every input that once
//! crashed a fuzz target is run through that target (the same code `cargo fuzz` runs).
//!
//! Seeds live in `rust/fuzz/corpus-seed/<target>/`, crashes found later in
//! `rust/fuzz/regressions/<target>/`. The seeds are real traffic, written by the real
//! encoders: regenerate them with
//! `cargo test -p i6p-core --test fuzz_corpus -- --ignored write_seed_corpus`.

#![allow(clippy::unwrap_used)]

use i6p_core::erasure::{Coder, ErasureParams, Stripe};
use i6p_core::fec::{
    encode_repair, encode_shape, encode_stripe_header, FecLayout, FecRequest, LossReport, Shard,
    Share, FRAME_FEC_END, FRAME_FEC_GET, FRAME_FEC_SHAPE, FRAME_LOSS, FRAME_PROOF, FRAME_REPAIR,
    FRAME_STRIPE,
};
use i6p_core::frame::{self, FrameType};
use i6p_core::fuzzing::{self, TARGETS};
use i6p_core::partial::TransferState;
use i6p_core::ticket::{self, Ticket};
use i6p_core::transfer::{
    encode_blob, encode_group_header, ErrorCode, GetRequest, TransferError, FRAME_BLOB,
    FRAME_ERROR, FRAME_GET,
};
use i6p_core::tree::{verify_group, Outboard};
use i6p_core::{Close, Hello, Identity, PeerId, PeerInfo, Ping, Role, PROTOCOL_VERSION};
use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_seed_and_past_crash_runs_clean() {
    let failed = i6p_core::fuzzing::replay_corpus(&fuzz_dir(), TARGETS, fuzzing::run);
    assert!(failed.is_empty(), "fuzz inputs that fail: {failed:#?}");
}

/// The net crate's targets (`i6p_net::fuzzing::TARGETS`), whose corpus its own
/// `tests/fuzz_corpus.rs` runs; this crate cannot depend on it.
const NET_TARGETS: &[&str] = &["journal", "provider"];

#[test]
fn every_corpus_directory_names_a_target() {
    for kind in ["corpus-seed", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                TARGETS.contains(&name.as_str()) || NET_TARGETS.contains(&name.as_str()),
                "{kind}/{name}"
            );
        }
    }
}

/// Seeds for one target, written under `corpus-seed/<target>/`.
fn seeds(target: &str) -> fuzzing::SeedDir {
    fuzzing::SeedDir::new(&fuzz_dir(), target)
}

/// A frame of any type, as the net crate writes them (`frame::encode` takes only the control
/// types).
fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn with_kind(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(payload);
    out
}

fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn hello_message() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        timestamp_ms: 1_760_000_000_123,
        capabilities: vec![
            ("blobs".into(), "1".into()),
            ("fec".into(), "1".into()),
            ("agent".into(), "i6p/0.1.0".into()),
        ],
        listen_addrs: vec![
            "192.0.2.10:4433".parse().unwrap(),
            "[2001:db8::10]:4433".parse().unwrap(),
            "[fe80::1%2]:4433".parse().unwrap(),
        ],
        transfer_only: false,
    }
}

fn get_request() -> GetRequest {
    GetRequest {
        hash: *blake3::hash(b"a blob").as_bytes(),
        group_log: 18,
        ranges: vec![(0, 4), (9, 1), (12, 30)],
    }
}

fn fec_request() -> FecRequest {
    FecRequest {
        transfer: 0x1234_5678,
        shard_len: 1200,
        data: 32,
        min_parity: 2,
        max_parity: 32,
        target_ppm: 1,
        loss_ppm: 12_000,
        share: Share::split(32, 1, 3).unwrap(),
        get: get_request(),
    }
}

/// A blob of five whole 16 KiB groups and a short one, the group record of the short one
/// (with its two-hash proof), and the blob's root.
fn last_group() -> (Vec<u8>, Vec<u8>, [u8; 32]) {
    let data = blob(5 * (1 << 14) + 200);
    let outboard = Outboard::from_bytes(&data);
    let proof = outboard.proof(14, 5).unwrap();
    let mut record = encode_group_header(5, &proof);
    record.extend_from_slice(&data[5 << 14..]);
    (data, record, outboard.root())
}

/// Bytes of a group record before its data.
fn proof_len_of(record: &[u8]) -> usize {
    9 + 32 * usize::from(record[8])
}

fn group_input(root: [u8; 32], size: u64, group_log: u8, record: &[u8]) -> Vec<u8> {
    let mut out = root.to_vec();
    out.extend_from_slice(&size.to_be_bytes());
    out.push(group_log);
    out.extend_from_slice(record);
    out
}

fn provider(seed: u8) -> Ticket {
    Ticket {
        peer_id: Identity::generate().peer_id(),
        addrs: vec![
            format!("192.0.2.{seed}:4433").parse().unwrap(),
            format!("[2001:db8::{seed}]:4433").parse().unwrap(),
        ],
        hash: *blake3::hash(b"a blob").as_bytes(),
        size: 123_456_789,
        collection: false,
        rendezvous: Vec::new(),
        key: None,
    }
}

#[test]
#[ignore = "writes the seed corpus; run on purpose"]
fn write_seed_corpus() {
    let id = Identity::generate();
    let binding = *blake3::hash(b"tls exporter secret").as_bytes();
    let hello = hello_message();
    let signed = hello.sign(&id, Role::Dialer, &binding).unwrap();
    let peer_info = PeerInfo {
        observed_addr: "[2001:db8::77]:50123".parse().unwrap(),
    }
    .encode();
    let ping = Ping {
        nonce: 0x0102_0304_0506_0708,
    }
    .encode();
    let close = Close {
        code: 0,
        reason: "node shutting down".into(),
    }
    .encode();
    let get = get_request().encode();
    let fec_get = fec_request().encode();
    let error = TransferError {
        code: ErrorCode::NotFound,
        message: "no such blob".into(),
    }
    .encode();
    let (data, record, root) = last_group();
    let loss = LossReport {
        transfer: 0x1234_5678,
        received: 3100,
        lost: 42,
        through: 17,
    }
    .encode();
    let repair = encode_repair(&[3, 17, 18]);
    let mut stripe = encode_stripe_header(2).to_vec();
    stripe.extend_from_slice(&data[..300]);

    let s = seeds("frame");
    let mut control = frame::encode(FrameType::Hello, &signed).unwrap();
    control.extend(frame::encode(FrameType::PeerInfo, &peer_info).unwrap());
    control.extend(frame::encode(FrameType::Ping, &ping).unwrap());
    control.extend(frame::encode(FrameType::Pong, &ping).unwrap());
    control.extend(frame::encode(FrameType::Close, &close).unwrap());
    s.write("control-stream", &control);
    let mut blobs = raw_frame(FRAME_GET, &get);
    blobs.extend(raw_frame(FRAME_BLOB, &encode_blob(123_456_789)));
    s.write("blob-stream", &blobs);
    s.write("refused", &raw_frame(FRAME_ERROR, &error));
    let mut fec = raw_frame(FRAME_FEC_GET, &fec_get);
    fec.extend(raw_frame(FRAME_FEC_SHAPE, &encode_shape(1200)));
    fec.extend(raw_frame(FRAME_PROOF, &record[..proof_len_of(&record)]));
    fec.extend(raw_frame(FRAME_LOSS, &loss));
    fec.extend(raw_frame(FRAME_REPAIR, &repair));
    fec.extend(raw_frame(FRAME_FEC_END, &[]));
    s.write("fec-stream", &fec);

    let s = seeds("hello");
    let mut input = id.public_key().to_bytes().to_vec();
    input.extend_from_slice(&binding);
    input.push(Role::Dialer as u8);
    input.extend_from_slice(&signed);
    s.write("dialer", &input);
    let transfers = Hello {
        transfer_only: true,
        ..hello.clone()
    };
    let mut input = id.public_key().to_bytes().to_vec();
    input.extend_from_slice(&binding);
    input.push(Role::Dialer as u8);
    input.extend(transfers.sign(&id, Role::Dialer, &binding).unwrap());
    s.write("dialer-transfers", &input);
    let bare = Hello {
        capabilities: Vec::new(),
        listen_addrs: Vec::new(),
        ..hello.clone()
    };
    let mut input = id.public_key().to_bytes().to_vec();
    input.extend_from_slice(&binding);
    input.push(Role::Listener as u8);
    input.extend(bare.sign(&id, Role::Listener, &binding).unwrap());
    s.write("listener-bare", &input);

    let s = seeds("control");
    s.write("ping", &with_kind(FrameType::Ping as u8, &ping));
    s.write("pong", &with_kind(FrameType::Pong as u8, &ping));
    s.write(
        "peer-info-v6",
        &with_kind(FrameType::PeerInfo as u8, &peer_info),
    );
    let v4 = PeerInfo {
        observed_addr: "198.51.100.7:4433".parse().unwrap(),
    };
    s.write(
        "peer-info-v4",
        &with_kind(FrameType::PeerInfo as u8, &v4.encode()),
    );
    s.write("close", &with_kind(FrameType::Close as u8, &close));

    let s = seeds("transfer");
    s.write("get-three-ranges", &with_kind(FRAME_GET, &get));
    let whole = GetRequest {
        ranges: vec![(0, 1)],
        group_log: 14,
        ..get_request()
    };
    s.write("get-one-group", &with_kind(FRAME_GET, &whole.encode()));
    s.write("blob", &with_kind(FRAME_BLOB, &encode_blob(1 << 30)));
    s.write("error", &with_kind(FRAME_ERROR, &error));

    let s = seeds("group");
    let small = blob(300);
    let small_record = [encode_group_header(0, &[]), small.clone()].concat();
    let small_root = *blake3::hash(&small).as_bytes();
    s.write(
        "whole-blob",
        &group_input(small_root, 300, 14, &small_record),
    );
    s.write(
        "last-group",
        &group_input(root, data.len() as u64, 14, &record),
    );
    let proof: Vec<[u8; 32]> = record[9..proof_len_of(&record)]
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();
    verify_group(&root, data.len() as u64, 14, 5, &data[5 << 14..], &proof).unwrap();

    let s = seeds("fec");
    s.write("fec-get", &with_kind(FRAME_FEC_GET, &fec_get));
    s.write("shape", &with_kind(FRAME_FEC_SHAPE, &encode_shape(1200)));
    s.write(
        "proof",
        &with_kind(FRAME_PROOF, &record[..proof_len_of(&record)]),
    );
    s.write("stripe", &with_kind(FRAME_STRIPE, &stripe));
    s.write("loss", &with_kind(FRAME_LOSS, &loss));
    s.write("repair", &with_kind(FRAME_REPAIR, &repair));

    let s = seeds("shard");
    let params = ErasureParams::new(4, 2).unwrap();
    let layout = FecLayout::new(data.len() as u64, 256, 1200).unwrap();
    let mut coded = Stripe::new();
    Coder::new(params)
        .unwrap()
        .encode(&data[1024..2048], &mut coded)
        .unwrap();
    for index in [0, 5] {
        let shard = Shard {
            transfer: 7,
            stripe: 1,
            index,
            params,
            payload: coded.shard(usize::from(index)).unwrap(),
        };
        let mut datagram = Vec::new();
        shard.encode(&mut datagram);
        Shard::decode(&datagram, &layout).unwrap();
        let mut input = (data.len() as u64).to_be_bytes().to_vec();
        input.extend_from_slice(&256u16.to_be_bytes());
        input.extend(datagram);
        s.write(&format!("stripe-1-shard-{index}"), &input);
    }

    write_collection_seeds();
    write_dht_record_seeds();
    let s = seeds("ticket");
    let one = provider(1);
    s.write("one-provider", one.to_string().as_bytes());
    let three = ticket::join(&[one.clone(), provider(2), provider(3)]).unwrap();
    s.write("three-providers", three.as_bytes());
    let raw = one.to_bytes();
    s.write("one-provider-bytes", &raw);
    s.write("one-provider-body", &raw[..raw.len() - 4]);
    let body = data_encoding::BASE32_NOPAD
        .decode(three[3..].to_ascii_uppercase().as_bytes())
        .unwrap();
    s.write("three-providers-body", &body[..body.len() - 4]);
    let bare = Ticket {
        peer_id: PeerId::from_bytes([0x42; 32]),
        addrs: Vec::new(),
        hash: [0; 32],
        size: 0,
        collection: false,
        rendezvous: Vec::new(),
        key: None,
    };
    s.write("no-address", bare.to_string().as_bytes());
    let by_key = Ticket::by_key(Identity::generate().public_key(), [7; 32], 1 << 30, false);
    s.write("by-key", by_key.to_string().as_bytes());
    let via = Ticket {
        rendezvous: vec![i6p_core::contact::Contact {
            peer_id: PeerId::from_bytes([0x43; 32]),
            addrs: vec!["[2001:db8:ff::c]:7000".parse().unwrap()],
            relay: true,
            via: Vec::new(),
        }],
        ..one.clone()
    };
    s.write("with-rendezvous", via.to_string().as_bytes());
    s.write("with-rendezvous-bytes", &via.to_bytes());
    s.write("contact-bytes", &via.rendezvous[0].to_bytes());
    let behind = i6p_core::contact::Contact {
        peer_id: PeerId::from_bytes([0x44; 32]),
        via: via.rendezvous.clone(),
        ..via.rendezvous[0].clone()
    };
    s.write("contact-with-via-bytes", &behind.to_bytes());

    let s = seeds("state");
    // What a download's state file holds with groups 0, 2 and 5 of the blob saved.
    let mut state = TransferState::new(root, data.len() as u64, 14).unwrap();
    for index in [0, 2, 5] {
        state.set(index);
    }
    let file = state.encode();
    assert_eq!(TransferState::decode(&file).unwrap(), state);
    s.write("half-done", &file);
    s.write("half-done-body", &file[..file.len() - 8]);
    let empty = TransferState::new([0; 32], 0, 18).unwrap().encode();
    s.write("empty-blob", &empty);

    // The main seeds are accepted by their decoders (not only refused without a panic).
    assert_eq!(
        Hello::verify(&signed, &id.public_key(), Role::Dialer, &binding),
        Ok(hello)
    );
    assert_eq!(GetRequest::decode(&get), Ok(get_request()));
    assert_eq!(FecRequest::decode(&fec_get), Ok(fec_request()));
    assert_eq!(ticket::parse_all(&three).unwrap().len(), 3);
    every_seed_and_past_crash_runs_clean();
}

#[test]
#[ignore = "writes the collection seeds; run on purpose (write_seed_corpus runs it too)"]
fn write_collection_seeds() {
    use i6p_core::collection::{encode, Entry};
    let entry = |path: &str, size: u64| Entry {
        path: path.into(),
        size,
        hash: *blake3::hash(path.as_bytes()).as_bytes(),
    };
    let s = seeds("collection");
    s.write("empty", &encode(vec![]).unwrap());
    let tree = vec![
        entry("a.txt", 5),
        entry("d/e/f.bin", 3 << 20),
        entry("d/empty", 0),
    ];
    s.write("tree", &encode(tree).unwrap());
    let mut hostile = encode(vec![entry("aa/x", 1)]).unwrap();
    hostile[14..16].copy_from_slice(b"..");
    s.write("dotdot", &hostile);
}

#[test]
#[ignore = "writes the DHT record seeds; run on purpose (write_seed_corpus runs it too)"]
fn write_dht_record_seeds() {
    use i6p_core::contact::Contact;
    use i6p_core::dht_record::DhtRecord;
    let s = seeds("dht_record");
    s.write("empty", &DhtRecord::new(1_760_000_000, 3600).encode());
    let mut full = DhtRecord::new(1_760_000_000, 3600);
    full.relay = true;
    full.addrs = vec![
        "[2001:db8::5]:7000".parse().unwrap(),
        "192.0.2.5:7000".parse().unwrap(),
    ];
    full.contacts = vec![Contact {
        peer_id: PeerId::from_public_key(&[9; 32]),
        addrs: vec!["203.0.113.9:7000".parse().unwrap()],
        relay: true,
        via: Vec::new(),
    }];
    s.write("addrs_and_contact", &full.encode());
}
