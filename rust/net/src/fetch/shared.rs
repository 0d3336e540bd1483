//! What the tasks of one fetch share: the fetch itself ([`Fetch`]: the blob, the options, the
//! buffers and the scheduler behind a lock) and each provider's view of it ([`Shared`]).
//!
//! Decisions (which batch next, take-over, give-up, stalls) are the scheduler's,
//! [`i6p_core::schedule::Schedule`]; this module only holds it under a `Mutex` and turns its
//! answers into handles that tasks can hold across awaits ([`Claim`], [`BatchProgress`]).
//! The lock is held for a few field updates at a time, never across an await.

use super::options::{FecStats, FetchOptions, Progress};
use crate::error::{NetError, Result};
use crate::session::Session;
use i6p_core::fec::{LossEstimate, LossReport};
use i6p_core::schedule::{BatchId, Dropped, Schedule, ScheduleConfig, Work};
use i6p_core::tree::{Cv, MAX_PROOF_LEN};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// With several providers, one that sends nothing for this long while others deliver is
/// dropped from the fetch.
pub(crate) const PROVIDER_STALL: Duration = Duration::from_secs(3);

/// [`Slot::provider`] of a group rebuilt from several providers' shards.
pub(crate) const MIXED: usize = usize::MAX;

/// A group on its way from the network to the disk: a pooled buffer plus what arrived with it.
pub(crate) struct Slot {
    /// Which provider sent it (its place in the fetch's list), or [`MIXED`].
    pub(crate) provider: usize,
    pub(crate) index: u64,
    pub(crate) proof: Vec<Cv>,
    pub(crate) data: Vec<u8>,
}

/// Group buffers for reuse: in steady state a fetch allocates nothing per group. At most
/// (streams + disk queue + 1) slots exist, as every other one waits in the pool.
pub(crate) struct Pool {
    free: Mutex<Vec<Slot>>,
    group_len: usize,
}

impl Pool {
    fn new(group_len: usize) -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            group_len,
        }
    }

    pub(crate) fn take(&self) -> Slot {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        reused.unwrap_or_else(|| Slot {
            provider: 0,
            index: 0,
            proof: Vec::with_capacity(MAX_PROOF_LEN),
            data: vec![0; self.group_len],
        })
    }

    pub(crate) fn give(&self, slot: Slot) {
        if let Ok(mut free) = self.free.lock() {
            free.push(slot);
        }
    }
}

/// What FEC batches report, counted for the whole fetch.
#[derive(Default)]
struct FecFigures {
    /// The (random) shard loss seen so far, which each new request starts from.
    loss: Mutex<LossEstimate>,
    shards_received: AtomicU64,
    shards_lost: AtomicU64,
    stripes_repaired: AtomicU64,
    stripes_combined: AtomicU64,
    /// Set once providers' shards must no longer be combined in one stripe.
    combine_off: AtomicBool,
}

/// One fetch: the blob, how it runs, and its scheduler.
pub(crate) struct Fetch {
    pub(crate) hash: [u8; 32],
    pub(crate) size: u64,
    pub(crate) group_log: u8,
    pub(crate) options: FetchOptions,
    pub(crate) pool: Pool,
    pub(crate) progress: Arc<Progress>,
    /// Who each provider is, in the scheduler's order (for errors that name it).
    peers: Vec<i6p_core::PeerId>,
    schedule: Mutex<Schedule<NetError>>,
    fec: FecFigures,
}

impl Fetch {
    pub(crate) fn new(
        hash: [u8; 32],
        size: u64,
        group_log: u8,
        options: FetchOptions,
        progress: Arc<Progress>,
        peers: Vec<i6p_core::PeerId>,
    ) -> Self {
        let config = ScheduleConfig {
            max_failures: options.max_failures,
            stall: PROVIDER_STALL,
        };
        Self {
            hash,
            size,
            group_log,
            options,
            pool: Pool::new(1 << group_log),
            progress,
            schedule: Mutex::new(Schedule::new(config, peers.len())),
            peers,
            fec: FecFigures::default(),
        }
    }

    /// The scheduler. A panic while it was held leaves no half-made change behind (every
    /// event is a few field updates), so a poisoned lock is taken as it is.
    pub(crate) fn schedule(&self) -> MutexGuard<'_, Schedule<NetError>> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error a provider's drop reason stands for.
    fn error(&self, provider: usize, reason: Dropped<NetError>) -> NetError {
        match (reason, self.peers.get(provider)) {
            (Dropped::Corrupt { failures, detail }, Some(&peer)) => NetError::Integrity {
                provider: peer,
                failures,
                detail,
            },
            (Dropped::Corrupt { detail, .. }, None) => NetError::Io(detail),
            (Dropped::Stalled { silent }, _) => NetError::Stream(format!(
                "sent nothing for {silent:?} while other providers could"
            )),
            (Dropped::Failed(e), _) => e,
        }
    }

