//! Simulation tests of FEC mode's machines: the provider's send schedule and flow window
//! and the requester's stripe assembler, exchanging real SHARD datagrams and stream frames
//! over simulated paths (seeded: the same run every time, in simulated time).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fec_peers;
mod sim;

use fec_peers::{blob, run_batch, wrong_groups, BatchSetup, Outcome, PeerSetup};
use i6p_core::fec::{Failure, MemberFate, Source};
use sim::{Burst, LinkConfig};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);
/// Groups of 64 KiB.
const GROUP_LOG: u8 = 16;

fn setup(groups: u64, data: usize, shard_len: usize, peers: Vec<PeerSetup>) -> BatchSetup {
    BatchSetup {
        group_log: GROUP_LOG,
        first: 0,
        count: groups,
        data,
        min_parity: 1,
        max_parity: 8,
        shard_len,
        stall: Duration::from_secs(5),
        peers,
    }
}

fn peer(path: LinkConfig) -> PeerSetup {
    PeerSetup {
        path,
        pace: None,
        lies: false,
        silent_after: None,
        breaks: false,
    }
}

/// Every group of the batch came, with the blob's bytes.
fn assert_complete(out: &Outcome, blob: &[u8], groups: u64) {
    assert_eq!(out.failure, None);
    assert_eq!(out.groups.len() as u64, groups, "groups handed out");
    assert_eq!(
        wrong_groups(out, blob, GROUP_LOG),
        BTreeSet::new(),
        "wrong bytes"
    );
}

#[test]
fn random_loss_is_repaired_exactly_where_a_stripe_lost_more_than_its_parity() {
    let data = blob(4 << 20, 1);
    let path = LinkConfig::clean(20 * MS).lossy(0.03).seeded(7);
    let setup = setup(64, 16, 1024, vec![peer(path)]);
    let out = run_batch(&setup, &data, Instant::now());
    assert_complete(&out, &data, 64);
    // Counted from the link: the stripes of which more shards were lost than they had parity.
    let beyond_parity: BTreeSet<u64> = out
        .shards
        .iter()
        .filter(|(stripe, (_, lost))| *lost as usize > out.parity[stripe])
        .map(|(&stripe, _)| stripe)
        .collect();
    let repaired: BTreeSet<u64> = out.repaired.iter().copied().collect();
    assert_eq!(
        repaired.len(),
        out.repaired.len(),
        "a stripe asked for twice"
    );
    assert!(out.repaired.len() <= beyond_parity.len());
    assert_eq!(
        repaired, beyond_parity,
        "repaired exactly the stripes parity could not cover"
    );
    assert!(
        !repaired.is_empty(),
        "3 % loss at the least parity loses some stripes"
    );
    let stats = out.links[0];
    assert!(stats.lost_random > 100, "{stats:?}");
    // The parity followed the loss up from the minimum.
    let last = *out.parity.values().last().unwrap();
    assert!(last > 1, "parity stayed at {last}");
}

