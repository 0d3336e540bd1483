//! The link model: what happens to each datagram on its way through one direction.
//!
//! A datagram first meets random loss, then the bottleneck (serialization at `rate`, drop-tail
//! once the backlog would pass `queue_bytes`), then the propagation delay plus jitter. Due times
//! are kept monotonic, so jitter never reorders; only the `reorder` draw holds a datagram back,
//! in a second queue, so that later ones pass it. Both queues are therefore sorted by due time
//! and the sender merges them. Time is passed in, never read, so the model is tested without
//! sockets or clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use quinn_udp::EcnCodepoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Bytes one direction may hold in its queues whatever the settings: bounds memory when a fast
/// sender meets a long delay. Past it, datagrams are dropped as if by a full queue.
pub const MAX_BUFFERED: usize = 256 << 20;

/// Released buffers kept for reuse; past this many they are freed.
const POOL_MAX: usize = 1 << 16;

/// Capacity of a fresh datagram buffer: any datagram of a 1500-byte MTU path fits.
const BUF_CAPACITY: usize = 2048;

/// How one direction of the emulated path treats datagrams.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Upper bound of the uniform extra delay drawn for each datagram.
    pub jitter: Duration,
    /// Probability that a datagram is dropped, independently of the others.
    pub loss: f64,
    /// Probability that a datagram is held back by `reorder_delay`, so later ones pass it.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Duration,
    /// Bottleneck rate in bytes per second; `None` for no bottleneck.
    pub rate: Option<f64>,
    /// Backlog the bottleneck holds before it drops arriving datagrams.
    pub queue_bytes: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(2),
            rate: None,
            queue_bytes: MAX_BUFFERED,
        }
    }
}

/// What one direction did with the datagrams it received.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams that entered the link.
    pub received_packets: u64,
    /// Bytes of the datagrams that entered the link.
    pub received_bytes: u64,
    /// Datagrams sent on to their destination.
    pub forwarded_packets: u64,
    /// Bytes of the datagrams sent on.
    pub forwarded_bytes: u64,
    /// Datagrams dropped by the random loss draw.
    pub dropped_loss: u64,
    /// Datagrams dropped because the bottleneck's queue (or the memory bound) was full.
    pub dropped_queue: u64,
    /// Datagrams held back so that later ones could pass them.
    pub reordered: u64,
    /// Datagrams lost because sending failed or there was no client to send them to.
    pub send_errors: u64,
    /// Datagrams still queued (not yet due) when the counters were read.
    pub queued: u64,
}

impl LinkStats {
    /// The counters as a JSON object.
    pub fn to_json(self) -> String {
        format!(
            concat!(
                "{{\"received_packets\":{},\"received_bytes\":{},\"forwarded_packets\":{},",
                "\"forwarded_bytes\":{},\"dropped_loss\":{},\"dropped_queue\":{},",
                "\"reordered\":{},\"send_errors\":{},\"queued\":{}}}"
            ),
            self.received_packets,
            self.received_bytes,
            self.forwarded_packets,
            self.forwarded_bytes,
            self.dropped_loss,
            self.dropped_queue,
            self.reordered,
            self.send_errors,
            self.queued,
        )
    }
}

/// A run of due datagrams that can leave in one send: GSO when there are several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Datagrams in the run.
    pub count: usize,
    /// Size of every datagram of the run but the last, which may be shorter.
    pub segment_size: usize,
    /// ECN codepoint that all of them carry.
    pub ecn: Option<EcnCodepoint>,
}

/// A queued datagram.
#[derive(Debug)]
struct Datagram {
    data: Vec<u8>,
    due: Instant,
    ecn: Option<EcnCodepoint>,
}

/// One direction of the emulated path: its settings, randomness, queues and counters.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    rng: StdRng,
    /// When the bottleneck has finished serializing everything it accepted.
    link_free: Instant,
    /// Due time of the last datagram admitted; no later datagram is due before it.
    last_due: Instant,
    in_order: VecDeque<Datagram>,
    held: VecDeque<Datagram>,
    buffered: usize,
    pool: Vec<Vec<u8>>,
    stats: LinkStats,
}

