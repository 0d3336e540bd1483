//! Simulated FEC peers for the simulation tests: providers running the send schedule (with
//! its flow window), coding real stripes into real SHARD datagrams, and a requester running
//! the stripe assembler, over simulated links, in simulated time.
//!
//! One batch is simulated at a time ([`run_batch`]): the requester asks every provider for
//! the same groups, each for its share of every stripe, as the net crate's FEC driver does.
//! The "disk stage" is the test's: every group handed out is compared with the blob.
//! Stream frames (PROOF, STRIPE, END, LOSS, REPAIR) go over links of their own without loss,
//! which keep their order as a QUIC stream would.

#![allow(dead_code)]

use crate::sim::{Link, LinkConfig, LinkStats};
use i6p_core::erasure::{Coder, ErasureParams, Stripe};
use i6p_core::fec::{
    decode_repair, encode_repair, encode_stripe_header, shares, stripe_runs, Action, Assembler,
    BatchShape, Failure, FecRequest, LossReport, MemberFate, MemberSpec, Redundancy, SendSchedule,
    Shard, Source, Transmit, FRAME_FEC_END, FRAME_LOSS, FRAME_PROOF, FRAME_REPAIR, FRAME_STRIPE,
    SHARD_HEADER_LEN,
};
use i6p_core::transfer::encode_group_header;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A frame kind the requester uses in the simulation to end its side of a stream.
const FIN: u8 = 0;

/// One provider of a simulated batch.
#[derive(Clone, Debug)]
pub struct PeerSetup {
    /// The path from it to the requester (datagrams).
    pub path: LinkConfig,
    /// Datagrams per second it paces at (`None`: as fast as the window allows).
    pub pace: Option<u64>,
    /// It flips a byte of every shard it sends: valid shards of wrong data.
    pub lies: bool,
    /// From this long after the start it sends nothing more; if `breaks`, the requester sees
    /// its stream fail then.
    pub silent_after: Option<Duration>,
    /// Its stream fails when it falls silent.
    pub breaks: bool,
}

/// A simulated batch.
#[derive(Clone, Debug)]
pub struct BatchSetup {
    pub group_log: u8,
    pub first: u64,
    pub count: u64,
    pub data: usize,
    pub min_parity: usize,
    pub max_parity: usize,
    pub shard_len: usize,
    pub stall: Duration,
    pub peers: Vec<PeerSetup>,
}

/// What a simulated batch did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Groups handed out, by index: their bytes and where they came from.
    pub groups: BTreeMap<u64, (Vec<u8>, Source)>,
    /// Every stripe asked for again.
    pub repaired: Vec<u64>,
    /// Per stripe: shards its providers sent, and how many of them the links lost.
    pub shards: BTreeMap<u64, (u32, u32)>,
    /// Per stripe, the parity it was coded with (the last provider's).
    pub parity: BTreeMap<u64, usize>,
    /// Per provider: its datagram link's statistics.
    pub links: Vec<LinkStats>,
    /// Per provider: its flow window (stripes) after each LOSS report.
    pub windows: Vec<Vec<u64>>,
    /// Stripes rebuilt from several providers' shards.
    pub combined: u64,
    /// Members whose stream broke, and what that did to the batch.
    pub broken: Vec<(usize, MemberFate)>,
    /// Who each repair went to, and when.
    pub repairs_to: Vec<(usize, Instant)>,
    /// Why the batch failed, if it did.
    pub failure: Option<Failure>,
    /// Simulated time the batch took to finish, or to fail.
    pub took: Duration,
}

/// A simulated provider.
struct Provider {
    schedule: SendSchedule,
    request: FecRequest,
    lies: bool,
    /// When it falls silent, if it does.
    silent_at: Option<Instant>,
    breaks: bool,
    coders: HashMap<usize, Coder>,
    stripe: Stripe,
    pace: Option<u64>,
    next_send: Instant,
    /// Datagrams of the stripe being sent, with their stripe, waiting for the pacing.
    pending: VecDeque<(u64, Vec<u8>)>,
    datagrams: Link<Vec<u8>>,
    frames: Link<(u8, Vec<u8>)>,
    up: Link<(u8, Vec<u8>)>,
    done: bool,
    windows: Vec<u64>,
}