#[test]
fn the_flow_window_settles_below_a_shallow_bottleneck() {
    // 25 MB/s with a 50 ms queue on a 100 ms round trip (the shallow queue the window was
    // made for); the sender paces at twice the bottleneck, as a congestion controller that
    // overestimates the path would. (A shallower one is a known
    // limit of the window: see the comment of `i6p_core::fec::FlowWindow`'s module.)
    let rate = 25_000_000;
    let queue = 1_250_000;
    let data = blob(24 << 20, 2);
    let path = LinkConfig::clean(50 * MS).limited(rate, queue).seeded(3);
    let mut provider = peer(path);
    provider.pace = Some(2 * rate);
    let setup = setup(384, 32, 1200, vec![provider]);
    let out = run_batch(&setup, &data, Instant::now());
    assert_complete(&out, &data, 384);
    let stats = out.links[0];
    let overflow = stats.lost_overflow as f64 / stats.sent as f64;
    let windows = &out.windows[0];
    let tail = &windows[windows.len() * 2 / 3..];
    let (low, high) = (tail.iter().min().unwrap(), tail.iter().max().unwrap());
    // The stated margin: what overflows is the start-up's overshoot, at most one queue's
    // worth of datagrams in all (a transfer twice as long loses the same 662 datagrams), and
    // at most 5 % of the datagrams of this short transfer.
    let datagram = 1200 + i6p_core::fec::SHARD_HEADER_LEN as u64;
    assert!(
        stats.lost_overflow * datagram <= queue as u64,
        "{} datagrams overflowed",
        stats.lost_overflow
    );
    assert!(overflow <= 0.05, "{overflow} of the datagrams overflowed");
    // The window settles: over the last third of the reports it stays within a factor of
    // two, and below twice what the path holds (bandwidth × delay plus the queue).
    let stripe_bytes = 32 * 1200;
    let holds = (rate as f64 * 0.100) as u64 + queue as u64;
    assert!(*high <= 2 * low, "window still swings: {low}..{high}");
    assert!(
        high * stripe_bytes <= 2 * holds,
        "window {high} stripes above the path"
    );
    // And the path was used: the batch took at most twice its time at the bottleneck rate.
    let ideal = Duration::from_secs_f64(data.len() as f64 / rate as f64);
    assert!(out.took <= ideal * 2, "{:?} against {ideal:?}", out.took);
}

#[test]
fn bursty_loss_and_reordering_complete_with_the_right_bytes() {
    let data = blob(3 << 20, 4);
    let burst = Burst {
        enter: 0.01,
        leave: 0.2,
        loss: 0.6,
    };
    for seed in [1, 2, 3] {
        let path = LinkConfig::clean(15 * MS)
            .lossy(0.005)
            .bursty(burst)
            .jittery(8 * MS)
            .seeded(seed);
        let mut provider = peer(path);
        provider.pace = Some(20_000_000);
        let setup = setup(48, 16, 1024, vec![provider]);
        let out = run_batch(&setup, &data, Instant::now());
        assert_complete(&out, &data, 48);
        assert!(
            !out.repaired.is_empty(),
            "bursts beat the parity somewhere (seed {seed})"
        );
    }
}

#[test]
fn two_providers_combine_their_shares() {
    let data = blob(2 << 20, 5);
    let peers = vec![
        peer(LinkConfig::clean(10 * MS).lossy(0.02).seeded(11)),
        peer(LinkConfig::clean(25 * MS).lossy(0.02).seeded(12)),
    ];
    let setup = setup(32, 16, 1024, peers);
    let out = run_batch(&setup, &data, Instant::now());
    assert_complete(&out, &data, 32);
    assert!(out.combined > 0, "no stripe was rebuilt from both");
    assert!(out
        .groups
        .values()
        .all(|(_, source)| *source == Source::Mixed));
    // Each sent its share: about half of the shards each.
    let (a, b) = (out.links[0].sent as f64, out.links[1].sent as f64);
    assert!((a / b - 1.0).abs() < 0.3, "{a} vs {b}");
}

