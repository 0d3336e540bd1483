//! The provider's FEC send schedule: what to send next for one FEC GET.
//!
//! Order of a request: every stripe covering the requested groups, in order, each coded with
//! the parity the requester's loss reports call for, and only while the flow window
//! ([`FlowWindow`]) is open; REPAIR lists are answered between two stripes; then END, then
//! repairs until the requester finishes its side. A requester whose reports stop advancing is
//! not waited for past the send timeout (its reports alone, without progress, do not keep the
//! request), and after END one that goes quiet is not waited for past the idle timeout.
//!
//! The machine decides; the driver reads the file, codes and sends the shards, writes the
//! frames, and tells the machine what happened with the time. Invariants: at most
//! [`REPAIR_QUEUE`] repair lists wait; a stripe is handed out once.

use super::{FlowWindow, LossReport, Redundancy};
use crate::tree::group_range;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// REPAIR lists waiting to be answered; a requester that sends more waits for room.
pub const REPAIR_QUEUE: usize = 16;

/// The stripes (first, last inclusive) covering groups `ranges` of a blob of `size` bytes,
/// in order, merged.
pub fn stripe_runs(
    size: u64,
    group_log: u8,
    ranges: &[(u64, u64)],
    stripe_bytes: u64,
) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &(first, count) in ranges {
        let start = group_range(size, group_log, first).0;
        let (last_start, last_len) = group_range(size, group_log, first + count - 1);
        let end = last_start + last_len;
        if end <= start {
            continue;
        }
        let (a, b) = (start / stripe_bytes, (end - 1) / stripe_bytes);
        match runs.last_mut() {
            Some(run) if a <= run.1 + 1 && a >= run.0 => run.1 = run.1.max(b),
            _ => runs.push((a, b)),
        }
    }
    runs
}

/// What the driver is to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send these stripes whole over the stream (STRIPE frames).
    Repair(Vec<u64>),
    /// Code this stripe with `parity` parity shards and send the request's share of them as
    /// datagrams; then report with [`SendSchedule::handle_sent`].
    Stripe {
        /// The stripe.
        stripe: u64,
        /// Its parity count.
        parity: usize,
    },
    /// Every stripe went out: send FEC END with the number sent as datagrams.
    End {
        /// Stripes sent as datagrams.
        sent: u64,
    },
    /// The requester is done: finish the stream.
    Finish,
    /// The requester stopped taking stripes (or went quiet after END) for too long: reset.
    TimedOut,
}

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Stripes,
    AfterEnd,
    Over,
}

/// One FEC GET's send schedule (see the module's comment).
#[derive(Debug)]
pub struct SendSchedule {
    runs: VecDeque<(u64, u64)>,
    redundancy: Redundancy,
    flow: FlowWindow,
    repairs: VecDeque<Vec<u64>>,
    send_timeout: Duration,
    idle_timeout: Duration,
    phase: Phase,
    /// The stripe waiting for the window, and since when.
    waiting: Option<(u64, Instant)>,
    /// Since when, after END, nothing has been asked.
    idle_since: Option<Instant>,
    requester_done: bool,
    sent: u64,
    /// The window a measurement ended with, not taken by the driver yet.
    reached: Option<u64>,
}

impl SendSchedule {
    /// A schedule for the stripes `runs` (from [`stripe_runs`]) of `stripe_bytes` each,
    /// coded as `redundancy` says, in a window starting from `reached` bytes (what the
    /// session's last request ended with, or 0).
    pub fn new(
        runs: Vec<(u64, u64)>,
        stripe_bytes: u64,
        redundancy: Redundancy,
        reached: u64,
        timeouts: (Duration, Duration),
        now: Instant,
    ) -> Self {
        let first = runs.first().map_or(0, |r| r.0);
        Self {
            runs: runs.into(),
            redundancy,
            flow: FlowWindow::new(stripe_bytes, first, reached, now),
            repairs: VecDeque::new(),
            send_timeout: timeouts.0,
            idle_timeout: timeouts.1,
            phase: Phase::Stripes,
            waiting: None,
            idle_since: None,
            requester_done: false,
            sent: 0,
            reached: None,
        }
    }

