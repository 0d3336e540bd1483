//! The simulated requester: the fetch scheduler driving `streams` workers per provider, each
//! with one GET in flight on a stream of its own, and a verifier that writes each group that
//! verifies into an in-memory file. It does what `i6p_net::fetch` does with tasks, in steps.

use super::provider::{frame, unframe};
use super::{Blob, End, Msg, Reliable};
use i6p_core::schedule::{Batch, Dropped, Schedule, ScheduleConfig, Work};
use i6p_core::transfer::{
    decode_blob, decode_group_header, GetRequest, TransferError, FRAME_BLOB, FRAME_ERROR,
    FRAME_GET, GROUP_HEADER_LEN,
};
use i6p_core::tree::{group_count, group_range, verify_group, Cv};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How the simulated requester fetches.
#[derive(Clone, Copy, Debug)]
pub struct RequesterConfig {
    /// The scheduler's configuration.
    pub schedule: ScheduleConfig,
    /// Workers (streams) per provider.
    pub streams: usize,
    /// Groups asked for per request, at most.
    pub request_groups: u64,
    /// A stream that brings nothing for this long fails its provider (the real fetch's
    /// `stall_timeout`).
    pub stream_timeout: Duration,
}

/// A request in flight.
struct Job {
    batch: Batch,
    stream: u64,
    /// Whether the BLOB answer has come.
    answered: bool,
    /// The next group expected.
    next: u64,
    /// The next record of the stream to process, and those that came early.
    next_seq: u64,
    early: BTreeMap<u64, Vec<u8>>,
    /// When the stream last brought a record.
    heard: Instant,
}

/// One worker of a provider.
struct Worker {
    provider: usize,
    job: Option<Job>,
    ended: bool,
}

/// The requester of the simulated fetch.
pub struct Requester {
    blob: Rc<Blob>,
    config: RequesterConfig,
    /// The scheduler under test.
    pub schedule: Schedule<String>,
    workers: Vec<Worker>,
    next_stream: u64,
    round_started: bool,
    /// The in-memory destination.
    pub file: Vec<u8>,
    /// Which groups are verified and written.
    pub verified: Vec<bool>,
    /// Per group: records accepted for it (handed to verification).
    pub delivered: Vec<u32>,
    /// Per group: times it was written after verifying.
    pub written: Vec<u32>,
    /// Group records that arrived for a stream already stopped or finished.
    pub wasted: u64,
    /// Rounds run.
    pub rounds: u32,
    /// The time of the step being taken.
    now: Instant,
}

impl Requester {
    pub fn new(blob: Rc<Blob>, config: RequesterConfig, providers: usize, start: Instant) -> Self {
        let groups = group_count(blob.size(), blob.group_log) as usize;
        Self {
            file: vec![0; blob.data.len()],
            blob,
            config,
            schedule: Schedule::new(config.schedule, providers),
            workers: Vec::new(),
            next_stream: 0,
            round_started: false,
            verified: vec![false; groups],
            delivered: vec![0; groups],
            written: vec![0; groups],
            wasted: 0,
            rounds: 0,
            now: start,
        }
    }

    /// One step at `now`: rounds, records that arrived, the scheduler's stall judgement,
    /// stream timeouts and new requests. Some when the fetch has ended.
    pub fn step(
        &mut self,
        now: Instant,
        up: &mut [Reliable],
        down: &mut [Reliable],
    ) -> Option<End> {
        self.now = now;
        for (p, path) in down.iter_mut().enumerate() {
            while let Some(msg) = path.recv(now) {
                let Msg::Record { stream, seq, bytes } = msg else {
                    panic!("the requester got a request");
                };
                self.on_record(now, p, stream, seq, bytes, up);
            }
        }
        for p in self.schedule.handle_timeout(now) {
            self.stop_provider(p, up);
        }
        self.time_out_streams(now, up);
        loop {
            self.claim(now, up);
            if self.round_started && self.workers.iter().any(|w| !w.ended) {
                return None;
            }
            // Every worker has ended: the round is over.
            if let Some(end) = self.next_round(now) {
                return Some(end);
            }
        }
    }

    /// When the requester next has something to do by itself.
    pub fn next_event(&self, now: Instant) -> Option<Instant> {
        let streams = self
            .workers
            .iter()
            .filter_map(|w| w.job.as_ref())
            .map(|j| j.heard + self.config.stream_timeout);
        streams.chain(self.schedule.poll_timeout(now)).min()
    }