#[test]
fn a_provider_sending_junk_shards_is_found_and_the_blob_still_completes() {
    let data = blob(2 << 20, 6);
    let honest = peer(LinkConfig::clean(10 * MS).lossy(0.01).seeded(21));
    let mut liar = peer(LinkConfig::clean(10 * MS).lossy(0.01).seeded(22));
    liar.lies = true;
    let t0 = Instant::now();
    // Combining: the groups rebuilt from both fail verification, and nobody can be blamed.
    let joint = run_batch(
        &setup(32, 16, 1024, vec![honest.clone(), liar.clone()]),
        &data,
        t0,
    );
    let wrong = wrong_groups(&joint, &data, GROUP_LOG);
    assert!(!wrong.is_empty(), "junk shards went unnoticed");
    assert!(wrong.iter().all(|g| joint.groups[g].1 == Source::Mixed));
    // So combining stops: the failed groups are fetched again, each half from one provider.
    let (first, last) = (*wrong.first().unwrap(), *wrong.last().unwrap());
    let span = last - first + 1;
    let half = span / 2;
    let alone = |p: &PeerSetup, first: u64, count: u64| {
        let mut s = setup(count, 16, 1024, vec![p.clone()]);
        s.first = first;
        run_batch(&s, &data, t0)
    };
    let from_honest = alone(&honest, first, half);
    assert_complete_range(&from_honest, &data, first, half);
    let from_liar = alone(&liar, first + half, span - half);
    let blamed = wrong_groups(&from_liar, &data, GROUP_LOG);
    assert!(!blamed.is_empty(), "the liar's own groups fail");
    assert!(blamed
        .iter()
        .all(|g| from_liar.groups[g].1 == Source::Member(0)));
    // The liar is named and dropped; the honest provider fetches what it sent.
    let redo = alone(&honest, first + half, span - half);
    assert_complete_range(&redo, &data, first + half, span - half);
    let mut have: BTreeSet<u64> = (0..32).filter(|g| !wrong.contains(g)).collect();
    have.extend(from_honest.groups.keys());
    have.extend(redo.groups.keys());
    assert_eq!(have, (0..32).collect(), "the blob is complete");
}

fn assert_complete_range(out: &Outcome, blob: &[u8], first: u64, count: u64) {
    assert_eq!(out.failure, None);
    let got: Vec<u64> = out.groups.keys().copied().collect();
    assert_eq!(got, (first..first + count).collect::<Vec<_>>());
    assert!(wrong_groups(out, blob, GROUP_LOG).is_empty());
}

#[test]
fn a_provider_whose_stream_breaks_is_dropped_and_the_other_repairs_its_part() {
    let data = blob(2 << 20, 7);
    // Paced at 5 MB/s each, so the batch takes a while.
    let mut steady = peer(LinkConfig::clean(10 * MS).lossy(0.01).seeded(31));
    steady.pace = Some(5_000_000);
    let mut breaking = peer(LinkConfig::clean(10 * MS).lossy(0.01).seeded(32));
    breaking.pace = Some(5_000_000);
    breaking.silent_after = Some(40 * MS);
    breaking.breaks = true;
    let t0 = Instant::now();
    let out = run_batch(&setup(32, 16, 1024, vec![steady, breaking]), &data, t0);
    assert_complete(&out, &data, 32);
    assert_eq!(out.broken, vec![(1, MemberFate::Dropped)]);
    // Alone, the other's share cannot rebuild a stripe: what is left comes repaired, from it.
    let after: Vec<usize> = out
        .repairs_to
        .iter()
        .filter(|(_, at)| *at > t0 + 40 * MS)
        .map(|(member, _)| *member)
        .collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|&m| m == 0),
        "repairs asked of a dropped provider"
    );
}

#[test]
fn a_provider_that_goes_silent_fails_the_batch_after_its_stall_timeout() {
    let data = blob(1 << 20, 8);
    let mut silent = peer(LinkConfig::clean(10 * MS));
    silent.pace = Some(5_000_000);
    silent.silent_after = Some(30 * MS);
    let mut s = setup(16, 16, 1024, vec![silent]);
    s.stall = Duration::from_millis(500);
    let t0 = Instant::now();
    let out = run_batch(&s, &data, t0);
    assert_eq!(out.failure, Some(Failure::Stalled(s.stall)));
    assert!(out.groups.len() < 16, "it went silent before the end");
    // Not before the timeout has passed since the last shard (sent by 30 ms, in by 40 ms),
    // and within a few report intervals after.
    assert!(out.took > s.stall + 30 * MS, "{:?}", out.took);
    assert!(out.took <= s.stall + 80 * MS, "{:?}", out.took);
}