    /// A LOSS report from the requester (its transfer already checked), received at `now`.
    pub fn handle_loss(&mut self, now: Instant, report: &LossReport) {
        if self.redundancy.report(report) {
            self.flow.handle_congestion(now);
        }
        if let Some(bytes) = self.flow.handle_report(now, report.through) {
            self.reached = Some(bytes);
        }
    }

    /// Whether another REPAIR list can be taken.
    pub fn has_room(&self) -> bool {
        self.repairs.len() < REPAIR_QUEUE
    }

    /// A REPAIR list from the requester; false (and not taken) when the queue is full.
    pub fn handle_repair(&mut self, stripes: Vec<u64>) -> bool {
        if !self.has_room() {
            return false;
        }
        self.repairs.push_back(stripes);
        true
    }

    /// The requester has ended its side of the stream (or sent something unexpected): no
    /// more stripes; END, and finish.
    pub fn handle_requester_done(&mut self) {
        self.requester_done = true;
    }

    /// The stripe handed out last went out at `now`, as datagrams or (`datagrams` false, the
    /// path no longer carries them) over the stream.
    pub fn handle_sent(&mut self, now: Instant, stripe: u64, datagrams: bool) {
        if datagrams {
            self.sent += 1;
            self.flow.on_sent(now, stripe);
        } else {
            self.flow.on_sent_reliably(stripe);
        }
    }