    /// Why each provider was dropped, if it was, in the fetch's order.
    pub(crate) fn dropped(&self) -> Vec<Option<NetError>> {
        let schedule = self.schedule();
        let providers = schedule.providers().iter().enumerate();
        providers
            .map(|(p, state)| state.dropped().map(|r| self.error(p, r.clone())))
            .collect()
    }

    /// A group failed verification: blamed on `provider`, or, rebuilt from several
    /// providers' shards ([`MIXED`]), on nobody; then the fetch stops combining, and each
    /// provider answers for its own batches.
    pub(crate) fn fail(&self, provider: usize, index: u64, detail: String) {
        if provider == MIXED {
            tracing::debug!(index, %detail, "a combined group failed verification");
            self.schedule().handle_failed(None, detail);
            self.stop_combining();
        } else {
            tracing::debug!(index, %detail, "group failed verification");
            self.schedule().handle_failed(Some(provider), detail);
        }
    }

    /// Whether FEC batches may still combine several providers' shards.
    pub(crate) fn combining(&self) -> bool {
        !self.fec.combine_off.load(Ordering::Relaxed)
    }

    pub(crate) fn stop_combining(&self) {
        self.fec.combine_off.store(true, Ordering::Relaxed);
    }

    /// Takes a FEC loss report into the fetch's loss estimate.
    pub(crate) fn fec_report(&self, report: &LossReport) {
        if let Ok(mut loss) = self.fec.loss.lock() {
            loss.report(report);
        }
        let fec = &self.fec;
        fec.shards_received
            .fetch_add(report.received, Ordering::Relaxed);
        fec.shards_lost.fetch_add(report.lost, Ordering::Relaxed);
    }

    /// Counts stripes asked for again over the stream.
    pub(crate) fn fec_repaired(&self, stripes: u64) {
        self.fec
            .stripes_repaired
            .fetch_add(stripes, Ordering::Relaxed);
    }

    /// Counts a stripe rebuilt from several providers' shards.
    pub(crate) fn fec_combined(&self) {
        self.fec.stripes_combined.fetch_add(1, Ordering::Relaxed);
    }

    /// The FEC loss estimate in millionths.
    pub(crate) fn fec_loss_ppm(&self) -> u32 {
        self.fec
            .loss
            .lock()
            .map(|l| (l.loss().clamp(0.0, 1.0) * 1e6) as u32)
            .unwrap_or(0)
    }

    /// What the shards did, for the outcome.
    pub(crate) fn fec_stats(&self) -> FecStats {
        let fec = &self.fec;
        FecStats {
            shards_received: fec.shards_received.load(Ordering::Relaxed),
            shards_lost: fec.shards_lost.load(Ordering::Relaxed),
            stripes_repaired: fec.stripes_repaired.load(Ordering::Relaxed),
            stripes_combined: fec.stripes_combined.load(Ordering::Relaxed),
            loss: fec.loss.lock().map(|l| l.loss()).unwrap_or(0.0),
        }
    }
}

/// One provider of a fetch: its session and place in the fetch, with the fetch's shared
/// state one dereference away (`shared.hash`, `shared.pool`, `shared.options`).
pub(crate) struct Shared {
    fetch: Arc<Fetch>,
    /// The session the fetch started on; requests go to [`Self::session`].
    started_on: Session,
    /// Its place in the fetch's list of providers.
    pub(crate) provider: usize,
    /// Group bytes received from this provider (counted by the scheduler).
    pub(crate) fetched: Received,
}

impl Deref for Shared {
    type Target = Fetch;

    fn deref(&self) -> &Fetch {
        &self.fetch
    }
}

impl Shared {
    pub(crate) fn new(fetch: Arc<Fetch>, session: Session, provider: usize) -> Self {
        Self {
            fetched: Received {
                fetch: fetch.clone(),
                provider,
            },
            fetch,
            started_on: session,
            provider,
        }
    }

    /// The session a new request to this provider goes on: the one the fetch started on,
    /// or the session that replaced it (a relayed session upgraded to a direct path: the
    /// fetch moves there at its next request, see `session::successor`).
    pub(crate) fn session(&self) -> Session {
        self.started_on.current()
    }

    /// Records a verification failure; the group stays missing and the next round asks again.
    pub(crate) fn fail(&self, index: u64, detail: String) {
        self.fetch.fail(self.provider, index, detail);
    }

    /// Whether this provider has sent `max_failures` groups that failed verification.
    pub(crate) fn gave_up(&self) -> bool {
        self.schedule().gave_up(self.provider)
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.schedule().is_dropped(self.provider)
    }

    /// Drops this provider from the fetch, unless it already was (the first reason stays).
    pub(crate) fn drop_with(&self, e: NetError) {
        self.schedule()
            .drop_provider(self.provider, Dropped::Failed(e));
    }

    /// The integrity error naming this provider, with its failures so far.
    pub(crate) fn integrity_error(&self) -> NetError {
        let corrupt = {
            let schedule = self.schedule();
            let state = schedule.providers().get(self.provider);
            Dropped::Corrupt {
                failures: state.map_or(0, |p| p.failures()),
                detail: state.map_or(String::new(), |p| p.last_failure().to_string()),
            }
        };
        self.fetch.error(self.provider, corrupt)
    }

