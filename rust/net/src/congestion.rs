//! A congestion controller for paths with shallow queues: quinn's BBR, its window bounded by
//! what the path holds without a standing queue (`Congestion::Bounded`, "bounded").
//!
//! quinn's BBR is BBRv1: it keeps up to twice its bandwidth × min-RTT estimate in flight, and
//! its startup overshoots further. Behind a bottleneck whose queue holds less than one BDP that
//! overflows the queue round after round: measured on a 100 MB/s link with 50 ms of queue at
//! 100 ms RTT, 12.5 % of the bytes sent were lost and the link was 60 % used. CUBIC fills such
//! a link but takes random loss for congestion, which is why BBR is offered at all.
//!
//! The bound, in the spirit of BBRv2's `inflight_hi` but driven by delay as well as loss, is
//! learned once per round trip (one smoothed RTT) from what the round delivered:
//! - the bottleneck rate is the largest delivery rate of the last [`RATE_ROUNDS`] rounds, and
//!   the path's BDP that rate × the smallest RTT seen;
//! - a round that ends with the smoothed RTT above the minimum by more than a quarter of it
//!   (at least [`QUEUE_SLACK`]) built a queue: the bound becomes 1.25 × BDP, which fills the link
//!   and keeps the queue near a quarter of the round trip;
//! - a round that lost more than [`LOSS_THRESHOLD`] of its bytes while a queue was building
//!   (the queue overflowed: it is shorter than that) makes the bound 1 × BDP;
//! - loss without a queue (random loss on a lossy link) leaves the bound alone, as BBR does;
//! - a round without a queue raises the bound by a step that doubles every such round (one
//!   packet first), so a path that got faster is found again within a few round trips.
//!
//! The pacer of quinn 0.11 paces at 1.25 × window / RTT, so the bound also bounds the rate.

use quinn::congestion::{BbrConfig, Controller, ControllerFactory};
use quinn_proto::RttEstimator;
use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds whose delivery rates make the bottleneck estimate.
pub const RATE_ROUNDS: usize = 10;
/// Loss in a round (share of its bytes) that, with a queue building, means overflow.
pub const LOSS_THRESHOLD: f64 = 0.02;
/// The least RTT increase taken for a queue (timer and scheduling noise stay below it).
pub const QUEUE_SLACK: Duration = Duration::from_millis(2);
/// A queue this large (a share of the smallest RTT) is building.
const QUEUE_SHARE: f64 = 0.25;
/// The bound after a queue built (BDPs): keeps the link full and a queue of about a quarter
/// of the round trip.
const QUEUE_GAIN: f64 = 1.25;
/// The bound after the queue overflowed (BDPs): the queue is shorter than a quarter round trip.
const OVERFLOW_GAIN: f64 = 1.0;
/// The bound never goes below this many packets.
const MIN_PACKETS: u64 = 4;

/// The bound's state, without I/O or quinn types (see the module's doc).
#[derive(Debug, Clone)]
pub struct QueueBound {
    mtu: u64,
    /// None until a queue was first seen: no bound.
    bound: Option<u64>,
    /// What a clean round adds to the bound.
    step: u64,
    round_start: Option<Instant>,
    delivered: u64,
    lost: u64,
    rates: VecDeque<f64>,
}

impl QueueBound {
    /// A bound for packets of `mtu` bytes.
    pub fn new(mtu: u16) -> Self {
        Self {
            mtu: u64::from(mtu),
            bound: None,
            step: u64::from(mtu),
            round_start: None,
            delivered: 0,
            lost: 0,
            rates: VecDeque::with_capacity(RATE_ROUNDS),
        }
    }

    /// The in-flight bound now, if one was learned.
    pub fn bound(&self) -> Option<u64> {
        self.bound
    }

    /// `bytes` were acknowledged at `now`, with the connection's smoothed and smallest RTT.
    pub fn on_ack(&mut self, now: Instant, bytes: u64, srtt: Duration, min_rtt: Duration) {
        self.delivered += bytes;
        let start = *self.round_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < srtt.max(Duration::from_millis(1)) {
            return;
        }
        self.end_round(elapsed, srtt, min_rtt);
        self.round_start = Some(now);
        (self.delivered, self.lost) = (0, 0);
    }

    /// `bytes` were declared lost.
    pub fn on_loss(&mut self, bytes: u64) {
        self.lost += bytes;
    }

    /// A persistent congestion (everything sent for a while lost): start from the floor.
    pub fn on_persistent_congestion(&mut self) {
        self.bound = Some(self.floor());
        self.step = self.mtu;
    }

    /// The packet size changed.
    pub fn on_mtu(&mut self, mtu: u16) {
        self.mtu = u64::from(mtu);
    }

    /// `window` (the inner controller's) within the bound.
    pub fn window(&self, window: u64) -> u64 {
        self.bound.map_or(window, |b| window.min(b))
    }

    fn floor(&self) -> u64 {
        MIN_PACKETS * self.mtu
    }

