//! A simulated multi-provider fetch: the fetch scheduler ([`i6p_core::schedule`]) with a
//! verifying requester, and providers serving an in-memory blob, over simulated links.
//!
//! The model is reliable, ordered streams, as QUIC gives them: each record of the transfer
//! protocol (the GET frame, the BLOB frame, each group record with its proof) is a message
//! sent in packets of at most [`MTU`] bytes over a [`Link`]. A packet the link loses (at
//! random, in a burst, or dropped by a full bottleneck) is sent again one retransmission
//! timeout later, as often as it takes, so loss shows as delay; a message arrives once all its
//! packets have, and the receiver takes each stream's records in order (head-of-line
//! blocking), so jitter reorders packets but never records. Providers pace their sending to
//! the bottleneck, as a congestion controller would. Records are encoded and decoded with
//! `i6p_core::transfer` and groups verified with `i6p_core::tree`, as on the wire. Time is
//! simulated: the world jumps to its next event.

pub mod provider;
pub mod requester;

pub use provider::{Behaviour, Provider};
pub use requester::{Requester, RequesterConfig};

use crate::sim::{Link, LinkConfig};
use i6p_core::tree::Outboard;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The blob every provider serves.
pub struct Blob {
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its verified tree (root and proofs).
    pub outboard: Outboard,
    /// log2 of the group size.
    pub group_log: u8,
}