    fn verified_groups(&self) -> u64 {
        self.verified.iter().filter(|v| **v).count() as u64
    }

    /// Ends the round that has finished, and starts the next if groups are missing.
    fn next_round(&mut self, now: Instant) -> Option<End> {
        let verified = self.verified_groups();
        if self.round_started && !self.schedule.end_round(verified) {
            return Some(End::Failed("fetch ended with groups missing".into()));
        }
        let missing = self.missing();
        if missing.is_empty() {
            return Some(End::Complete);
        }
        let live = self.schedule.begin_round(now, verified);
        if live.is_empty() {
            return Some(End::Failed("no provider left".into()));
        }
        self.rounds += 1;
        self.round_started = true;
        let streams = self.config.streams;
        self.schedule
            .queue_missing(&missing, streams * live.len(), self.config.request_groups);
        self.workers.clear();
        for &p in &live {
            for _ in 0..streams {
                self.schedule.worker_started(p);
                self.workers.push(Worker {
                    provider: p,
                    job: None,
                    ended: false,
                });
            }
        }
        None
    }

    fn missing(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (i, done) in self.verified.iter().enumerate() {
            let i = i as u64;
            match out.last_mut() {
                _ if *done => {}
                Some((first, count)) if *first + *count == i => *count += 1,
                _ => out.push((i, 1)),
            }
        }
        out
    }

    /// Idle workers ask the scheduler what to do.
    fn claim(&mut self, now: Instant, up: &mut [Reliable]) {
        for w in 0..self.workers.len() {
            let worker = &self.workers[w];
            if worker.ended || worker.job.is_some() {
                continue;
            }
            let p = worker.provider;
            match self.schedule.next_work(p, true) {
                Work::Fetch(batch) => {
                    let stream = self.next_stream;
                    self.next_stream += 1;
                    let get = GetRequest {
                        hash: self.blob.outboard.root(),
                        group_log: self.blob.group_log,
                        ranges: vec![(batch.first, batch.count)],
                    };
                    let get = frame(FRAME_GET, &get.encode());
                    up[p].send(now, Msg::Open { stream, get });
                    self.workers[w].job = Some(Job {
                        batch,
                        stream,
                        answered: false,
                        next: batch.first,
                        next_seq: 0,
                        early: BTreeMap::new(),
                        heard: now,
                    });
                }
                Work::Done => self.end_worker(w, up),
                Work::Stop(_) => self.stop_provider(p, up),
            }
        }
    }

    /// A worker ends: its stream stops, its batch is given back.
    fn end_worker(&mut self, w: usize, up: &mut [Reliable]) {
        let worker = &mut self.workers[w];
        if worker.ended {
            return;
        }
        worker.ended = true;
        let p = worker.provider;
        if let Some(job) = worker.job.take() {
            up[p].send(self.now, Msg::Stop { stream: job.stream });
            self.schedule.handle_batch_finished(job.batch.id);
        }
        self.schedule.worker_stopped(p);
    }

    /// Every worker of provider `p` ends (it was dropped).
    fn stop_provider(&mut self, p: usize, up: &mut [Reliable]) {
        for w in 0..self.workers.len() {
            if self.workers[w].provider == p {
                self.end_worker(w, up);
            }
        }
    }

    /// A stream that brought nothing for the stream timeout fails its provider.
    fn time_out_streams(&mut self, now: Instant, up: &mut [Reliable]) {
        let limit = self.config.stream_timeout;
        let late: Vec<usize> = self
            .workers
            .iter()
            .filter(|w| w.job.as_ref().is_some_and(|j| now >= j.heard + limit))
            .map(|w| w.provider)
            .collect();
        for p in late {
            let reason = format!("provider sent nothing for {limit:?}");
            self.schedule.drop_provider(p, Dropped::Failed(reason));
            self.stop_provider(p, up);
        }
    }

    fn on_record(
        &mut self,
        now: Instant,
        p: usize,
        stream: u64,
        seq: u64,
        bytes: Vec<u8>,
        up: &mut [Reliable],
    ) {
        let Some(w) = self
            .workers
            .iter()
            .position(|w| w.job.as_ref().is_some_and(|j| j.stream == stream))
        else {
            self.wasted += u64::from(seq > 0);
            return;
        };
        let Some(job) = self.workers[w].job.as_mut() else {
            return;
        };
        job.heard = now;
        job.early.insert(seq, bytes);
        // The stream is reliable and ordered: records are taken in order.
        while let Some(bytes) = self.workers[w]
            .job
            .as_mut()
            .and_then(|j| j.early.remove(&j.next_seq))
        {
            if let Some(job) = self.workers[w].job.as_mut() {
                job.next_seq += 1;
            }
            self.take_record(now, w, p, &bytes, up);
        }
    }