    fn end_round(&mut self, elapsed: Duration, srtt: Duration, min_rtt: Duration) {
        if self.rates.len() == RATE_ROUNDS {
            self.rates.pop_front();
        }
        self.rates
            .push_back(self.delivered as f64 / elapsed.as_secs_f64());
        let rate = self.rates.iter().copied().fold(0.0, f64::max);
        let bdp = rate * min_rtt.as_secs_f64();
        let queue = srtt.saturating_sub(min_rtt);
        let building = queue > min_rtt.mul_f64(QUEUE_SHARE).max(QUEUE_SLACK);
        let sent = self.delivered + self.lost;
        let overflow = queue > QUEUE_SLACK && self.lost as f64 > sent as f64 * LOSS_THRESHOLD;
        let target = if overflow {
            Some(bdp * OVERFLOW_GAIN)
        } else if building {
            Some(bdp * QUEUE_GAIN)
        } else {
            None
        };
        match (target, self.bound) {
            (Some(target), _) => {
                self.bound = Some((target as u64).max(self.floor()));
                self.step = self.mtu;
            }
            (None, Some(bound)) => {
                self.bound = Some(bound.saturating_add(self.step));
                self.step = self.step.saturating_mul(2).min(bound / 4).max(self.mtu);
            }
            (None, None) => {}
        }
    }
}

/// quinn's BBR within a [`QueueBound`].
pub struct Bounded {
    inner: Box<dyn Controller>,
    bound: QueueBound,
}

impl Controller for Bounded {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
        self.bound.on_ack(now, bytes, rtt.get(), rtt.min());
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
        self.bound.on_loss(lost_bytes);
        if is_persistent_congestion {
            self.bound.on_persistent_congestion();
        }
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
        self.bound.on_mtu(new_mtu);
    }

    fn window(&self) -> u64 {
        self.bound.window(self.inner.window())
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Self {
            inner: self.inner.clone_box(),
            bound: self.bound.clone(),
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Makes [`Bounded`] controllers around BBR configured as `bbr`.
pub struct BoundedFactory {
    bbr: Arc<BbrConfig>,
}

impl BoundedFactory {
    /// Controllers around BBR with `bbr`'s settings.
    pub fn new(bbr: BbrConfig) -> Self {
        Self { bbr: Arc::new(bbr) }
    }
}

impl ControllerFactory for BoundedFactory {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Bounded {
            inner: self.bbr.clone().build(now, current_mtu),
            bound: QueueBound::new(current_mtu),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Acks `per_round` bytes spread over one round of `srtt`, in 10 acks.
    fn round(b: &mut QueueBound, at: &mut Instant, per_round: u64, srtt: Duration) {
        for _ in 0..10 {
            *at += srtt / 10;
            b.on_ack(*at, per_round / 10, srtt, 100 * MS);
        }
    }

    #[test]
    fn no_bound_until_a_queue_builds_and_random_loss_sets_none() {
        let mut b = QueueBound::new(1200);
        let mut at = Instant::now();
        for _ in 0..20 {
            b.on_loss(500_000); // 5 % of every round lost, but no queue: random loss.
            round(&mut b, &mut at, 10_000_000, 100 * MS);
        }
        assert_eq!(b.bound(), None);
        assert_eq!(b.window(50_000_000), 50_000_000);
    }

    #[test]
    fn a_queue_bounds_the_window_near_the_bdp_and_overflow_to_it() {
        let mut b = QueueBound::new(1200);
        let mut at = Instant::now();
        // 100 MB/s at 100 ms: the BDP is 10 MB. A 40 ms queue builds (more than 25 ms).
        round(&mut b, &mut at, 10_000_000, 100 * MS);
        round(&mut b, &mut at, 10_000_000, 140 * MS);
        let bound = b.bound().unwrap_or(0);
        let bdp = 10_000_000.0 * 100.0 / 140.0; // delivered over the longer round
        let measured = b.rates.iter().copied().fold(0.0, f64::max) * 0.1;
        assert!(measured >= bdp * 0.99, "{measured} {bdp}");
        assert!((bound as f64 - measured * 1.25).abs() < 2_000.0, "{bound}");
        assert!(b.window(40_000_000) == bound);
        // The queue overflowed: loss with a queue bounds it to the BDP.
        b.on_loss(1_000_000);
        round(&mut b, &mut at, 10_000_000, 110 * MS);
        let after = b.bound().unwrap_or(0);
        assert!(
            (after as f64 - measured).abs() < 2_000.0,
            "{after} {measured}"
        );
    }

    #[test]
    fn clean_rounds_probe_upwards_faster_each_round() {
        let mut b = QueueBound::new(1200);
        let mut at = Instant::now();
        round(&mut b, &mut at, 10_000_000, 100 * MS);
        round(&mut b, &mut at, 10_000_000, 150 * MS);
        let start = b.bound().unwrap_or(0);
        let mut last = start;
        let mut steps = Vec::new();
        for _ in 0..8 {
            round(&mut b, &mut at, 10_000_000, 100 * MS);
            let now = b.bound().unwrap_or(0);
            steps.push(now - last);
            last = now;
        }
        assert_eq!(steps[0], 1200);
        assert!(steps.windows(2).all(|w| w[1] >= w[0]), "{steps:?}");
        assert!(last > start + 100_000);
    }

    #[test]
    fn the_bound_has_a_floor() {
        let mut b = QueueBound::new(1200);
        b.on_persistent_congestion();
        assert_eq!(b.bound(), Some(4 * 1200));
        let mut at = Instant::now();
        round(&mut b, &mut at, 1_000, 100 * MS);
        round(&mut b, &mut at, 1_000, 200 * MS);
        assert!(b.bound().unwrap_or(0) >= 4 * 1200);
    }
}
