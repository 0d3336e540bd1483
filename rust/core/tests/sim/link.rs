//! One direction of a simulated path: propagation delay, jitter (which reorders), random and
//! bursty loss, and a rate-limited bottleneck with a tail-drop buffer.
//!
//! The model follows a packet through a bottleneck the way a router would: it waits behind the
//! bytes already queued, is serialized at `rate`, then travels `delay` plus a random jitter.
//! Loss is judged when the packet is sent, so `LinkStats` tells exactly what the path did.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A seeded pseudo-random source (splitmix64): deterministic and fast; not for cryptography.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source that gives the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Gilbert-Elliott loss: the path flips between a good state (only the link's random loss) and
/// a bad one where `loss` of the packets are lost, which makes losses come in bursts.
#[derive(Clone, Copy, Debug)]
pub struct Burst {
    /// Per packet, the chance of going from good to bad.
    pub enter: f64,
    /// Per packet, the chance of going from bad back to good.
    pub leave: f64,
    /// The loss rate while bad.
    pub loss: f64,
}

/// What a link does to the packets sent on it.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Each packet waits an extra uniform random time in [0, jitter), so packets reorder.
    pub jitter: Duration,
    /// Independent random loss probability.
    pub loss: f64,
    /// Bursty loss on top of `loss`.
    pub burst: Option<Burst>,
    /// Bottleneck rate in bytes per second; `None` serializes instantly.
    pub rate: Option<u64>,
    /// Bottleneck buffer in bytes: a packet that does not fit behind the queued ones is dropped.
    pub queue: usize,
    /// Seed of the link's random choices.
    pub seed: u64,
}

impl LinkConfig {
    /// A path that only delays.
    pub fn clean(delay: Duration) -> Self {
        Self {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            rate: None,
            queue: usize::MAX,
            seed: 1,
        }
    }

    /// With independent random loss `p`.
    pub fn lossy(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// With bursty loss.
    pub fn bursty(mut self, burst: Burst) -> Self {
        self.burst = Some(burst);
        self
    }

    /// With up to `jitter` of extra random delay per packet (reordering).
    pub fn jittery(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Through a bottleneck of `rate` bytes per second with a buffer of `queue` bytes.
    pub fn limited(mut self, rate: u64, queue: usize) -> Self {
        self.rate = Some(rate.max(1));
        self.queue = queue;
        self
    }

    /// With another seed.
    pub fn seeded(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// What a link has done so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    /// Packets offered to the link.
    pub sent: u64,
    /// Packets handed to the receiver.
    pub delivered: u64,
    /// Packets lost at random (independent or in a burst).
    pub lost_random: u64,
    /// Packets dropped because the bottleneck buffer was full.
    pub lost_overflow: u64,
    /// The most bytes ever waiting in the bottleneck buffer.
    pub max_queued: usize,
}

/// A packet on its way; ordered by arrival, then by the order it was sent.
struct InFlight<T> {
    arrival: Instant,
    seq: u64,
    msg: T,
}

impl<T> PartialEq for InFlight<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.arrival, self.seq) == (other.arrival, other.seq)
    }
}

impl<T> Eq for InFlight<T> {}

impl<T> PartialOrd for InFlight<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for InFlight<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest arrival first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.arrival, other.seq).cmp(&(self.arrival, self.seq))
    }
}

/// One direction of a simulated path.
pub struct Link<T> {
    cfg: LinkConfig,
    rng: Rng,
    bad: bool,
    /// When the bottleneck finishes serializing what is queued now.
    busy_until: Instant,
    /// Bytes accepted into the bottleneck and when each leaves it, oldest first.
    queued: std::collections::VecDeque<(Instant, usize)>,
    queued_bytes: usize,
    in_flight: BinaryHeap<InFlight<T>>,
    seq: u64,
    stats: LinkStats,
}

impl<T> Link<T> {
    /// An idle link; `start` is the simulation's origin.
    pub fn new(cfg: LinkConfig, start: Instant) -> Self {
        let rng = Rng::new(cfg.seed);
        Self {
            cfg,
            rng,
            bad: false,
            busy_until: start,
            queued: Default::default(),
            queued_bytes: 0,
            in_flight: BinaryHeap::new(),
            seq: 0,
            stats: LinkStats::default(),
        }
    }

    /// Offers a packet of `len` bytes at `now`; false if the link lost or dropped it.
    pub fn send(&mut self, now: Instant, len: usize, msg: T) -> bool {
        self.stats.sent += 1;
        self.drain(now);
        if let Some(b) = self.cfg.burst {
            let flip = if self.bad { b.leave } else { b.enter };
            if self.rng.chance(flip) {
                self.bad = !self.bad;
            }
        }
        let lost = self.rng.chance(self.cfg.loss)
            || (self.bad && self.cfg.burst.is_some_and(|b| self.rng.chance(b.loss)));
        if lost {
            self.stats.lost_random += 1;
            return false;
        }
        let leaves = match self.cfg.rate {
            Some(rate) => {
                if self.queued_bytes + len > self.cfg.queue {
                    self.stats.lost_overflow += 1;
                    return false;
                }
                let start = self.busy_until.max(now);
                let serialize = Duration::from_secs_f64(len as f64 / rate as f64);
                self.busy_until = start + serialize;
                self.queued.push_back((self.busy_until, len));
                self.queued_bytes += len;
                self.stats.max_queued = self.stats.max_queued.max(self.queued_bytes);
                self.busy_until
            }
            None => now,
        };
        let jitter = if self.cfg.jitter.is_zero() {
            Duration::ZERO
        } else {
            let nanos = self.cfg.jitter.as_nanos().min(u64::MAX as u128) as u64;
            Duration::from_nanos(self.rng.below(nanos))
        };
        self.seq += 1;
        self.in_flight.push(InFlight {
            arrival: leaves + self.cfg.delay + jitter,
            seq: self.seq,
            msg,
        });
        true
    }

    /// When the next packet arrives, if any is on its way.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|p| p.arrival)
    }

    /// The next packet that has arrived by `now`.
    pub fn recv(&mut self, now: Instant) -> Option<T> {
        if self.next_arrival()? > now {
            return None;
        }
        let packet = self.in_flight.pop()?;
        self.stats.delivered += 1;
        Some(packet.msg)
    }

    /// What the link has done so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Bytes still waiting in the bottleneck buffer at `now`.
    pub fn queued_bytes(&mut self, now: Instant) -> usize {
        self.drain(now);
        self.queued_bytes
    }

    /// Forgets the packets the bottleneck has finished serializing by `now`.
    fn drain(&mut self, now: Instant) {
        while let Some(&(leaves, len)) = self.queued.front() {
            if leaves > now {
                break;
            }
            self.queued.pop_front();
            self.queued_bytes -= len;
        }
    }
}