impl Provider {
    fn new(
        setup: &BatchSetup,
        peer: &PeerSetup,
        request: FecRequest,
        blob: &[u8],
        t0: Instant,
    ) -> Self {
        let stripe_bytes = (request.data * request.shard_len) as u64;
        let runs = stripe_runs(
            blob.len() as u64,
            setup.group_log,
            &request.get.ranges,
            stripe_bytes,
        );
        let redundancy: Redundancy = request.redundancy().expect("valid request");
        let timeouts = (Duration::from_secs(10), Duration::from_secs(10));
        let schedule = SendSchedule::new(runs, stripe_bytes, redundancy, 0, timeouts, t0);
        let stream = LinkConfig::clean(peer.path.delay);
        let mut frames = Link::new(stream.clone(), t0);
        // Every group's proof first (empty: the test checks the bytes themselves).
        for &(first, count) in &request.get.ranges {
            for index in first..first + count {
                let proof = encode_group_header(index, &[]);
                frames.send(t0, proof.len(), (FRAME_PROOF, proof));
            }
        }
        Self {
            schedule,
            request,
            lies: peer.lies,
            silent_at: peer.silent_after.map(|d| t0 + d),
            breaks: peer.breaks,
            coders: HashMap::new(),
            stripe: Stripe::new(),
            pace: peer.pace,
            next_send: t0,
            pending: VecDeque::new(),
            datagrams: Link::new(peer.path.clone(), t0),
            frames,
            up: Link::new(stream, t0),
            done: false,
            windows: Vec::new(),
        }
    }

    /// Takes in the requester's frames that arrived by `now` and sends what the schedule
    /// and the pacing allow.
    fn step(&mut self, now: Instant, blob: &[u8], out: &mut Outcome) {
        if self.silent_at.is_some_and(|at| now >= at) {
            // Silent: what the requester sends is never read.
            self.done = true;
            while self.up.recv(now).is_some() {}
            return;
        }
        while let Some((kind, payload)) = self.up.recv(now) {
            match kind {
                FRAME_LOSS => {
                    let report = LossReport::decode(&payload).expect("a LOSS report");
                    self.schedule.handle_loss(now, &report);
                    self.windows.push(self.schedule.flow().window());
                }
                FRAME_REPAIR => {
                    let list = decode_repair(&payload).expect("a REPAIR list");
                    assert!(self.schedule.handle_repair(list), "repair queue full");
                }
                _ => self.schedule.handle_requester_done(),
            }
        }
        loop {
            while now >= self.next_send {
                let Some((stripe, datagram)) = self.pending.pop_front() else {
                    break;
                };
                let len = datagram.len();
                let arrived = self.datagrams.send(now, len, datagram);
                let tally = out.shards.entry(stripe).or_default();
                tally.0 += 1;
                tally.1 += u32::from(!arrived);
                if let Some(pace) = self.pace {
                    let gap = Duration::from_secs_f64(len as f64 / pace as f64);
                    self.next_send = self.next_send.max(now) + gap;
                }
            }
            if !self.pending.is_empty() || self.done {
                return;
            }
            match self.schedule.poll_transmit(now) {
                None => return,
                Some(Transmit::Stripe { stripe, parity }) => {
                    self.code(stripe, parity, blob);
                    out.parity.insert(stripe, parity);
                    self.schedule.handle_sent(now, stripe, true);
                }
                Some(Transmit::Repair(list)) => {
                    for stripe in list {
                        let (start, end) = range(&self.request, blob, stripe);
                        let mut payload = encode_stripe_header(stripe).to_vec();
                        payload.extend_from_slice(&blob[start..end]);
                        self.frames
                            .send(now, payload.len(), (FRAME_STRIPE, payload));
                    }
                }
                Some(Transmit::End { sent }) => {
                    self.frames
                        .send(now, 8, (FRAME_FEC_END, sent.to_be_bytes().to_vec()));
                }
                Some(Transmit::Finish) | Some(Transmit::TimedOut) => self.done = true,
            }
        }
    }

