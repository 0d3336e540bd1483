//! The net crate's fuzz corpus as a regression test: every committed seed and every input
//! that once crashed a net fuzz target (`i6p_net::fuzzing`) is run through that target.
//!
//! Seeds live in `rust/fuzz/corpus-seed/<target>/`, crashes found later in
//! `rust/fuzz/regressions/<target>/`. The seeds are written by the real code (a listener's
//! ticket file, action sequences that make real requests): regenerate them with
//! `cargo test -p i6p-net --test fuzz_corpus -- --ignored write_seed_corpus`.

#![allow(clippy::unwrap_used)]

use i6p_core::fec::LossReport;
use i6p_core::transfer::GetRequest;
use i6p_core::Identity;
use i6p_net::fuzzing::{self, encode_actions, fec_get, Action, PROVIDER_BLOB_LEN, TARGETS};
use i6p_net::{Node, NodeConfig};
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

/// Seeds for one target, written under `corpus-seed/<target>/`.
fn seeds(target: &str) -> i6p_core::fuzzing::SeedDir {
    i6p_core::fuzzing::SeedDir::new(&fuzz_dir(), target)
}

/// A listener's ticket file after `dials` full handshakes, written by a real node.
async fn ticket_file(dials: usize) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("i6p-seed-journal-{}-{dials}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let config = NodeConfig {
        state_dir: Some(dir.clone()),
        ..NodeConfig::default()
    };
    let listener = Node::bind(Identity::generate(), "[::1]:0".parse().unwrap(), config).unwrap();
    let addr = listener.local_addr().unwrap();
    for _ in 0..dials {
        let dialer = Node::bind(
            Identity::generate(),
            "[::1]:0".parse().unwrap(),
            NodeConfig::default(),
        )
        .unwrap();
        let session = dialer.connect(listener.peer_id(), addr).await.unwrap();
        session.ping().await.unwrap();
        session.close(0, "done").await;
        dialer.close().await;
    }
    listener.close().await;
    let path = dir.join(format!("{}.tickets", listener.peer_id()));
    let file = fs::read(&path).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    file
}

fn whole_blob(hash: [u8; 32]) -> GetRequest {
    GetRequest {
        hash,
        group_log: 14,
        ranges: vec![(0, (PROVIDER_BLOB_LEN >> 14) as u64)],
    }
}

#[test]
#[ignore = "writes the seed corpus; run on purpose"]
fn write_seed_corpus() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s = seeds("journal");
    let one = runtime.block_on(ticket_file(1));
    let three = runtime.block_on(ticket_file(3));
    assert!(one.len() > 8, "the listener issued no ticket");
    s.write("one-client", &one);
    s.write("three-clients", &three);
    s.write("empty", b"i6pres02");
    // The first record without its magic and checksum: the target seals it.
    s.write("one-client-record", &one[8..one.len() - 8]);

    // The served blob's hash is the harness's; a GET without a hash names it.
    let served = *blake3::hash(
        &(0..PROVIDER_BLOB_LEN)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .as_bytes();
    let s = seeds("provider");
    let get = whole_blob(served);
    let mut read_all = vec![(0, Action::Open), (0, Action::Get(get.clone()))];
    read_all.extend((0..40).map(|_| (0, Action::Read(65535))));
    s.write("get-and-read", &encode_actions(&read_all));
    let one_group = GetRequest {
        ranges: vec![(3, 1), (60, 4)],
        ..get.clone()
    };
    s.write(
        "get-two-ranges-finish-read",
        &encode_actions(&[
            (1, Action::Open),
            (1, Action::Get(one_group.clone())),
            (1, Action::Finish),
            (1, Action::Read(65535)),
            (1, Action::Read(65535)),
            (1, Action::Read(65535)),
        ]),
    );
    let mut fec = vec![
        (0, Action::Open),
        (0, Action::FecGet(fec_get(one_group.clone(), 7))),
        (0, Action::Read(4096)),
        (0, Action::Sleep(5)),
    ];
    fec.push((
        0,
        Action::Loss(LossReport {
            transfer: 7,
            received: 10,
            lost: 2,
            through: 1,
        }),
    ));
    fec.push((0, Action::Repair(vec![0, 1])));
    fec.extend((0..8).map(|_| (0, Action::Read(4096))));
    fec.push((0, Action::Datagram(vec![1; 40])));
    s.write("fec-get-loss-repair", &encode_actions(&fec));
    s.write(
        "malformed-frames",
        &encode_actions(&[
            (0, Action::Open),
            (0, Action::Write(vec![0x10, 0, 0, 0, 3, 1, 2, 3])),
            (0, Action::Read(100)),
            (2, Action::Open),
            (2, Action::Write(vec![0x13, 0xff, 0xff, 0xff, 0xff])),
            (2, Action::Read(100)),
            (3, Action::Write(vec![0x42, 0, 0, 0, 0])),
            (3, Action::Finish),
            (3, Action::Read(100)),
        ]),
    );
    s.write(
        "reset-mid-request",
        &encode_actions(&[
            (0, Action::Open),
            (0, Action::Get(get)),
            (0, Action::Read(1000)),
            (0, Action::Reset(3)),
            (0, Action::Stop(4)),
            (1, Action::Open),
            (1, Action::FecGet(fec_get(one_group, 9))),
            (1, Action::Read(1000)),
            (1, Action::Drop),
            (2, Action::Sleep(3)),
        ]),
    );
    every_seed_and_past_crash_runs_clean();
}

#[test]
fn every_corpus_directory_names_a_target() {
    // The core crate's targets share the directories (`i6p_core::fuzzing::TARGETS`).
    for kind in ["corpus-seed", "regressions"] {
        for target in TARGETS {
            let dir = fuzz_dir().join(kind).join(target);
            assert!(kind == "regressions" || dir.is_dir(), "no {kind}/{target}");
        }
    }
}