    /// The next batch for a worker of this provider: an error if the provider is out of the
    /// fetch (given up after `max_failures`, or dropped), None if nothing is left.
    pub(crate) fn next_claim(&self) -> Result<Option<Claim>> {
        let work = self.schedule().next_work(self.provider, true);
        match work {
            Work::Fetch(batch) => Ok(Some(self.claim_handle(batch))),
            Work::Done => Ok(None),
            Work::Stop(reason) => Err(self.fetch.error(self.provider, reason)),
        }
    }

    /// The next batch of groups from the queue or, with `help` and the queue empty, the
    /// second half of what is left of the batch of a provider that has delivered less than
    /// this one (see [`Schedule::claim`]).
    pub(crate) fn claim(&self, help: bool) -> Result<Option<Claim>> {
        let batch = self.schedule().claim(self.provider, help);
        Ok(batch.map(|b| self.claim_handle(b)))
    }

    fn claim_handle(&self, batch: i6p_core::schedule::Batch) -> Claim {
        Claim {
            first: batch.first,
            count: batch.count,
            progress: Arc::new(BatchProgress {
                fetch: self.fetch.clone(),
                id: batch.id,
                end: batch.first + batch.count,
            }),
        }
    }

    /// Puts a batch back at the head of the queue.
    pub(crate) fn put_back(&self, first: u64, count: u64) {
        self.schedule().put_back(first, count);
    }
}

/// Group bytes received from one provider, counted in the scheduler (whose stall judgement
/// and take-over go by them). Shaped like an atomic counter, for the FEC batches' calls.
pub(crate) struct Received {
    fetch: Arc<Fetch>,
    provider: usize,
}

impl Received {
    /// Counts `bytes` received now (the ordering is the lock's).
    pub(crate) fn fetch_add(&self, bytes: u64, _: Ordering) -> u64 {
        let mut schedule = self.fetch.schedule();
        let before = schedule.delivered(self.provider);
        schedule.handle_received(self.provider, bytes, Instant::now());
        before
    }
}

/// How far a batch has got, and where it now ends.
pub(crate) struct BatchProgress {
    fetch: Arc<Fetch>,
    id: BatchId,
    /// Where it ended when claimed.
    end: u64,
}

impl BatchProgress {
    /// One past the last group still to deliver (another provider has the rest).
    pub(crate) fn end(&self) -> u64 {
        self.fetch.schedule().batch_end(self.id).unwrap_or(self.end)
    }

    /// Groups before `next` have all been delivered.
    pub(crate) fn delivered_to(&self, next: u64) {
        self.fetch.schedule().handle_delivered_to(self.id, next);
    }

    /// Ends the batch at group `index` and puts the rest of it back at the head of the
    /// queue, in one step (a helper cannot take part of it meanwhile).
    pub(crate) fn give_back_from(&self, index: u64) {
        let mut schedule = self.fetch.schedule();
        let end = schedule.batch_end(self.id).unwrap_or(self.end);
        schedule.handle_batch_finished(self.id);
        if index < end {
            schedule.put_back(index, end - index);
        }
    }

    /// Group `index` (`bytes` long) arrived from the batch's provider: counts both.
    pub(crate) fn delivered(&self, index: u64, bytes: u64) {
        self.fetch
            .schedule()
            .handle_group(self.id, index, bytes, Instant::now());
    }
}

/// A batch of groups a worker fetches: `first..first + count` as asked for, of which it
/// delivers those below [`BatchProgress::end`]. Dropping it ends the batch.
pub(crate) struct Claim {
    pub(crate) first: u64,
    pub(crate) count: u64,
    progress: Arc<BatchProgress>,
}

impl Claim {
    /// Where the batch stands, for a FEC batch to follow and update.
    pub(crate) fn progress(&self) -> Arc<BatchProgress> {
        self.progress.clone()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.progress
            .fetch
            .schedule()
            .handle_batch_finished(self.progress.id);
    }
}

/// Registers a worker with the scheduler for as long as it lives, however it ends (an
/// aborted task drops it too): a provider with workers is busy, and can stall.
pub(crate) struct WorkerGuard {
    fetch: Arc<Fetch>,
    providers: Vec<usize>,
}

impl WorkerGuard {
    pub(crate) fn new(fetch: &Arc<Fetch>, providers: Vec<usize>) -> Self {
        {
            let mut schedule = fetch.schedule();
            for &p in &providers {
                schedule.worker_started(p);
            }
        }
        Self {
            fetch: fetch.clone(),
            providers,
        }
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let mut schedule = self.fetch.schedule();
        for &p in &self.providers {
            schedule.worker_stopped(p);
        }
    }
}

/// Adds what an attempt fetched to its progress when the attempt ends, however it ends.
pub(crate) struct CountFetched(pub(crate) Arc<Fetch>);

impl Drop for CountFetched {
    fn drop(&mut self) {
        let n = self.0.schedule().total_delivered();
        self.0.progress.fetched.fetch_add(n, Ordering::Relaxed);
    }
}