    /// Codes stripe `stripe` with `parity` parity shards and queues the share's datagrams.
    fn code(&mut self, stripe: u64, parity: usize, blob: &[u8]) {
        let (k, shard_len) = (self.request.data, self.request.shard_len);
        let params = ErasureParams::new(k, parity).expect("a valid shape");
        let (start, end) = range(&self.request, blob, stripe);
        let mut padded = blob[start..end].to_vec();
        padded.resize(k * shard_len, 0);
        let coder = self
            .coders
            .entry(parity)
            .or_insert_with(|| Coder::new(params).expect("a coder"));
        coder.encode(&padded, &mut self.stripe).expect("coded");
        for index in self.request.share.indices(k, parity) {
            let mut datagram = Vec::with_capacity(SHARD_HEADER_LEN + shard_len);
            Shard {
                transfer: self.request.transfer,
                stripe,
                index: index as u8,
                params,
                payload: self.stripe.shard(index).expect("every shard is coded"),
            }
            .encode(&mut datagram);
            if self.lies {
                // A valid shard of the wrong bytes.
                datagram[SHARD_HEADER_LEN] ^= 1;
            }
            self.pending.push_back((stripe, datagram));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let pacing = (!self.pending.is_empty()).then_some(self.next_send);
        let silence = self.silent_at.filter(|_| !self.done);
        [
            pacing,
            silence,
            self.schedule.poll_timeout().filter(|_| !self.done),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

fn layout_of(request: &FecRequest, blob: &[u8]) -> i6p_core::fec::FecLayout {
    i6p_core::fec::FecLayout::new(blob.len() as u64, request.shard_len, usize::MAX).expect("layout")
}

/// Stripe `stripe`'s byte range in the blob.
fn range(request: &FecRequest, blob: &[u8], stripe: u64) -> (usize, usize) {
    let params = ErasureParams::new(request.data, 1).expect("shape");
    let (a, b) = layout_of(request, blob)
        .stripe_range(params, stripe)
        .expect("a stripe of the blob");
    (a as usize, b as usize)
}

/// The batch's providers, each asked for its share, and the requester's assembler.
fn start(setup: &BatchSetup, blob: &[u8], t0: Instant) -> (Vec<Provider>, Assembler) {
    let parts = setup.peers.len();
    let split = shares(setup.data, parts, &[]).expect("shares");
    let providers: Vec<Provider> = setup
        .peers
        .iter()
        .zip(&split)
        .enumerate()
        .map(|(i, (peer, share))| {
            let request = FecRequest {
                transfer: 100 + i as u32,
                shard_len: setup.shard_len,
                data: setup.data,
                min_parity: setup.min_parity,
                max_parity: setup.max_parity,
                target_ppm: 1000,
                loss_ppm: 0,
                share: *share,
                get: i6p_core::transfer::GetRequest {
                    hash: [0; 32],
                    group_log: setup.group_log,
                    ranges: vec![(setup.first, setup.count)],
                },
            };
            Provider::new(setup, peer, request, blob, t0)
        })
        .collect();
    let shape = BatchShape {
        size: blob.len() as u64,
        group_log: setup.group_log,
        first: setup.first,
        count: setup.count,
        data: setup.data,
        min_parity: setup.min_parity,
        max_parity: setup.max_parity,
        shard_len: setup.shard_len,
        stall: setup.stall,
    };
    let specs: Vec<MemberSpec> = providers
        .iter()
        .zip(&setup.peers)
        .map(|(p, peer)| MemberSpec {
            share: p.request.share,
            transfer: p.request.transfer,
            rtt: peer.path.delay * 2,
            alive: true,
        })
        .collect();
    let asm = Assembler::new(shape, &specs, t0).expect("an assembler");
    (providers, asm)
}

/// Runs one batch of `setup` over `blob` from `t0` until every group is in, the batch fails,
/// or a minute of simulated time passes.
pub fn run_batch(setup: &BatchSetup, blob: &[u8], t0: Instant) -> Outcome {
    let (mut providers, mut asm) = start(setup, blob, t0);
    let mut out = Outcome::default();
    let mut now = t0;
    let mut finished = false;
    let mut spins = 0u64;
    while now - t0 < Duration::from_secs(60) {
        // The requester: what arrived, then the tick, then its actions.
        for (i, p) in providers.iter_mut().enumerate() {
            while let Some(datagram) = p.datagrams.recv(now) {
                asm.handle_datagram(now, i, &datagram)
                    .expect("no batch error");
            }
            while let Some((kind, payload)) = p.frames.recv(now) {
                if asm.handle_frame(now, i, kind, &payload).is_err() {
                    assert_ne!(asm.handle_failure(i), MemberFate::Ignored);
                }
            }
        }
        for (i, p) in providers.iter().enumerate() {
            if p.breaks && p.silent_at.is_some_and(|at| now >= at) && !asm.is_dead(i) {
                out.broken.push((i, asm.handle_failure(i)));
            }
        }
        if asm.poll_timeout().is_some_and(|t| t <= now) {
            asm.handle_tick(now);
        }
        perform(&mut asm, &mut providers, now, &mut out);
        let batch_failed = out.broken.iter().any(|(_, f)| *f == MemberFate::BatchFails);
        if out.failure.is_some() || batch_failed {
            out.took = now - t0;
            break;
        }
        if asm.is_done() && !finished {
            finished = true;
            asm.finish();
            perform(&mut asm, &mut providers, now, &mut out);
            for p in &mut providers {
                p.up.send(now, 1, (FIN, Vec::new()));
            }
            out.took = now - t0;
        }
        for p in &mut providers {
            p.step(now, blob, &mut out);
        }
        if finished && providers.iter().all(|p| p.done) {
            break;
        }
        let next = providers
            .iter()
            .flat_map(|p| {
                [
                    p.poll_timeout(),
                    p.datagrams.next_arrival(),
                    p.frames.next_arrival(),
                    p.up.next_arrival(),
                ]
            })
            .chain([asm.poll_timeout().filter(|_| !finished)])
            .flatten()
            .min();
        let Some(next) = next else { break };
        // Whatever was due by now has been handled: a simulation that stops moving is stuck.
        spins = if next > now { 0 } else { spins + 1 };
        assert!(spins < 100_000, "the simulation does not advance");
        now = next.max(now);
    }
    assert!(
        finished || out.failure.is_some(),
        "the batch neither finished nor failed"
    );
    out.links = providers.iter().map(|p| p.datagrams.stats()).collect();
    out.windows = providers.iter().map(|p| p.windows.clone()).collect();
    out
}

/// Carries out the assembler's actions: frames to the providers, groups into the outcome.
fn perform(asm: &mut Assembler, providers: &mut [Provider], now: Instant, out: &mut Outcome) {
    while let Some(action) = asm.poll_action() {
        match action {
            Action::Loss {
                member,
                report,
                send,
            } => {
                if send {
                    providers[member]
                        .up
                        .send(now, 28, (FRAME_LOSS, report.encode().to_vec()));
                }
            }
            Action::Repair { member, stripes } => {
                out.repaired.extend(&stripes);
                out.repairs_to.push((member, now));
                let frame = encode_repair(&stripes);
                providers[member]
                    .up
                    .send(now, frame.len(), (FRAME_REPAIR, frame));
            }
            Action::Group(group) => {
                let fresh = out.groups.insert(group.index, (group.data, group.source));
                assert!(fresh.is_none(), "group {} handed out twice", group.index);
            }
            Action::Credit { .. } => {}
            Action::Combined => out.combined += 1,
            Action::Failed(failure) => out.failure = Some(failure),
        }
    }
}

/// A blob of `len` pseudo-random bytes.
pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = crate::sim::Rng::new(seed);
    let mut out: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    out.truncate(len);
    out
}

/// The groups of `out` whose bytes differ from the blob's.
pub fn wrong_groups(out: &Outcome, blob: &[u8], group_log: u8) -> BTreeSet<u64> {
    out.groups
        .iter()
        .filter(|(&index, (data, _))| {
            let start = (index << group_log) as usize;
            let end = (start + (1 << group_log)).min(blob.len());
            blob[start..end] != data[..]
        })
        .map(|(&index, _)| index)
        .collect()
}
