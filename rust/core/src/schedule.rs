//! The fetch scheduler: which provider fetches which groups of a blob, and which providers
//! are given up on. A machine in the style of quinn-proto's connection: it is told what
//! happened (`handle_*`, with the time passed in), answers questions (getters) and says what
//! a worker should do next ([`Schedule::next_work`], [`Schedule::claim`]); it never touches a
//! socket, a file or a clock, so a simulation can drive it in simulated time.
//!
//! A fetch runs in rounds. Each round queues the groups still missing, split into batches;
//! workers (several per provider, each with one request in flight) claim batches until the
//! queue is empty, then take over the second half of what a slower provider has left of a
//! batch, so the slow provider's last batches do not hold up the fetch. Groups that failed
//! verification stay missing and are asked for in the next round.
//!
//! State is split by owner: the queue, the batches in flight and the round's figures belong
//! to the fetch ([`Schedule`]); what each provider delivered, how often it failed and why it
//! was dropped belong to that provider ([`ProviderState`]).
//!
//! Invariants: a batch is claimed by one worker at a time; a batch's end only moves down
//! (another provider took the rest), never below the first group not yet delivered plus one;
//! a provider once dropped stays dropped, with the first reason given.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a fetch is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Groups failing verification tolerated from one provider before it is given up on.
    pub max_failures: u32,
    /// With several providers, one that delivers nothing for this long while another could
    /// take over its work is dropped.
    pub stall: Duration,
}

/// Why a provider was dropped from a fetch. `E` is the driver's error for what the
/// scheduler cannot see itself (a lost connection, a refused request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped<E> {
    /// It sent `failures` groups that failed verification (at least `max_failures`); the
    /// last failed for `detail`.
    Corrupt {
        /// Groups of this provider that failed verification.
        failures: u32,
        /// Why the last one failed.
        detail: String,
    },
    /// It delivered nothing for `silent` while another provider could have taken over.
    Stalled {
        /// How long it had been silent (the configured stall time).
        silent: Duration,
    },
    /// The driver dropped it (its connection or a request failed).
    Failed(E),
}

/// A batch claimed by a worker: groups `first..first + count`, of which it delivers those
/// below [`Schedule::batch_end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Names the batch in later events.
    pub id: BatchId,
    /// The first group asked for.
    pub first: u64,
    /// Groups asked for.
    pub count: u64,
}

/// Names a batch in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchId(u64);

/// What a worker of a provider should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work<E> {
    /// Fetch this batch.
    Fetch(Batch),
    /// Nothing is left for it in this round: the worker ends.
    Done,
    /// Its provider is out of the fetch, for this reason.
    Stop(Dropped<E>),
}

/// What one provider has done in the fetch.
#[derive(Debug, Clone)]
pub struct ProviderState<E> {
    /// Group bytes received from it (verified or not).
    delivered: u64,
    /// Groups of it that failed verification.
    failures: u32,
    /// Why the last one failed.
    last_failure: String,
    /// Why it was dropped, if it was.
    dropped: Option<Dropped<E>>,
    /// Workers running for it (a worker shared by several providers counts for each).
    workers: u32,
    /// When it last delivered, or when the round began.
    moved: Option<Instant>,
}

impl<E> ProviderState<E> {
    fn new() -> Self {
        Self {
            delivered: 0,
            failures: 0,
            last_failure: String::new(),
            dropped: None,
            workers: 0,
            moved: None,
        }
    }

    /// Group bytes received from it (verified or not).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Groups it sent that failed verification.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Why the last of those failed ("" if none did).
    pub fn last_failure(&self) -> &str {
        &self.last_failure
    }

    /// Why it was dropped from the fetch, if it was.
    pub fn dropped(&self) -> Option<&Dropped<E>> {
        self.dropped.as_ref()
    }

    /// Whether a worker is running for it.
    pub fn working(&self) -> bool {
        self.workers > 0
    }

    fn silent_for(&self, now: Instant) -> Duration {
        self.moved
            .map_or(Duration::ZERO, |m| now.saturating_duration_since(m))
    }
}

/// A batch being fetched.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: BatchId,
    /// Whose worker fetches it.
    provider: usize,
    /// The first group not delivered yet (they come in order).
    next: u64,
    /// One past the last group it still has to deliver: lowered when another provider takes
    /// over its second half.
    end: u64,
}

impl InFlight {
    fn left(&self) -> u64 {
        self.end.saturating_sub(self.next)
    }
}

