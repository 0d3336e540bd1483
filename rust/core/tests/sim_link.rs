//! The simulated link itself: what the protocol simulations rely on it to do.

mod sim;

use sim::{Burst, Link, LinkConfig};
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

/// Sends `n` packets of `len` bytes, one every `gap`, and collects what arrives in order.
fn run(cfg: LinkConfig, n: u64, len: usize, gap: Duration) -> (Vec<u64>, Link<u64>, Instant) {
    let t0 = Instant::now();
    let mut link = Link::new(cfg, t0);
    let mut got = Vec::new();
    for i in 0..n {
        let now = t0 + gap * i as u32;
        while let Some(p) = link.recv(now) {
            got.push(p);
        }
        link.send(now, len, i);
    }
    while let Some(at) = link.next_arrival() {
        got.extend(link.recv(at));
    }
    (got, link, t0)
}

#[test]
fn a_clean_link_delivers_everything_in_order_after_the_delay() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::clean(10 * MS), t0);
    assert!(link.send(t0, 100, 1));
    assert!(link.send(t0 + MS, 100, 2));
    assert_eq!(link.recv(t0 + 9 * MS), None);
    assert_eq!(link.next_arrival(), Some(t0 + 10 * MS));
    assert_eq!(link.recv(t0 + 11 * MS), Some(1));
    assert_eq!(link.recv(t0 + 11 * MS), Some(2));
    assert_eq!(link.stats().delivered, 2);
}

#[test]
fn random_loss_is_near_its_rate_and_the_same_for_the_same_seed() {
    let cfg = LinkConfig::clean(MS).lossy(0.03).seeded(7);
    let (a, link, _) = run(cfg.clone(), 20_000, 100, MS);
    let (b, _, _) = run(cfg, 20_000, 100, MS);
    assert_eq!(a, b);
    let lost = link.stats().lost_random as f64 / 20_000.0;
    assert!((0.025..0.035).contains(&lost), "{lost}");
    assert_eq!(link.stats().delivered + link.stats().lost_random, 20_000);
}

#[test]
fn bursty_loss_comes_in_runs() {
    let burst = Burst {
        enter: 0.01,
        leave: 0.2,
        loss: 0.8,
    };
    let (got, link, _) = run(LinkConfig::clean(MS).bursty(burst), 20_000, 100, MS);
    let lost = link.stats().lost_random;
    assert!(lost > 200, "{lost}");
    // Runs of consecutive losses: far longer on average than independent loss would give.
    let mut runs = 0u64;
    let mut prev = None;
    for &i in &got {
        if prev.is_some_and(|p| i > p + 1) {
            runs += 1;
        }
        prev = Some(i);
    }
    assert!(
        lost as f64 / runs as f64 > 2.0,
        "{lost} lost in {runs} runs"
    );
}

#[test]
fn jitter_reorders_but_loses_nothing() {
    let (got, _, _) = run(LinkConfig::clean(5 * MS).jittery(4 * MS), 1000, 100, MS / 4);
    assert_eq!(got.len(), 1000);
    assert!(got.windows(2).any(|w| w[0] > w[1]));
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
}

#[test]
fn a_bottleneck_paces_and_drops_what_overflows_its_buffer() {
    // 1 MB/s and 10 kB of buffer; 1000-byte packets offered at 2 MB/s.
    let cfg = LinkConfig::clean(MS).limited(1_000_000, 10_000);
    let (got, link, _) = run(cfg, 1000, 1000, MS / 2);
    let stats = link.stats();
    assert!(stats.lost_overflow > 400, "{stats:?}");
    assert!(stats.max_queued <= 10_000);
    assert_eq!(got.len() as u64 + stats.lost_overflow, 1000);
    // Unpaced at the rate: nothing is lost.
    let cfg = LinkConfig::clean(MS).limited(1_000_000, 10_000);
    let (got, mut link, t0) = run(cfg, 1000, 1000, MS);
    assert_eq!(got.len(), 1000);
    assert_eq!(link.queued_bytes(t0 + Duration::from_secs(2)), 0);
}