impl Link {
    /// A link with no datagram in flight; `seed` fixes its random draws.
    pub fn new(config: LinkConfig, seed: u64, now: Instant) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            link_free: now,
            last_due: now,
            in_order: VecDeque::new(),
            held: VecDeque::new(),
            buffered: 0,
            pool: Vec::new(),
            stats: LinkStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            queued: (self.in_order.len() + self.held.len()) as u64,
            ..self.stats
        }
    }

    /// Takes in a datagram that arrived at `now`: drops it or queues a copy until it is due.
    pub fn admit(&mut self, now: Instant, payload: &[u8], ecn: Option<EcnCodepoint>) {
        let len = payload.len();
        self.stats.received_packets += 1;
        self.stats.received_bytes += len as u64;
        // Draw only for the impairments that are on, so that the fast path stays cheap.
        if self.config.loss > 0.0 && self.rng.random::<f64>() < self.config.loss {
            self.stats.dropped_loss += 1;
            return;
        }
        if self.buffered + len > MAX_BUFFERED {
            self.stats.dropped_queue += 1;
            return;
        }
        let mut departs = now;
        if let Some(rate) = self.config.rate {
            let backlog = self.link_free.saturating_duration_since(now).as_secs_f64() * rate;
            if backlog + len as f64 > self.config.queue_bytes as f64 {
                self.stats.dropped_queue += 1;
                return;
            }
            self.link_free = self.link_free.max(now) + Duration::from_secs_f64(len as f64 / rate);
            departs = self.link_free;
        }
        let mut due = departs + self.config.delay;
        if !self.config.jitter.is_zero() {
            due += self.config.jitter.mul_f64(self.rng.random::<f64>());
        }
        due = due.max(self.last_due);
        self.last_due = due;

        let mut data = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY.max(len)));
        data.clear();
        data.extend_from_slice(payload);
        self.buffered += len;
        if self.config.reorder > 0.0 && self.rng.random::<f64>() < self.config.reorder {
            self.stats.reordered += 1;
            let due = due + self.config.reorder_delay;
            self.held.push_back(Datagram { data, due, ecn });
        } else {
            self.in_order.push_back(Datagram { data, due, ecn });
        }
    }

    /// When the next queued datagram is due, if any is queued.
    pub fn next_due(&self) -> Option<Instant> {
        match (self.in_order.front(), self.held.front()) {
            (Some(a), Some(b)) => Some(a.due.min(b.due)),
            (Some(a), None) => Some(a.due),
            (None, Some(b)) => Some(b.due),
            (None, None) => None,
        }
    }

    /// Copies into `out` the longest run of datagrams due by `now` that can leave in one send:
    /// at most `max_segments` datagrams and `max_bytes` bytes, all but the last of one size, all
    /// with the same ECN codepoint. Nothing is removed until [`Link::commit`].
    pub fn peek_batch(
        &self,
        now: Instant,
        max_segments: usize,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Option<Batch> {
        out.clear();
        let (mut i, mut j) = (0, 0);
        let mut batch: Option<Batch> = None;
        while let Some(datagram) = self.in_due_order(i, j) {
            if datagram.due > now {
                break;
            }
            let len = datagram.data.len();
            match &mut batch {
                None => {
                    batch = Some(Batch {
                        count: 1,
                        segment_size: len,
                        ecn: datagram.ecn,
                    });
                }
                Some(b) => {
                    // An empty datagram cannot be a GSO segment: it always leaves alone.
                    if b.count >= max_segments
                        || b.segment_size == 0
                        || len == 0
                        || len > b.segment_size
                        || datagram.ecn != b.ecn
                        || out.len() + len > max_bytes
                    {
                        break;
                    }
                    b.count += 1;
                }
            }
            out.extend_from_slice(&datagram.data);
            if self.next_is_in_order(i, j) {
                i += 1;
            } else {
                j += 1;
            }
            // Only the last segment of a GSO send may be shorter than the others.
            if batch.is_some_and(|b| len < b.segment_size) {
                break;
            }
        }
        batch
    }

    /// Removes the first `count` datagrams in due order, counting them as forwarded when `sent`,
    /// as send errors otherwise.
    pub fn commit(&mut self, count: usize, sent: bool) {
        for _ in 0..count {
            let datagram = if self.next_is_in_order(0, 0) {
                self.in_order.pop_front()
            } else {
                self.held.pop_front()
            };
            let Some(datagram) = datagram else { return };
            let len = datagram.data.len();
            self.buffered -= len;
            if sent {
                self.stats.forwarded_packets += 1;
                self.stats.forwarded_bytes += len as u64;
            } else {
                self.stats.send_errors += 1;
            }
            if self.pool.len() < POOL_MAX {
                self.pool.push(datagram.data);
            }
        }
    }

    /// Whether the next datagram in due order after skipping `i` in-order and `j` held ones comes
    /// from the in-order queue (on a tie it does, so held datagrams are really passed).
    fn next_is_in_order(&self, i: usize, j: usize) -> bool {
        match (self.in_order.get(i), self.held.get(j)) {
            (Some(a), Some(b)) => a.due <= b.due,
            (a, _) => a.is_some(),
        }
    }

    /// The next datagram in due order after skipping `i` in-order and `j` held ones.
    fn in_due_order(&self, i: usize, j: usize) -> Option<&Datagram> {
        if self.next_is_in_order(i, j) {
            self.in_order.get(i)
        } else {
            self.held.get(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(link: &mut Link, now: Instant) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut out = Vec::new();
        while let Some(batch) = link.peek_batch(now, 64, 65_000, &mut out) {
            let mut rest = &out[..];
            for _ in 0..batch.count {
                let n = rest.len().min(batch.segment_size);
                got.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            link.commit(batch.count, true);
        }
        got
    }

    #[test]
    fn delay_holds_until_due_then_batches() {
        let t0 = Instant::now();
        let config = LinkConfig {
            delay: 25 * MS,
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 1, t0);
        for i in 0..10u8 {
            link.admit(t0, &[i; 1200], None);
        }
        link.admit(t0, &[10; 100], None);
        link.admit(t0, &[11; 1200], None);
        assert_eq!(link.next_due(), Some(t0 + 25 * MS));
        let mut out = Vec::new();
        assert_eq!(link.peek_batch(t0 + 24 * MS, 64, 65_000, &mut out), None);
        let batch = link.peek_batch(t0 + 25 * MS, 64, 65_000, &mut out).unwrap();
        // The short datagram closes the run; the next one starts another.
        assert_eq!(batch.count, 11);
        assert_eq!(batch.segment_size, 1200);
        assert_eq!(out.len(), 10 * 1200 + 100);
        link.commit(batch.count, true);
        assert_eq!(drain(&mut link, t0 + 25 * MS), vec![vec![11u8; 1200]]);
        let stats = link.stats();
        assert_eq!(stats.forwarded_packets, 12);
        assert_eq!(stats.forwarded_bytes, 11 * 1200 + 100);
        assert_eq!(link.next_due(), None);
    }

    #[test]
    fn batches_respect_segment_and_byte_limits() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::default(), 1, t0);
        for _ in 0..100 {
            link.admit(t0, &[0; 1000], None);
        }
        let mut out = Vec::new();
        let batch = link.peek_batch(t0, 64, 20_500, &mut out).unwrap();
        assert_eq!(batch.count, 20);
        let batch = link.peek_batch(t0, 8, 65_000, &mut out).unwrap();
        assert_eq!(batch.count, 8);
        link.admit(t0, &[], None);
        link.admit(t0, &[], None);
        assert_eq!(drain(&mut link, t0).len(), 102);
    }

    #[test]
    fn loss_is_reproducible_and_near_its_probability() {
        let t0 = Instant::now();
        let run = |seed| {
            let config = LinkConfig {
                loss: 0.2,
                ..LinkConfig::default()
            };
            let mut link = Link::new(config, seed, t0);
            for _ in 0..10_000 {
                link.admit(t0, &[0; 10], None);
            }
            drain(&mut link, t0);
            link.stats()
        };
        let stats = run(7);
        assert_eq!(stats, run(7));
        assert_ne!(stats, run(8));
        assert!((1700..2300).contains(&stats.dropped_loss), "{stats:?}");
        assert_eq!(stats.forwarded_packets + stats.dropped_loss, 10_000);
        assert_eq!(stats.queued, 0);
    }

    #[test]
    fn rate_serializes_and_drops_past_the_queue() {
        let t0 = Instant::now();
        let config = LinkConfig {
            rate: Some(1_000_000.0),
            queue_bytes: 10_000,
            delay: 10 * MS,
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 1, t0);
        for _ in 0..20 {
            link.admit(t0, &[0; 1000], None);
        }
        // 10 fit the queue; each takes 1 ms on the wire, then 10 ms of delay.
        assert_eq!(link.stats().dropped_queue, 10);
        assert_eq!(link.stats().queued, 10);
        assert_eq!(link.next_due(), Some(t0 + 11 * MS));
        assert_eq!(drain(&mut link, t0 + 15 * MS).len(), 5);
        assert_eq!(drain(&mut link, t0 + 20 * MS).len(), 5);
        // Once drained, the queue takes datagrams again.
        link.admit(t0 + 20 * MS, &[0; 1000], None);
        assert_eq!(link.next_due(), Some(t0 + 31 * MS));
    }

    #[test]
    fn jitter_never_reorders() {
        let t0 = Instant::now();
        let config = LinkConfig {
            delay: 5 * MS,
            jitter: 20 * MS,
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 3, t0);
        for i in 0..1000u32 {
            link.admit(t0 + i * Duration::from_micros(10), &i.to_be_bytes(), None);
        }
        let got = drain(&mut link, t0 + Duration::from_secs(1));
        let order: Vec<u32> = got
            .iter()
            .map(|d| u32::from_be_bytes(d[..4].try_into().unwrap()))
            .collect();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn reorder_lets_later_datagrams_pass() {
        let t0 = Instant::now();
        let config = LinkConfig {
            reorder: 0.1,
            reorder_delay: 2 * MS,
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 5, t0);
        let mut got = Vec::new();
        for i in 0..1000u32 {
            let now = t0 + i * Duration::from_micros(100);
            link.admit(now, &i.to_be_bytes(), None);
            got.extend(drain(&mut link, now));
        }
        got.extend(drain(&mut link, t0 + Duration::from_secs(1)));
        let order: Vec<u32> = got
            .iter()
            .map(|d| u32::from_be_bytes(d[..4].try_into().unwrap()))
            .collect();
        assert_eq!(order.len(), 1000);
        assert!(order.windows(2).any(|w| w[0] > w[1]));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert!(link.stats().reordered > 50);
    }

    #[test]
    fn ecn_changes_split_batches() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::default(), 1, t0);
        link.admit(t0, &[0; 100], None);
        link.admit(t0, &[0; 100], Some(EcnCodepoint::Ect0));
        let mut out = Vec::new();
        let batch = link.peek_batch(t0, 64, 65_000, &mut out).unwrap();
        assert_eq!(batch.count, 1);
        assert_eq!(batch.ecn, None);
    }
}