impl Blob {
    /// `size` seeded pseudo-random bytes.
    pub fn random(size: usize, group_log: u8, seed: u64) -> Self {
        let mut rng = crate::sim::Rng::new(seed);
        let mut data: Vec<u8> = (0..size.div_ceil(8))
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .collect();
        data.truncate(size);
        let outboard = Outboard::from_bytes(&data);
        Self {
            data,
            outboard,
            group_log,
        }
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// What travels on a path (in packets).
#[derive(Clone, Debug)]
pub enum Msg {
    /// Requester to provider: a new stream and its request (a GET frame).
    Open { stream: u64, get: Vec<u8> },
    /// Requester to provider: stop sending on a stream (QUIC STOP_SENDING).
    Stop { stream: u64 },
    /// Provider to requester: the next record of a stream.
    Record {
        stream: u64,
        seq: u64,
        bytes: Vec<u8>,
    },
}

impl Msg {
    /// Bytes on the wire, about (stream frame overhead plus the record).
    fn len(&self) -> usize {
        match self {
            Msg::Open { get, .. } => 16 + get.len(),
            Msg::Stop { .. } => 16,
            Msg::Record { bytes, .. } => 16 + bytes.len(),
        }
    }
}

/// Bytes of a message per packet on the link.
const MTU: usize = 1200;

/// One direction of a path carrying messages in packets of at most [`MTU`] bytes: a message
/// arrives once all its packets have, and a packet the link loses (at random, in a burst,
/// or dropped by a full bottleneck) is sent again one `rto` later, as often as it takes.
pub struct Reliable {
    /// Carries packets, each naming its message.
    link: Link<u64>,
    rto: Duration,
    /// Packets waiting to be sent again: (when, message, bytes).
    resend: Vec<(Instant, u64, usize)>,
    /// Messages on their way, with how many of their packets are still to arrive.
    on_the_way: HashMap<u64, (Msg, usize)>,
    next_id: u64,
    /// Packets the link lost, sent again later.
    pub retransmitted: u64,
}

impl Reliable {
    pub fn new(cfg: LinkConfig, start: Instant) -> Self {
        // A retransmission timeout of a few round trips, as QUIC's PTO is.
        let rto = (cfg.delay * 2 + cfg.jitter) * 3 / 2 + Duration::from_millis(1);
        Self {
            link: Link::new(cfg, start),
            rto,
            resend: Vec::new(),
            on_the_way: HashMap::new(),
            next_id: 0,
            retransmitted: 0,
        }
    }

    /// Sends `msg` at `now`, each packet again later if the link loses it.
    pub fn send(&mut self, now: Instant, msg: Msg) {
        let (id, len) = (self.next_id, msg.len());
        self.next_id += 1;
        let packets = len.div_ceil(MTU);
        self.on_the_way.insert(id, (msg, packets));
        for k in 0..packets {
            self.send_packet(now, id, MTU.min(len - k * MTU));
        }
    }

    fn send_packet(&mut self, now: Instant, id: u64, len: usize) {
        if !self.link.send(now, len, id) {
            self.retransmitted += 1;
            self.resend.push((now + self.rto, id, len));
        }
    }

    /// Sends again what is due by `now`.
    pub fn poll(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = self.resend.drain(..).partition(|p| p.0 <= now);
        self.resend = later;
        for (_, id, len) in due {
            self.send_packet(now, id, len);
        }
    }

    /// Gives up retransmitting `stream`'s records (its sender stopped the stream).
    pub fn forget(&mut self, stream: u64) {
        let on_the_way = &self.on_the_way;
        self.resend.retain(|(_, id, _)| {
            !matches!(on_the_way.get(id), Some((Msg::Record { stream: s, .. }, _)) if *s == stream)
        });
    }

    /// The next message that has arrived whole by `now`.
    pub fn recv(&mut self, now: Instant) -> Option<Msg> {
        while let Some(id) = self.link.recv(now) {
            let Some((_, left)) = self.on_the_way.get_mut(&id) else {
                continue;
            };
            *left -= 1;
            if *left == 0 {
                return self.on_the_way.remove(&id).map(|(msg, _)| msg);
            }
        }
        None
    }

    /// Bytes waiting in the bottleneck at `now`.
    pub fn queued_bytes(&mut self, now: Instant) -> usize {
        self.link.queued_bytes(now)
    }

    /// When something next happens on this path.
    pub fn next_event(&self) -> Option<Instant> {
        let resend = self.resend.iter().map(|p| p.0).min();
        [self.link.next_arrival(), resend]
            .into_iter()
            .flatten()
            .min()
    }
}

/// A requester, its providers, and the paths between them (`up[p]` to provider `p`,
/// `down[p]` back).
pub struct World {
    pub blob: std::rc::Rc<Blob>,
    pub start: Instant,
    pub now: Instant,
    pub requester: Requester,
    pub providers: Vec<Provider>,
    pub up: Vec<Reliable>,
    pub down: Vec<Reliable>,
}

/// How a simulated fetch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Every group verified.
    Complete,
    /// The requester gave up, for this reason.
    Failed(String),
}

impl World {
    /// A fetch of `blob` from one provider per entry of `paths` (its link config, and how
    /// it behaves).
    pub fn new(
        blob: std::rc::Rc<Blob>,
        config: RequesterConfig,
        paths: Vec<(LinkConfig, Behaviour)>,
    ) -> Self {
        let start = Instant::now();
        let mut up = Vec::new();
        let mut down = Vec::new();
        let mut providers = Vec::new();
        for (cfg, behaviour) in paths {
            // The request direction gets its own seed, so the two directions differ.
            up.push(Reliable::new(cfg.clone().seeded(cfg.seed ^ 0x5eed), start));
            providers.push(Provider::new(blob.clone(), behaviour, cfg.rate));
            down.push(Reliable::new(cfg, start));
        }
        let requester = Requester::new(blob.clone(), config, providers.len(), start);
        Self {
            blob,
            start,
            now: start,
            requester,
            providers,
            up,
            down,
        }
    }

    /// Runs until the fetch ends or `limit` of simulated time has passed (which panics: a
    /// fetch that hangs is a bug).
    pub fn run(&mut self, limit: Duration) -> End {
        loop {
            let now = self.now;
            for p in 0..self.providers.len() {
                self.up[p].poll(now);
                if !self.providers[p].frozen(now, self.start) {
                    self.down[p].poll(now);
                }
                self.providers[p].step(now, self.start, &mut self.up[p], &mut self.down[p]);
            }
            if let Some(end) = self.requester.step(now, &mut self.up, &mut self.down) {
                return end;
            }
            let next = self.next_event();
            let Some(next) = next else {
                panic!("the simulated fetch hangs with nothing left to happen");
            };
            assert!(
                next.duration_since(self.start) < limit,
                "the simulated fetch took more than {limit:?}"
            );
            self.now = next.max(now);
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let paths = self
            .up
            .iter()
            .chain(&self.down)
            .filter_map(|r| r.next_event());
        let providers = self.providers.iter().filter_map(|p| p.next_event());
        paths
            .chain(providers)
            .chain(self.requester.next_event(self.now))
            .min()
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.duration_since(self.start)
    }
}