/// Figures at the start of a round, to tell whether the round achieved anything.
#[derive(Debug, Clone, Copy, Default)]
struct RoundStart {
    verified: u64,
    failures: u32,
    dropped: usize,
    /// Providers taking part.
    providers: usize,
}

/// The scheduler of one fetch (see the module comment).
#[derive(Debug, Clone)]
pub struct Schedule<E> {
    config: ScheduleConfig,
    /// Batches not claimed yet, as (first, count).
    queue: VecDeque<(u64, u64)>,
    inflight: Vec<InFlight>,
    next_id: u64,
    providers: Vec<ProviderState<E>>,
    /// Groups rebuilt from several providers' data that failed verification: nobody can be
    /// blamed for those.
    mixed_failures: u32,
    /// Halves of batches taken over from slower providers.
    take_overs: u64,
    round: RoundStart,
}

impl<E: Clone> Schedule<E> {
    /// A fetch from `providers` providers, numbered `0..providers` in every call.
    pub fn new(config: ScheduleConfig, providers: usize) -> Self {
        Self {
            config,
            queue: VecDeque::new(),
            inflight: Vec::new(),
            next_id: 0,
            providers: (0..providers).map(|_| ProviderState::new()).collect(),
            mixed_failures: 0,
            take_overs: 0,
            round: RoundStart::default(),
        }
    }

    // ---- rounds ----

    /// Begins a round, `verified` groups being done so far: drops every provider that has
    /// reached `max_failures`, empties the queue and restarts every provider's stall clock.
    /// Returns the providers taking part (none: the fetch has failed, see
    /// [`Schedule::providers`] for why).
    pub fn begin_round(&mut self, now: Instant, verified: u64) -> Vec<usize> {
        for p in 0..self.providers.len() {
            self.give_up_if_corrupt(p);
        }
        self.queue.clear();
        let live: Vec<usize> = (0..self.providers.len())
            .filter(|&p| !self.is_dropped(p))
            .collect();
        for state in &mut self.providers {
            state.moved = Some(now);
        }
        self.round = RoundStart {
            verified,
            failures: self.failed_groups(),
            dropped: self.dropped_count(),
            providers: live.len(),
        };
        live
    }

    /// Queues the `missing` runs of groups (first, count) as batches of at most
    /// `request_groups`, but small enough that each of `workers` workers gets one: a blob, or
    /// what is left of it, is striped over every worker.
    pub fn queue_missing(&mut self, missing: &[(u64, u64)], workers: usize, request_groups: u64) {
        let groups: u64 = missing.iter().map(|&(_, count)| count).sum();
        let per_worker = groups.div_ceil(workers.max(1) as u64);
        let batch = request_groups.min(per_worker).max(1);
        self.queue.clear();
        self.queue
            .extend(missing.iter().flat_map(|&(first, count)| {
                (0..count.div_ceil(batch))
                    .map(move |k| (first + k * batch, (count - k * batch).min(batch)))
            }));
    }

    /// Ends a round with `verified` groups done: whether it achieved anything (verified a
    /// group, saw a failure, or dropped a provider). A round that did not is stuck: asking
    /// again would only repeat it.
    pub fn end_round(&mut self, verified: u64) -> bool {
        verified != self.round.verified
            || self.failed_groups() != self.round.failures
            || self.dropped_count() != self.round.dropped
    }

    // ---- workers and batches ----

    /// A worker for `provider` has started (a worker serving several providers at once is
    /// started for each): a provider with workers is busy, and can stall.
    pub fn worker_started(&mut self, provider: usize) {
        if let Some(p) = self.providers.get_mut(provider) {
            p.workers += 1;
        }
    }

    /// A worker for `provider` has ended, however it ended.
    pub fn worker_stopped(&mut self, provider: usize) {
        if let Some(p) = self.providers.get_mut(provider) {
            p.workers = p.workers.saturating_sub(1);
        }
    }

    /// What a worker of `provider` should do next: stop if the provider is out of the fetch
    /// (dropping it first if it has reached `max_failures`), else fetch what
    /// [`Schedule::claim`] gives, with take-over when `help`.
    pub fn next_work(&mut self, provider: usize, help: bool) -> Work<E> {
        self.give_up_if_corrupt(provider);
        if let Some(reason) = self.providers.get(provider).and_then(|p| p.dropped.clone()) {
            return Work::Stop(reason);
        }
        match self.claim(provider, help) {
            Some(batch) => Work::Fetch(batch),
            None => Work::Done,
        }
    }

