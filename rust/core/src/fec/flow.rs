//! The provider's FEC flow window: how many stripes of a request may be in flight.
//!
//! Datagrams have no flow control of their own, and BBR (the controller lossy links need)
//! sends more than a shallow queue holds: behind 100 MB/s with 50 ms of queue at 100 ms RTT, a
//! third of the shards were dropped without this window. The window is sized from the
//! requester's progress (the `through` of its LOSS reports) and the loop delay (from a
//! stripe's sending to the report that saw it: a round trip plus the requester's reporting
//! delay).
//!
//! While the loop delay stays within a tenth of the shortest seen (plus a report interval), no
//! queue builds and the window grows to [`FLOW_GAIN`] times the rate at which `through`
//! advances times that shortest delay (doubling every loop while it is the limit). Once the
//! delay grows by more than a quarter, a queue is building: the window falls back to one
//! bandwidth × delay, by at most [`DECREASE`] at once. A window of reports with loss well above
//! the random loss (see [`super::LossEstimate`]) is congestion: the window falls the same way
//! and grows by [`CAUTIOUS_GAIN`] only for the next [`CAUTIOUS_LOOPS`] loop delays.
//!
//! A known limit: a queue shorter than a quarter of the loop delay plus a report interval
//! never shows in the delay, and overflow that starts with the first reports becomes the loss
//! baseline instead of congestion. Behind a 10 ms queue on a 40 ms round trip, with a sender
//! pacing at twice the bottleneck, the simulation saw the window stay at three times what the
//! path holds and half the datagrams overflow (`sim_fec.rs` tests a 50 ms queue on 100 ms).
//!
//! Invariants: the window is always within [`MIN_FLOW_STRIPES`] and [`MAX_FLOW`] bytes (or
//! the minimum, if larger); `through` never passes one past the last stripe sent, so a report
//! of `u64::MAX` cannot open the window for good. No clock is read: every event carries `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often a FEC requester sends LOSS reports and checks the quiet time after END; the
/// provider allows this much slack when it judges the delay its reports show (the loop delay
/// includes up to one interval). Both ends use it, so it lives here rather than in either.
pub const TICK: Duration = Duration::from_millis(10);
/// A request's window at first, in bytes (a connection carries up to three requests).
pub const INITIAL_FLOW: u64 = 2 << 20;
/// The window over the bandwidth × loop delay the requester's progress shows, while no queue
/// builds: it doubles each loop while it is the limit.
const FLOW_GAIN: f64 = 2.0;
/// The most the window falls by at once (a measured rate can be low for reasons other than
/// the path, a repair or a stall of the disk, and the window would collapse with it).
const DECREASE: f64 = 0.7;
/// The window's gain once congestion has been seen: enough to find more bandwidth, little
/// enough not to overflow a shallow queue again at once.
const CAUTIOUS_GAIN: f64 = 1.25;
/// Loop delays after the last congestion during which the window grows cautiously.
const CAUTIOUS_LOOPS: u32 = 8;
/// The smallest window, in stripes: above the requester's lag before it judges a stripe (8
/// stripes), so that a stripe lost at the head of the window is judged before it shuts.
pub const MIN_FLOW_STRIPES: u64 = 16;
/// The largest window of one request, in bytes.
pub const MAX_FLOW: u64 = 32 << 20;

/// One request's flow window (see the module's comment).
#[derive(Debug, Clone)]
pub struct FlowWindow {
    stripe_bytes: u64,
    /// The first stripe the requester has not seen yet.
    through: u64,
    /// Stripes allowed in flight from `through` on.
    window: u64,
    /// Stripes sent and when, oldest first; those the requester has seen are dropped.
    log: VecDeque<(u64, Instant)>,
    /// One past the last stripe sent.
    end: u64,
    /// When the current measurement began, and `through` then.
    mark: Instant,
    mark_through: u64,
    /// The shortest loop delay seen.
    min_loop: Option<Duration>,
    /// A moving average of recent loop delays.
    recent_loop: Option<Duration>,
    /// The rate `through` advanced at over the last measurement, bytes per second.
    rate: Option<f64>,
    /// Until when the window grows by [`CAUTIOUS_GAIN`] only (congestion was seen).
    cautious: Option<Instant>,
}

impl FlowWindow {
    /// A window for stripes of `stripe_bytes` from `first_stripe` on, starting from the
    /// `reached` bytes an earlier request on the same session ended with (0: none).
    pub fn new(stripe_bytes: u64, first_stripe: u64, reached: u64, now: Instant) -> Self {
        let initial = reached.clamp(INITIAL_FLOW, MAX_FLOW);
        Self {
            stripe_bytes,
            through: first_stripe,
            window: (initial / stripe_bytes.max(1)).max(MIN_FLOW_STRIPES),
            log: VecDeque::new(),
            end: first_stripe,
            mark: now,
            mark_through: first_stripe,
            min_loop: None,
            recent_loop: None,
            rate: None,
            cautious: None,
        }
    }

    /// Whether stripe `stripe` may be sent now.
    pub fn is_open(&self, stripe: u64) -> bool {
        stripe < self.through.saturating_add(self.window)
    }

    /// The window in stripes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The first stripe the requester has not seen yet, as far as its reports say.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// The shortest loop delay seen, if any.
    pub fn min_loop(&self) -> Option<Duration> {
        self.min_loop
    }