    /// What to do now; `None`: wait for an event or [`Self::poll_timeout`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        match self.phase {
            Phase::Over => None,
            Phase::Stripes => self.poll_stripes(now),
            Phase::AfterEnd => {
                if let Some(list) = self.repairs.pop_front() {
                    self.idle_since = None;
                    return Some(Transmit::Repair(list));
                }
                if self.requester_done {
                    self.phase = Phase::Over;
                    return Some(Transmit::Finish);
                }
                let since = *self.idle_since.get_or_insert(now);
                if now >= since + self.idle_timeout {
                    self.phase = Phase::Over;
                    return Some(Transmit::TimedOut);
                }
                None
            }
        }
    }

    fn poll_stripes(&mut self, now: Instant) -> Option<Transmit> {
        let next = self.runs.front().map(|r| r.0);
        if let Some(stripe) = next {
            // The send timeout runs from when a stripe is first up, repairs or not.
            if self.waiting.is_none_or(|(s, _)| s != stripe) {
                self.waiting = Some((stripe, now));
            }
        }
        if let Some(list) = self.repairs.pop_front() {
            return Some(Transmit::Repair(list));
        }
        let Some(stripe) = next.filter(|_| !self.requester_done) else {
            self.phase = Phase::AfterEnd;
            self.idle_since = Some(now);
            return Some(Transmit::End { sent: self.sent });
        };
        if !self.flow.is_open(stripe) {
            let since = self.waiting.map_or(now, |w| w.1);
            if now >= since + self.send_timeout {
                self.phase = Phase::Over;
                return Some(Transmit::TimedOut);
            }
            return None;
        }
        if let Some(run) = self.runs.front_mut() {
            if run.0 >= run.1 {
                self.runs.pop_front();
            } else {
                run.0 += 1;
            }
        }
        let parity = self.redundancy.params().parity();
        Some(Transmit::Stripe { stripe, parity })
    }

    /// When [`Self::poll_transmit`] may have something new without any event: a timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stripes if self.repairs.is_empty() && !self.requester_done => {
                self.waiting.map(|(_, since)| since + self.send_timeout)
            }
            Phase::AfterEnd if self.repairs.is_empty() && !self.requester_done => {
                self.idle_since.map(|since| since + self.idle_timeout)
            }
            _ => None,
        }
    }

    /// The window in bytes the last measurement ended with, once (the session keeps it for
    /// its next request).
    pub fn take_reached(&mut self) -> Option<u64> {
        self.reached.take()
    }

    /// The flow window.
    pub fn flow(&self) -> &FlowWindow {
        &self.flow
    }

    /// The estimated random shard loss.
    pub fn loss(&self) -> f64 {
        self.redundancy.loss()
    }

    /// Stripes sent as datagrams so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_runs_cover_the_groups_and_merge() {
        // Groups of 1 KiB, stripes of 1500 bytes, a 10 000-byte blob.
        let size = 10_000;
        assert_eq!(stripe_runs(size, 10, &[(0, 10)], 1500), vec![(0, 6)]);
        // Group 1 is bytes 1024..2048: stripes 0 and 1.
        assert_eq!(stripe_runs(size, 10, &[(1, 1)], 1500), vec![(0, 1)]);
        // Adjacent and overlapping runs merge; distant ones do not.
        assert_eq!(stripe_runs(size, 10, &[(0, 1), (1, 1)], 1500), vec![(0, 1)]);
        assert_eq!(
            stripe_runs(size, 10, &[(0, 1), (8, 2)], 1500),
            vec![(0, 0), (5, 6)]
        );
    }

    fn schedule(runs: Vec<(u64, u64)>, now: Instant) -> SendSchedule {
        let redundancy = Redundancy::new(4, 1, 4, 1e-3).unwrap();
        let timeouts = (Duration::from_secs(1), Duration::from_secs(2));
        SendSchedule::new(runs, 1 << 20, redundancy, 0, timeouts, now)
    }

    #[test]
    fn stripes_then_end_then_repairs_until_the_requester_is_done() {
        let t0 = Instant::now();
        let mut s = schedule(vec![(0, 1), (5, 5)], t0);
        let mut order = Vec::new();
        loop {
            match s.poll_transmit(t0) {
                Some(Transmit::Stripe { stripe, parity }) => {
                    assert_eq!(parity, 1);
                    s.handle_sent(t0, stripe, true);
                    order.push(stripe);
                    if stripe == 1 {
                        assert!(s.handle_repair(vec![0]));
                        assert_eq!(s.poll_transmit(t0), Some(Transmit::Repair(vec![0])));
                    }
                }
                other => {
                    assert_eq!(other, Some(Transmit::End { sent: 3 }));
                    break;
                }
            }
        }
        assert_eq!(order, vec![0, 1, 5]);
        assert_eq!(s.poll_transmit(t0), None, "repairs are waited for");
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        assert!(s.handle_repair(vec![5]));
        assert_eq!(s.poll_transmit(t0), Some(Transmit::Repair(vec![5])));
        s.handle_requester_done();
        assert_eq!(s.poll_transmit(t0), Some(Transmit::Finish));
        assert_eq!(s.poll_transmit(t0), None);
    }

    #[test]
    fn a_closed_window_times_out_and_the_repair_queue_is_bounded() {
        let t0 = Instant::now();
        let mut s = schedule(vec![(0, 100)], t0);
        let mut sent = 0;
        while let Some(Transmit::Stripe { stripe, .. }) = s.poll_transmit(t0) {
            s.handle_sent(t0, stripe, true);
            sent += 1;
        }
        assert_eq!(sent, MIN_WINDOW, "the smallest window, then wait");
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        for i in 0..REPAIR_QUEUE {
            assert!(s.handle_repair(vec![i as u64]));
        }
        assert!(!s.handle_repair(vec![99]), "full");
        let late = t0 + Duration::from_secs(1);
        for _ in 0..REPAIR_QUEUE {
            assert!(matches!(s.poll_transmit(late), Some(Transmit::Repair(_))));
        }
        assert_eq!(s.poll_transmit(late), Some(Transmit::TimedOut));
    }

    const MIN_WINDOW: u64 = super::super::flow::MIN_FLOW_STRIPES;
}