    /// One record of worker `w`'s stream, in order.
    fn take_record(&mut self, now: Instant, w: usize, p: usize, bytes: &[u8], up: &mut [Reliable]) {
        let Some(job) = self.workers[w].job.as_mut() else {
            self.wasted += 1;
            return;
        };
        if !job.answered {
            job.answered = true;
            let answer = unframe(bytes).map(|(h, payload)| (h.kind, payload.to_vec()));
            match answer {
                Some((FRAME_BLOB, payload)) if decode_blob(&payload) == Ok(self.blob.size()) => {}
                Some((FRAME_ERROR, payload)) => {
                    let refusal = TransferError::decode(&payload).map(|e| e.message);
                    let reason = format!("refused: {refusal:?}");
                    self.schedule.drop_provider(p, Dropped::Failed(reason));
                    self.stop_provider(p, up);
                }
                _ => {
                    let id = job.batch.first;
                    self.schedule
                        .handle_failed(Some(p), format!("bad answer to the GET for {id}"));
                    self.finish_job(w, up);
                }
            }
            return;
        }
        let index = job.next;
        let end = self.schedule.batch_end(job.batch.id).unwrap_or(index);
        if index >= end {
            // Another provider took over the rest of this batch.
            self.wasted += 1;
            self.finish_job(w, up);
            return;
        }
        let Some((claimed, proof, data)) = parse_group(bytes) else {
            self.schedule
                .handle_failed(Some(p), format!("malformed record for group {index}"));
            self.finish_job(w, up);
            return;
        };
        if claimed != index {
            let detail = format!("expected group {index}, provider sent {claimed}");
            self.schedule.handle_failed(Some(p), detail);
            self.finish_job(w, up);
            return;
        }
        let batch = job.batch;
        job.next += 1;
        let end = self
            .schedule
            .handle_group(batch.id, index, data.len() as u64, now)
            .unwrap_or(index + 1);
        self.verify_and_write(p, index, &proof, data);
        if index + 1 >= end {
            self.finish_job(w, up);
        }
    }

    /// The disk stage: a group is written only once it verifies against the root.
    fn verify_and_write(&mut self, p: usize, index: u64, proof: &[Cv], data: &[u8]) {
        let i = index as usize;
        self.delivered[i] += 1;
        let root = self.blob.outboard.root();
        let (size, log) = (self.blob.size(), self.blob.group_log);
        match verify_group(&root, size, log, index, data, proof) {
            Ok(()) => {
                let (start, len) = group_range(size, log, index);
                self.file[start as usize..(start + len) as usize].copy_from_slice(data);
                self.verified[i] = true;
                self.written[i] += 1;
            }
            Err(e) => self
                .schedule
                .handle_failed(Some(p), format!("group {index}: {e}")),
        }
    }

    /// Worker `w` is done with its batch (all delivered, cut short, or failed): it stops the
    /// stream if anything may still come, and asks for more at the next step.
    fn finish_job(&mut self, w: usize, up: &mut [Reliable]) {
        let worker = &mut self.workers[w];
        if let Some(job) = worker.job.take() {
            if job.next < job.batch.first + job.batch.count {
                up[worker.provider].send(self.now, Msg::Stop { stream: job.stream });
            }
            self.schedule.handle_batch_finished(job.batch.id);
        }
    }
}

/// A group record: (claimed index, proof, data).
fn parse_group(bytes: &[u8]) -> Option<(u64, Vec<Cv>, &[u8])> {
    let header: [u8; GROUP_HEADER_LEN] = bytes.get(..GROUP_HEADER_LEN)?.try_into().ok()?;
    let (index, proof_len) = decode_group_header(header).ok()?;
    let proof_end = GROUP_HEADER_LEN + proof_len * 32;
    let proof = bytes
        .get(GROUP_HEADER_LEN..proof_end)?
        .chunks_exact(32)
        .map(|c| c.try_into().ok())
        .collect::<Option<Vec<Cv>>>()?;
    Some((index, proof, bytes.get(proof_end..)?))
}