    /// The next batch for `provider` from the queue or, with `help` and the queue empty, the
    /// second half of what is left of the batch of another provider that has delivered less
    /// than this one (that provider stops at the half). None: nothing left to claim.
    pub fn claim(&mut self, provider: usize, help: bool) -> Option<Batch> {
        let (first, count) = match self.queue.pop_front() {
            Some(batch) => batch,
            None if help => self.take_over(provider)?,
            None => return None,
        };
        let id = BatchId(self.next_id);
        self.next_id += 1;
        self.inflight.push(InFlight {
            id,
            provider,
            next: first,
            end: first + count,
        });
        Some(Batch { id, first, count })
    }

    fn take_over(&mut self, provider: usize) -> Option<(u64, u64)> {
        let ours = self.delivered(provider);
        let providers = &self.providers;
        let slower = |b: &&mut InFlight| {
            b.provider != provider
                && providers.get(b.provider).map_or(0, |p| p.delivered) < ours
                && b.left() >= 2
        };
        let batch = self
            .inflight
            .iter_mut()
            .filter(slower)
            .max_by_key(|b| b.left())?;
        let (next, end) = (batch.next, batch.end);
        let mid = next + (end - next) / 2;
        batch.end = mid;
        self.take_overs += 1;
        Some((mid, end - mid))
    }

    /// Where batch `id` now ends (one past the last group its worker still has to deliver).
    /// None once it has finished.
    pub fn batch_end(&self, id: BatchId) -> Option<u64> {
        self.inflight.iter().find(|b| b.id == id).map(|b| b.end)
    }

    /// The groups of batch `id` before `next` have all been delivered (to the verifier).
    pub fn handle_delivered_to(&mut self, id: BatchId, next: u64) {
        if let Some(b) = self.inflight.iter_mut().find(|b| b.id == id) {
            b.next = b.next.max(next);
        }
    }

    /// `bytes` of group data arrived from `provider` (verified or not): it is moving.
    pub fn handle_received(&mut self, provider: usize, bytes: u64, now: Instant) {
        if let Some(p) = self.providers.get_mut(provider) {
            p.delivered += bytes;
            if bytes > 0 {
                p.moved = Some(now);
            }
        }
    }

    /// Group `index` of batch `id` (from its provider, `bytes` long) was delivered: counts
    /// the bytes and the batch's progress. Returns where the batch now ends (its worker stops
    /// reading there), None if it has finished.
    pub fn handle_group(
        &mut self,
        id: BatchId,
        index: u64,
        bytes: u64,
        now: Instant,
    ) -> Option<u64> {
        let b = self.inflight.iter_mut().find(|b| b.id == id)?;
        b.next = b.next.max(index + 1);
        let (provider, end) = (b.provider, b.end);
        self.handle_received(provider, bytes, now);
        Some(end)
    }

    /// The worker of batch `id` is done with it, delivered or not.
    pub fn handle_batch_finished(&mut self, id: BatchId) {
        self.inflight.retain(|b| b.id != id);
    }

    /// Puts groups `first..first + count` back at the head of the queue.
    pub fn put_back(&mut self, first: u64, count: u64) {
        self.queue.push_front((first, count));
    }

    // ---- verification and providers ----

    /// A group failed verification: blames `provider`, or nobody (None) for a group rebuilt
    /// from several providers' data. The group stays missing for the next round.
    pub fn handle_failed(&mut self, provider: Option<usize>, detail: String) {
        match provider.and_then(|p| self.providers.get_mut(p)) {
            Some(p) => {
                p.failures += 1;
                p.last_failure = detail;
            }
            None => self.mixed_failures += 1,
        }
    }

    /// Drops `provider` from the fetch for `reason`, unless it already was (the first reason
    /// stays). Returns whether this dropped it.
    pub fn drop_provider(&mut self, provider: usize, reason: Dropped<E>) -> bool {
        match self.providers.get_mut(provider) {
            Some(p) if p.dropped.is_none() => {
                p.dropped = Some(reason);
                true
            }
            _ => false,
        }
    }

    fn give_up_if_corrupt(&mut self, provider: usize) {
        if self.gave_up(provider) {
            let (failures, detail) = match self.providers.get(provider) {
                Some(p) => (p.failures, p.last_failure.clone()),
                None => return,
            };
            self.drop_provider(provider, Dropped::Corrupt { failures, detail });
        }
    }

