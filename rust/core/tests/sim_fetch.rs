//! Deterministic simulations of multi-provider fetches: the fetch scheduler
//! (`i6p_core::schedule`) with a verifying requester and 1 to 3 providers serving an
//! in-memory blob over simulated links. See `fetch_sim` for the model: QUIC streams are
//! reliable, so each protocol record travels in packets over a `sim::Link`, a lost packet is
//! sent again one retransmission timeout later (loss shows as delay), and each stream's
//! records are taken in order (jitter reorders packets, never records). Every run is seeded
//! and takes milliseconds of real time.

mod fetch_sim;
mod sim;

use fetch_sim::{Behaviour, Blob, End, RequesterConfig, World};
use i6p_core::schedule::{Dropped, ScheduleConfig};
use sim::{Burst, LinkConfig};
use std::rc::Rc;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
/// 16 KiB groups, the smallest, so a blob of many groups stays small.
const GROUP_LOG: u8 = 14;
/// 45 whole groups and a short last one.
const SIZE: usize = (45 << GROUP_LOG) + 1000;

fn config() -> RequesterConfig {
    RequesterConfig {
        schedule: ScheduleConfig {
            max_failures: 2,
            stall: Duration::from_secs(3),
        },
        streams: 2,
        request_groups: 8,
        stream_timeout: Duration::from_secs(30),
    }
}

/// The kinds of path every fetch must get through, with a seed.
fn paths(seed: u64) -> Vec<(&'static str, LinkConfig)> {
    let base = LinkConfig::clean(20 * MS).seeded(seed);
    vec![
        ("clean", base.clone()),
        ("random loss", base.clone().lossy(0.05)),
        (
            "bursty loss",
            base.clone().bursty(Burst {
                enter: 0.02,
                leave: 0.2,
                loss: 0.6,
            }),
        ),
        ("jitter", base.clone().jittery(15 * MS)),
        ("rate-limited", base.clone().limited(2_000_000, 256 << 10)),
        // A buffer smaller than what a provider keeps queued: packets are tail-dropped.
        ("tail drop", base.limited(2_000_000, 48 << 10)),
    ]
}

fn world(providers: Vec<(LinkConfig, Behaviour)>, seed: u64) -> World {
    let blob = Rc::new(Blob::random(SIZE, GROUP_LOG, seed));
    World::new(blob, config(), providers)
}

/// The fetch completed, the file is the blob, and every group was written exactly once.
fn assert_complete(world: &mut World, what: &str) {
    let end = world.run(Duration::from_secs(600));
    assert_eq!(end, End::Complete, "{what}");
    let r = &world.requester;
    assert!(
        r.file == world.blob.data,
        "{what}: the file differs from the blob"
    );
    assert!(r.written.iter().all(|&n| n == 1), "{what}: {:?}", r.written);
}

#[test]
fn fetches_from_one_two_and_three_providers_complete_on_every_kind_of_path() {
    for seed in 1..=3 {
        for (name, path) in paths(seed) {
            for n in 1..=3u64 {
                let providers = (0..n)
                    .map(|p| (path.clone().seeded(seed * 10 + p), Behaviour::Honest))
                    .collect();
                let mut w = world(providers, seed);
                let what = format!("{n} provider(s), {name}, seed {seed}");
                assert_complete(&mut w, &what);
                let r = &w.requester;
                // Nothing asked twice: each group was delivered once, and every byte
                // counted came from a provider.
                assert!(
                    r.delivered.iter().all(|&d| d == 1),
                    "{what}: {:?}",
                    r.delivered
                );
                assert_eq!(r.schedule.total_delivered(), SIZE as u64, "{what}");
                assert_eq!(r.schedule.failed_groups(), 0, "{what}");
                assert!(
                    r.schedule.providers().iter().all(|p| p.dropped().is_none()),
                    "{what}"
                );
                assert_eq!(r.rounds, 1, "{what}");
            }
        }
    }
}

#[test]
fn a_provider_that_stalls_is_dropped_and_named_while_the_others_finish() {
    for seed in 1..=3 {
        let path = LinkConfig::clean(20 * MS).limited(1_000_000, 256 << 10);
        let providers = vec![
            (path.clone().seeded(seed), Behaviour::Honest),
            (
                path.clone().seeded(seed + 1),
                Behaviour::StallsAfter(150 * MS),
            ),
            (path.seeded(seed + 2), Behaviour::Honest),
        ];
        let mut w = world(providers, seed);
        let what = format!("seed {seed}");
        assert_complete(&mut w, &what);
        let s = &w.requester.schedule;
        let stall = config().schedule.stall;
        assert_eq!(
            s.providers()[1].dropped(),
            Some(&Dropped::Stalled { silent: stall }),
            "{what}"
        );
        assert!(s.providers()[0].dropped().is_none() && s.providers()[2].dropped().is_none());
        assert!(
            s.delivered(1) > 0 && s.delivered(1) < SIZE as u64 / 3,
            "{what}"
        );
        // Judged within the stall time of its last group, long before the stream timeout.
        assert!(
            w.elapsed() < stall + Duration::from_secs(1),
            "{what}: {:?}",
            w.elapsed()
        );
    }
}

#[test]
fn a_provider_that_lies_is_rejected_after_max_failures_and_named() {
    for seed in 1..=3 {
        for (name, path) in paths(seed) {
            let providers = vec![
                (path.clone().seeded(seed), Behaviour::Corrupts),
                (path.clone().seeded(seed + 1), Behaviour::Honest),
                (path.seeded(seed + 2), Behaviour::Honest),
            ];
            let mut w = world(providers, seed);
            let what = format!("{name}, seed {seed}");
            assert_complete(&mut w, &what);
            let s = &w.requester.schedule;
            match s.providers()[0].dropped() {
                Some(Dropped::Corrupt { failures, detail }) => {
                    assert!(*failures >= config().schedule.max_failures, "{what}");
                    assert!(detail.contains("hash mismatch"), "{what}: {detail}");
                }
                other => panic!("{what}: the liar was not named: {other:?}"),
            }
            assert!(
                s.providers()[1..].iter().all(|p| p.dropped().is_none()),
                "{what}"
            );
            assert_eq!(s.failed_groups(), s.providers()[0].failures(), "{what}");
        }
    }
}

#[test]
fn a_fast_provider_takes_over_a_slow_ones_batches_and_nothing_is_fetched_twice() {
    for seed in 1..=5 {
        let fast = LinkConfig::clean(20 * MS).limited(8_000_000, 256 << 10);
        let slow = LinkConfig::clean(20 * MS).limited(250_000, 256 << 10);
        let providers = vec![
            (fast.seeded(seed), Behaviour::Honest),
            (slow.seeded(seed + 1), Behaviour::Honest),
        ];
        let mut w = world(providers, seed);
        let what = format!("seed {seed}");
        assert_complete(&mut w, &what);
        let r = &w.requester;
        let s = &r.schedule;
        assert!(s.take_overs() > 0, "{what}: no take-over");
        // Each group was delivered once: what the slow one had on its way when its half was
        // taken arrived too late and was dropped unread, never delivered twice.
        assert!(
            r.delivered.iter().all(|&d| d == 1),
            "{what}: {:?}",
            r.delivered
        );
        assert!(
            r.wasted <= s.take_overs() * 8,
            "{what}: {} wasted",
            r.wasted
        );
        assert!(s.delivered(1) < s.delivered(0) / 2, "{what}");
        assert!(
            s.providers().iter().all(|p| p.dropped().is_none()),
            "{what}"
        );
        assert_eq!(r.rounds, 1, "{what}");
    }
}