    /// Stripe `stripe` went out as datagrams at `now`.
    pub fn on_sent(&mut self, now: Instant, stripe: u64) {
        self.end = self.end.max(stripe + 1);
        self.log.push_back((stripe, now));
    }

    /// Stripe `stripe` went out over the stream (its shards no longer fit a datagram): it
    /// counts as sent, but times no loop.
    pub fn on_sent_reliably(&mut self, stripe: u64) {
        self.end = self.end.max(stripe + 1);
    }

    /// A window of reports showed congestion: the window falls to one rate × shortest loop
    /// delay, the measurement starts over, and from now on the window grows cautiously.
    pub fn handle_congestion(&mut self, now: Instant) {
        let (Some(rate), Some(loop_delay)) = (self.rate, self.min_loop) else {
            return;
        };
        self.window = self.cut(self.window, rate * loop_delay.as_secs_f64());
        self.cautious = Some(now + loop_delay * CAUTIOUS_LOOPS);
        (self.mark, self.mark_through) = (now, self.through);
    }

    /// A report that the requester has seen every stripe before `through`. Returns the window
    /// in bytes when a measurement ended, for the session to start its next request with.
    pub fn handle_report(&mut self, now: Instant, through: u64) -> Option<u64> {
        self.through = self.through.max(through.min(self.end));
        let mut newest = None;
        while self.log.front().is_some_and(|(s, _)| *s < self.through) {
            newest = self.log.pop_front();
        }
        if let Some((_, sent)) = newest {
            let sample = now.saturating_duration_since(sent);
            self.min_loop = Some(self.min_loop.map_or(sample, |m| m.min(sample)));
            self.recent_loop = Some(self.recent_loop.map_or(sample, |r| (r * 3 + sample) / 4));
        }
        let loop_delay = self.min_loop?;
        let elapsed = now.saturating_duration_since(self.mark);
        if elapsed < loop_delay.max(Duration::from_millis(10)) {
            return None;
        }
        let bytes = self
            .through
            .saturating_sub(self.mark_through)
            .saturating_mul(self.stripe_bytes);
        let rate = bytes as f64 / elapsed.as_secs_f64();
        let bdp = rate * loop_delay.as_secs_f64();
        let recent = self.recent_loop.unwrap_or(loop_delay);
        let gain = if self.cautious.is_some_and(|until| now < until) {
            CAUTIOUS_GAIN
        } else {
            FLOW_GAIN
        };
        // The loop delay includes up to a report interval of the requester's: a slack of one
        // interval keeps that jitter from reading as a queue.
        let slack = TICK;
        if recent > loop_delay * 5 / 4 + slack {
            self.window = self.cut(self.window, bdp);
        } else if recent <= loop_delay * 11 / 10 + slack {
            self.window = self.window.max(self.stripes(gain * bdp));
        }
        self.rate = Some(rate);
        (self.mark, self.mark_through) = (now, self.through);
        Some(self.window * self.stripe_bytes)
    }

    /// The window in stripes for `bytes` of data in flight, within the bounds.
    fn stripes(&self, bytes: f64) -> u64 {
        ((bytes as u64).min(MAX_FLOW) / self.stripe_bytes.max(1)).max(MIN_FLOW_STRIPES)
    }

    /// `window` brought down towards `bdp` bytes, by at most [`DECREASE`].
    fn cut(&self, window: u64, bdp: f64) -> u64 {
        let floor = (window as f64 * DECREASE) as u64;
        window.min(self.stripes(bdp).max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn reports_cannot_open_the_window_past_what_was_sent() {
        let t0 = Instant::now();
        let mut w = FlowWindow::new(32_000, 5, 0, t0);
        assert!(w.is_open(5) && w.is_open(5 + w.window() - 1));
        assert!(!w.is_open(5 + w.window()));
        w.on_sent(t0, 5);
        w.handle_report(t0 + 50 * MS, u64::MAX);
        assert_eq!(w.through(), 6, "capped at one past the last stripe sent");
        assert!(!w.is_open(6 + w.window()));
    }

    #[test]
    fn the_window_grows_without_a_queue_and_falls_with_one() {
        let t0 = Instant::now();
        let mut w = FlowWindow::new(64_000, 0, 0, t0);
        let start = w.window();
        // Ten stripes a millisecond, seen 20 ms after they went out: no queue, so the
        // window grows to twice the 200 stripes in flight.
        let mut now = t0;
        for ms in 0..400u64 {
            for s in ms * 10..ms * 10 + 10 {
                w.on_sent(now, s);
            }
            now += MS;
            w.handle_report(now, (ms * 10).saturating_sub(190));
        }
        let grown = w.window();
        assert!(grown > 2 * start && grown <= 440, "{grown} vs {start}");
        assert_eq!(w.min_loop(), Some(21 * MS));
        // Then they are seen 60 ms after: a queue; the window falls, 30 % at most at once.
        for ms in 400..800u64 {
            for s in ms * 10..ms * 10 + 10 {
                w.on_sent(now, s);
            }
            now += MS;
            let before = w.window();
            w.handle_report(now, (ms * 10).saturating_sub(590));
            assert!(w.window() as f64 >= before as f64 * DECREASE - 1.0);
        }
        assert!(w.window() < grown, "{} >= {grown}", w.window());
        assert!(w.window() >= MIN_FLOW_STRIPES);
    }
}