    // ---- the stall judgement ----

    /// Judges stalls at `now` (with several providers in the round): a provider with work
    /// that has delivered nothing for the stall time, while another one still in the fetch
    /// is delivering or out of work (so could take over), is dropped. Returns those dropped.
    ///
    /// A provider found silent while nobody could take over is judged again at the next
    /// call: the driver calls this at [`Schedule::poll_timeout`] and after events, or on a
    /// steady tick.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<usize> {
        let mut stalled = Vec::new();
        if self.round.providers < 2 {
            return stalled;
        }
        let stall = self.config.stall;
        for p in 0..self.providers.len() {
            let state = &self.providers[p];
            if state.dropped.is_some() || !state.working() || state.silent_for(now) < stall {
                continue;
            }
            let others = self.providers.iter().enumerate().any(|(q, other)| {
                q != p
                    && other.dropped.is_none()
                    && (other.silent_for(now) < stall || !other.working())
            });
            if others && self.drop_provider(p, Dropped::Stalled { silent: stall }) {
                stalled.push(p);
            }
        }
        stalled
    }

    /// When the stall judgement may next drop a provider: the earliest time a busy provider
    /// not yet silent for the stall time will have been. None with a single provider.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.round.providers < 2 {
            return None;
        }
        self.providers
            .iter()
            .filter(|p| p.dropped.is_none() && p.working() && p.silent_for(now) < self.config.stall)
            .filter_map(|p| p.moved.map(|m| m + self.config.stall))
            .min()
    }

    // ---- getters ----

    /// The configuration.
    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// Every provider's state, in the fetch's order.
    pub fn providers(&self) -> &[ProviderState<E>] {
        &self.providers
    }

    /// Group bytes received from `provider`.
    pub fn delivered(&self, provider: usize) -> u64 {
        self.providers.get(provider).map_or(0, |p| p.delivered)
    }

    /// Group bytes received from every provider.
    pub fn total_delivered(&self) -> u64 {
        self.providers.iter().map(|p| p.delivered).sum()
    }

    /// Whether `provider` has reached `max_failures`.
    pub fn gave_up(&self, provider: usize) -> bool {
        self.providers
            .get(provider)
            .is_some_and(|p| p.failures >= self.config.max_failures)
    }

    /// Whether `provider` is out of the fetch (an unknown one is).
    pub fn is_dropped(&self, provider: usize) -> bool {
        self.providers
            .get(provider)
            .is_none_or(|p| p.dropped.is_some())
    }

    /// Groups that failed verification, blamed on a provider or not.
    pub fn failed_groups(&self) -> u32 {
        self.providers.iter().map(|p| p.failures).sum::<u32>() + self.mixed_failures
    }

    /// Groups rebuilt from several providers' data that failed verification.
    pub fn mixed_failures(&self) -> u32 {
        self.mixed_failures
    }

    /// Halves of batches taken over from slower providers so far.
    pub fn take_overs(&self) -> u64 {
        self.take_overs
    }

    /// Batches waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Batches being fetched.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    fn dropped_count(&self) -> usize {
        self.providers
            .iter()
            .filter(|p| p.dropped.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: ScheduleConfig = ScheduleConfig {
        max_failures: 2,
        stall: Duration::from_secs(3),
    };

    fn fetch(batch: Work<&'static str>) -> Batch {
        match batch {
            Work::Fetch(b) => b,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn missing_groups_are_striped_over_every_worker() {
        let mut s: Schedule<&str> = Schedule::new(CONFIG, 2);
        s.begin_round(Instant::now(), 0);
        s.queue_missing(&[(0, 10), (20, 3)], 4, 64);
        // 13 groups over 4 workers: batches of 4, never across a gap.
        let mut got = Vec::new();
        while let Some(b) = s.claim(0, false) {
            got.push((b.first, b.count));
        }
        assert_eq!(got, [(0, 4), (4, 4), (8, 2), (20, 3)]);
        s.queue_missing(&[(0, 100)], 2, 8);
        assert_eq!(s.queued(), 13);
    }

    #[test]
    fn a_faster_provider_takes_the_second_half_of_a_slower_ones_batch() {
        let now = Instant::now();
        let mut s: Schedule<&str> = Schedule::new(CONFIG, 2);
        s.begin_round(now, 0);
        s.queue_missing(&[(0, 20)], 2, 10);
        let slow = fetch(s.next_work(0, true));
        let fast = fetch(s.next_work(1, true));
        assert_eq!(s.handle_group(slow.id, 0, 100, now), Some(10));
        for i in 10..20 {
            s.handle_group(fast.id, i, 100, now);
        }
        s.handle_batch_finished(fast.id);
        // Groups 1..10 left to the slow one: the fast one takes 5..10.
        let taken = fetch(s.next_work(1, true));
        assert_eq!((taken.first, taken.count), (5, 5));
        assert_eq!(s.batch_end(slow.id), Some(5));
        // The slow one never helps a faster one, and nothing is left for it to take.
        assert_eq!(s.next_work(0, true), Work::Done);
        // A batch with fewer than two groups left is not split.
        s.handle_delivered_to(slow.id, 4);
        assert_eq!(s.next_work(1, true), Work::Done);
        // Without help, an empty queue is the end.
        assert_eq!(s.claim(1, false), None);
    }

    #[test]
    fn a_provider_that_reaches_max_failures_is_stopped_and_named() {
        let mut s: Schedule<&str> = Schedule::new(CONFIG, 2);
        s.begin_round(Instant::now(), 0);
        s.queue_missing(&[(0, 4)], 4, 1);
        s.handle_failed(Some(1), "group 0: hash mismatch".into());
        assert!(matches!(s.next_work(1, true), Work::Fetch(_)));
        s.handle_failed(Some(1), "group 1: hash mismatch".into());
        let corrupt = Dropped::Corrupt {
            failures: 2,
            detail: "group 1: hash mismatch".into(),
        };
        assert_eq!(s.next_work(1, true), Work::Stop(corrupt.clone()));
        assert_eq!(s.providers()[1].dropped(), Some(&corrupt));
        // A later reason does not replace the first.
        assert!(!s.drop_provider(1, Dropped::Failed("gone")));
        s.handle_failed(None, "mixed".into());
        assert_eq!((s.failed_groups(), s.mixed_failures()), (3, 1));
        assert_eq!(s.begin_round(Instant::now(), 0), [0]);
    }

    #[test]
    fn a_silent_provider_is_dropped_only_while_another_could_take_over() {
        let t0 = Instant::now();
        let mut s: Schedule<&str> = Schedule::new(CONFIG, 3);
        s.begin_round(t0, 0);
        for p in 0..3 {
            s.worker_started(p);
        }
        assert_eq!(s.poll_timeout(t0), Some(t0 + CONFIG.stall));
        // Everybody silent: nobody could take over.
        assert!(s.handle_timeout(t0 + Duration::from_secs(4)).is_empty());
        let t1 = t0 + Duration::from_secs(5);
        s.handle_received(1, 10, t1);
        assert_eq!(s.handle_timeout(t1), [0, 2]);
        assert_eq!(
            s.providers()[0].dropped(),
            Some(&Dropped::Stalled {
                silent: CONFIG.stall
            })
        );
        // The one left alone is never judged a stall against dropped ones.
        assert!(s.handle_timeout(t1 + Duration::from_secs(10)).is_empty());
        // With one provider in the round there is no judgement at all.
        let mut one: Schedule<&str> = Schedule::new(CONFIG, 1);
        one.begin_round(t0, 0);
        one.worker_started(0);
        assert_eq!(one.poll_timeout(t0), None);
        assert!(one.handle_timeout(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn an_idle_provider_counts_as_one_that_could_take_over() {
        let t0 = Instant::now();
        let mut s: Schedule<&str> = Schedule::new(CONFIG, 2);
        s.begin_round(t0, 0);
        s.worker_started(0);
        s.worker_started(1);
        s.worker_stopped(1);
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(3)), [0]);
    }

    #[test]
    fn a_round_that_changes_nothing_is_stuck() {
        let now = Instant::now();
        let mut s: Schedule<&str> = Schedule::new(CONFIG, 2);
        s.begin_round(now, 3);
        assert!(!s.end_round(3));
        s.begin_round(now, 3);
        assert!(s.end_round(4));
        s.begin_round(now, 4);
        s.handle_failed(Some(0), "bad".into());
        assert!(s.end_round(4));
        s.begin_round(now, 4);
        s.drop_provider(1, Dropped::Failed("gone"));
        assert!(s.end_round(4));
    }
}
