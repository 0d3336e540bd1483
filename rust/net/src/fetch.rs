//! The requester side of blob transfers: verified, resumable fetching into a file.
//!
//! Three stages, so that the network, hashing and the disk do not wait for each other:
//! - stream workers (async tasks), `streams` of them, each with a GET request in flight on a
//!   stream of its own, read every group's proof and data straight into a pooled buffer;
//! - the disk stage (one blocking thread) verifies each group against the blob's root, writes
//!   it with a positioned write, and records it in the state file (after an fsync) every
//!   `save_interval`, so progress reported is progress that survives a crash;
//! - rounds: groups that failed verification stay missing and are asked for again, until
//!   `max_failures`, when the fetch fails with an integrity error naming the provider.
//!
//! Buffers go back to a pool once written: in steady state nothing is allocated per group.

use crate::control::write_frame_raw;
use crate::error::{NetError, Result};
use crate::session::Session;
use crate::storage::PartialDownload;
use crate::stream::read_error;
use bytes::{Bytes, BytesMut};
use i6p_core::transfer::{
    decode_blob, decode_group_header, GetRequest, TransferError, FRAME_BLOB, FRAME_ERROR,
    GROUP_HEADER_LEN, STREAM_KIND_BLOBS,
};
use i6p_core::tree::{
    check_group_log, group_count, group_range, verify_group, Cv, DEFAULT_GROUP_LOG, MAX_PROOF_LEN,
};
use quinn::VarInt;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a fetch runs.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// log2 of the chunk-group size (14..=22; default 18 = 256 KiB).
    pub group_log: u8,
    /// Requests in flight at once, each on its own stream.
    pub streams: usize,
    /// Bytes asked for per request (rounded to whole groups, at least one).
    pub request_bytes: u64,
    /// Failed verifications tolerated from one provider before giving up.
    pub max_failures: u32,
    /// Replace an existing destination file.
    pub overwrite: bool,
    /// Longest time between state saves.
    pub save_interval: Duration,
    /// How [`fetch_ticket`] gets back to the provider when the connection drops.
    pub reconnect: Reconnect,
    /// FEC mode: groups come as erasure-coded shards in datagrams (see [`crate::fec_fetch`]).
    pub fec: Option<crate::fec_fetch::FecOptions>,
    /// A provider that makes no progress for this long is given up on (in FEC mode, only
    /// new shards of stripes still open and frames that bring data count as progress).
    pub stall_timeout: Duration,
}

/// Reconnection after a dropped connection: up to `attempts` in a row that bring no new
/// verified data, `backoff` apart at first and twice as long each time, up to `max_backoff`.
/// Groups already verified are kept: each attempt fetches only what is still missing.
#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    /// Attempts in a row without progress before giving up (0: never reconnect).
    pub attempts: u32,
    /// Wait before the first attempt.
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            group_log: DEFAULT_GROUP_LOG,
            streams: 8,
            request_bytes: 16 << 20,
            max_failures: 3,
            overwrite: false,
            save_interval: Duration::from_millis(100),
            reconnect: Reconnect::default(),
            fec: None,
            stall_timeout: STALL_TIMEOUT,
        }
    }
}

/// Progress of a fetch, readable at any time from any thread.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes verified and durable on disk (including those reused from an earlier run).
    pub done: AtomicU64,
    /// The blob's size.
    pub total: AtomicU64,
    /// Group bytes received over the network by attempts that ended.
    fetched: AtomicU64,
    /// Bytes reused from an earlier run, as the first attempt found them.
    reused: std::sync::OnceLock<u64>,
}

/// What one provider did for a fetch.
#[derive(Debug, Clone)]
pub struct ProviderOutcome {
    /// Who.
    pub peer: i6p_core::PeerId,
    /// Group bytes received from it.
    pub bytes: u64,
    /// Why it was dropped from the fetch (unreachable, gone, or serving corrupt data), if
    /// it was.
    pub error: Option<NetError>,
}

/// What a completed fetch did.
#[derive(Debug, Clone)]
pub struct FetchOutcome {
    /// The blob's size.
    pub size: u64,
    /// Bytes of group data received over the network (verified or not).
    pub bytes_fetched: u64,
    /// Bytes already verified on disk from an earlier, interrupted run.
    pub bytes_reused: u64,
    /// Groups that failed verification and were fetched again.
    pub failed_groups: u32,
    /// Wall time of this run.
    pub duration: Duration,
    /// The finished file.
    pub path: PathBuf,
    /// Every provider asked, with what it sent and whether it was dropped.
    pub providers: Vec<ProviderOutcome>,
    /// FEC mode: what the shards did.
    pub fec: Option<FecStats>,
}

/// What the shards of a FEC-mode fetch did.
#[derive(Debug, Clone, Copy, Default)]
pub struct FecStats {
    /// Shards that arrived (in stripes judged).
    pub shards_received: u64,
    /// Shards that never arrived.
    pub shards_lost: u64,
    /// Stripes that lost more than their parity and came again over the stream.
    pub stripes_repaired: u64,
    /// Stripes rebuilt from the shards of more than one provider.
    pub stripes_combined: u64,
    /// The final shard loss estimate (what the parity was chosen from).
    pub loss: f64,
}

/// With several providers, one that sends nothing for this long while others deliver is
/// dropped from the fetch.
const PROVIDER_STALL: Duration = Duration::from_secs(3);

/// FEC requests in flight at once: three, so that the round trip of a new request and the repairs at the end of one overlap the shards of the others.
const FEC_REQUESTS: usize = 3;

/// Received groups queued for the disk stage (to be verified and written), at most in bytes.
const DISK_QUEUE_BYTES: usize = 8 << 20;

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

/// A batch some provider's worker is fetching.
pub(crate) struct InFlight {
    provider: usize,
    /// What its provider has delivered so far in the fetch.
    provider_fetched: Arc<AtomicU64>,
    /// Shared with the [`Claim`] fetching it.
    progress: Arc<BatchProgress>,
}

/// How far a batch has got, and where it now ends.
#[derive(Debug)]
pub(crate) struct BatchProgress {
    /// The first group not delivered yet (in order).
    next: AtomicU64,
    /// One past the last group this batch still has to deliver: lowered when another
    /// provider takes over its second half.
    end: AtomicU64,
}

impl BatchProgress {
    /// One past the last group still to deliver (another provider has the rest).
    pub(crate) fn end(&self) -> u64 {
        self.end.load(Ordering::Relaxed)
    }

    /// Groups before `next` have all been delivered.
    pub(crate) fn delivered_to(&self, next: u64) {
        self.next.fetch_max(next, Ordering::Relaxed);
    }
}

/// A batch of groups a worker fetches: `first..first + count` as asked for, of which it
/// delivers those below [`Claim::end`].
pub(crate) struct Claim {
    inflight: Arc<Mutex<Vec<InFlight>>>,
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
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.retain(|b| !Arc::ptr_eq(&b.progress, &self.progress));
        }
    }
}

/// One provider of a fetch, with what every provider shares (queue, buffers, progress).
pub(crate) struct Shared {
    pub(crate) session: Session,
    /// Its place in the fetch's list of providers.
    pub(crate) provider: usize,
    pub(crate) hash: [u8; 32],
    pub(crate) size: u64,
    pub(crate) group_log: u8,
    pub(crate) queue: Arc<Mutex<VecDeque<(u64, u64)>>>,
    /// Batches being fetched, by every provider.
    inflight: Arc<Mutex<Vec<InFlight>>>,
    pub(crate) pool: Arc<Pool>,
    /// Group bytes received from this provider.
    pub(crate) fetched: Arc<AtomicU64>,
    failures: AtomicU32,
    last_failure: Mutex<String>,
    pub(crate) options: FetchOptions,
    progress: Arc<Progress>,
    /// FEC mode: the (random) shard loss seen so far, which each new request starts from.
    fec_loss: Arc<Mutex<i6p_core::fec::LossEstimate>>,
    /// FEC mode: shards received, shards lost, stripes repaired, stripes combined.
    fec_counts: Arc<[AtomicU64; 4]>,
    /// FEC mode: set once providers' shards must no longer be combined in one stripe.
    combine_off: Arc<AtomicBool>,
    /// Groups made of several providers' shards that failed verification.
    mixed_failures: Arc<AtomicU32>,
    /// Why this provider was dropped from the fetch, if it was.
    dropped: Mutex<Option<NetError>>,
}

impl Shared {
    /// Records a verification failure; the groups stay missing and the next round asks again.
    pub(crate) fn fail(&self, index: u64, detail: String) {
        tracing::debug!(index, %detail, "group failed verification");
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_failure.lock() {
            *last = detail;
        }
    }

    /// Takes a FEC loss report into the fetch's loss estimate.
    pub(crate) fn fec_report(&self, report: &i6p_core::fec::LossReport) {
        if let Ok(mut loss) = self.fec_loss.lock() {
            loss.report(report);
        }
        self.fec_counts[0].fetch_add(report.received, Ordering::Relaxed);
        self.fec_counts[1].fetch_add(report.lost, Ordering::Relaxed);
    }

    /// Counts stripes asked for again over the stream.
    pub(crate) fn fec_repaired(&self, stripes: u64) {
        self.fec_counts[2].fetch_add(stripes, Ordering::Relaxed);
    }

    /// Counts a stripe rebuilt from several providers' shards.
    pub(crate) fn fec_combined(&self) {
        self.fec_counts[3].fetch_add(1, Ordering::Relaxed);
    }

    /// The FEC loss estimate in millionths.
    pub(crate) fn fec_loss_ppm(&self) -> u32 {
        self.fec_loss
            .lock()
            .map(|l| (l.loss().clamp(0.0, 1.0) * 1e6) as u32)
            .unwrap_or(0)
    }

    pub(crate) fn gave_up(&self) -> bool {
        self.failures.load(Ordering::Relaxed) >= self.options.max_failures
    }

    /// The next batch of groups from the shared queue or, with `help` and the queue empty,
    /// the second half of what is left of the batch of a provider that has delivered less
    /// than this one (a slow provider's last batches do not hold up the fetch while a faster
    /// one sits idle; the slow one stops at the half).
    pub(crate) fn claim(&self, help: bool) -> Result<Option<Claim>> {
        let mut inflight = self.inflight.lock().map_err(|_| poisoned())?;
        let next = self.queue.lock().map_err(|_| poisoned())?.pop_front();
        let (first, count) = match next {
            Some(batch) => batch,
            None if help => {
                let ours = self.fetched.load(Ordering::Relaxed);
                let left = |b: &InFlight| {
                    let p = &b.progress;
                    p.end
                        .load(Ordering::Relaxed)
                        .saturating_sub(p.next.load(Ordering::Relaxed))
                };
                let Some(batch) = inflight
                    .iter()
                    .filter(|b| {
                        b.provider != self.provider
                            && b.provider_fetched.load(Ordering::Relaxed) < ours
                            && left(b) >= 2
                    })
                    .max_by_key(|b| left(b))
                else {
                    return Ok(None);
                };
                let (next, end) = (
                    batch.progress.next.load(Ordering::Relaxed),
                    batch.progress.end.load(Ordering::Relaxed),
                );
                let mid = next + (end - next) / 2;
                batch.progress.end.store(mid, Ordering::Relaxed);
                tracing::debug!(
                    from = batch.provider,
                    by = self.provider,
                    mid,
                    end,
                    "taking over the second half of another provider's batch"
                );
                (mid, end - mid)
            }
            None => return Ok(None),
        };
        let progress = Arc::new(BatchProgress {
            next: AtomicU64::new(first),
            end: AtomicU64::new(first + count),
        });
        inflight.push(InFlight {
            provider: self.provider,
            provider_fetched: self.fetched.clone(),
            progress: progress.clone(),
        });
        Ok(Some(Claim {
            inflight: self.inflight.clone(),
            first,
            count,
            progress,
        }))
    }

    /// Puts a batch back at the head of the queue.
    pub(crate) fn put_back(&self, first: u64, count: u64) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.push_front((first, count));
        }
    }

    /// Whether FEC batches may still combine several providers' shards.
    pub(crate) fn combining(&self) -> bool {
        !self.combine_off.load(Ordering::Relaxed)
    }

    pub(crate) fn stop_combining(&self) {
        self.combine_off.store(true, Ordering::Relaxed);
    }

    /// A group rebuilt from several providers' shards failed verification: nobody can be
    /// blamed, so the fetch stops combining and each provider answers for its own batches.
    fn mixed_failure(&self, index: u64, detail: String) {
        tracing::debug!(index, %detail, "a combined group failed verification");
        self.mixed_failures.fetch_add(1, Ordering::Relaxed);
        self.stop_combining();
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.lock().map(|d| d.is_some()).unwrap_or(true)
    }

    pub(crate) fn drop_with(&self, e: NetError) {
        if let Ok(mut d) = self.dropped.lock() {
            d.get_or_insert(e);
        }
    }

    pub(crate) fn integrity_error(&self) -> NetError {
        NetError::Integrity {
            provider: self.session.remote_peer_id(),
            failures: self.failures.load(Ordering::Relaxed),
            detail: self
                .last_failure
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default(),
        }
    }
}

fn io_error(e: std::io::Error, what: &str) -> NetError {
    // ENOSPC and EDQUOT: the disk is full; the partial state stays consistent.
    if matches!(e.raw_os_error(), Some(28) | Some(122)) {
        NetError::DiskFull(format!("{what}: {e}"))
    } else {
        NetError::Io(format!("{what}: {e}"))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetError::Io(format!("blocking task failed: {e}")))
}

/// Fetches blob `hash` of `size` bytes from `session`'s peer into `dest`.
pub async fn fetch_to_file(
    session: &Session,
    hash: [u8; 32],
    size: u64,
    dest: PathBuf,
    options: FetchOptions,
    progress: Arc<Progress>,
) -> Result<FetchOutcome> {
    fetch_from(
        std::slice::from_ref(session),
        hash,
        size,
        dest,
        options,
        progress,
    )
    .await
}

/// Fetches blob `hash` of `size` bytes from every peer of `sessions` at once into `dest`:
/// they share one queue of requests, so each serves what it can. A provider whose
/// connection fails, or that sends `max_failures` groups that fail verification, is dropped
/// and the others carry on; the fetch fails only when none is left.
pub async fn fetch_from(
    sessions: &[Session],
    hash: [u8; 32],
    size: u64,
    dest: PathBuf,
    options: FetchOptions,
    progress: Arc<Progress>,
) -> Result<FetchOutcome> {
    check_group_log(options.group_log)?;
    if let Some(fec) = &options.fec {
        fec.validate()?;
    }
    let Some(provider) = sessions.first().map(|s| s.remote_peer_id()) else {
        return Err(NetError::Config(
            "a fetch needs at least one provider".into(),
        ));
    };
    let start = Instant::now();
    if dest.exists() && !options.overwrite {
        return Err(NetError::DestinationExists(dest.display().to_string()));
    }
    let group_log = options.group_log;
    let path = dest.clone();
    let mut download = blocking(move || PartialDownload::open(&path, hash, size, group_log))
        .await?
        .map_err(|e| io_error(e, "cannot open the partial download"))?;
    let group_log = download.state.group_log;
    let reused = download.reused_bytes;
    let _ = progress.reused.set(reused);
    progress.total.store(size, Ordering::Relaxed);
    progress.done.store(reused, Ordering::Relaxed);
    let (queue, fec_loss) = (
        Arc::default(),
        Arc::<Mutex<i6p_core::fec::LossEstimate>>::default(),
    );
    let inflight = Arc::default();
    let fec_counts: Arc<[AtomicU64; 4]> = Arc::default();
    let (combine_off, mixed_failures) = (Arc::<AtomicBool>::default(), Arc::<AtomicU32>::default());
    let pool = Arc::new(Pool {
        free: Mutex::new(Vec::new()),
        group_len: 1 << group_log,
    });
    let providers: Vec<Arc<Shared>> = sessions
        .iter()
        .enumerate()
        .map(|(provider, session)| {
            Arc::new(Shared {
                session: session.clone(),
                provider,
                hash,
                size,
                group_log,
                queue: Arc::clone(&queue),
                inflight: Arc::clone(&inflight),
                pool: pool.clone(),
                fetched: Arc::default(),
                failures: AtomicU32::new(0),
                last_failure: Mutex::new(String::new()),
                options: options.clone(),
                progress: progress.clone(),
                fec_loss: fec_loss.clone(),
                fec_counts: fec_counts.clone(),
                combine_off: combine_off.clone(),
                mixed_failures: mixed_failures.clone(),
                dropped: Mutex::new(None),
            })
        })
        .collect();
    let _count: Vec<_> = providers.iter().cloned().map(CountFetched).collect();
    let mut fec = options.fec.is_some();
    // Rounds: fetch every missing group; groups that failed verification stay missing and
    // are asked for again in the next round, until `max_failures` for their provider.
    loop {
        let missing = download.state.missing_ranges();
        if missing.is_empty() {
            break;
        }
        for p in &providers {
            if p.gave_up() && !p.is_dropped() {
                p.drop_with(p.integrity_error());
            }
        }
        let live: Vec<Arc<Shared>> = providers
            .iter()
            .filter(|p| !p.is_dropped())
            .cloned()
            .collect();
        if live.is_empty() {
            return Err(last_error(&providers));
        }
        let before = download.state.done_groups();
        let failures: u32 = live
            .iter()
            .map(|p| p.failures.load(Ordering::Relaxed))
            .sum::<u32>()
            + mixed_failures.load(Ordering::Relaxed);
        let (returned, result) = round(&live, &providers, download, missing, fec).await?;
        download = returned;
        result?;
        let dropped = live.iter().any(|p| p.is_dropped());
        let failed: u32 = live
            .iter()
            .map(|p| p.failures.load(Ordering::Relaxed))
            .sum::<u32>()
            + mixed_failures.load(Ordering::Relaxed);
        let stuck = download.state.done_groups() == before && failed == failures && !dropped;
        if stuck && fec {
            // Nothing came through FEC: the rest goes over plain streams.
            fec = false;
        } else if stuck {
            return Err(NetError::Io("fetch ended with groups missing".into()));
        }
    }
    let overwrite = options.overwrite;
    let path = blocking(move || download.finish(overwrite))
        .await?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => NetError::DestinationExists(e.to_string()),
            std::io::ErrorKind::InvalidData => NetError::Integrity {
                provider,
                failures: 0,
                detail: e.to_string(),
            },
            _ => io_error(e, "cannot finish the download"),
        })?;
    Ok(FetchOutcome {
        size,
        bytes_fetched: providers
            .iter()
            .map(|p| p.fetched.load(Ordering::Relaxed))
            .sum(),
        bytes_reused: reused,
        failed_groups: providers
            .iter()
            .map(|p| p.failures.load(Ordering::Relaxed))
            .sum::<u32>()
            + mixed_failures.load(Ordering::Relaxed),
        duration: start.elapsed(),
        path,
        providers: providers
            .iter()
            .map(|p| ProviderOutcome {
                peer: p.session.remote_peer_id(),
                bytes: p.fetched.load(Ordering::Relaxed),
                error: p.dropped.lock().ok().and_then(|d| d.clone()),
            })
            .collect(),
        fec: options.fec.map(|_| FecStats {
            shards_received: fec_counts[0].load(Ordering::Relaxed),
            shards_lost: fec_counts[1].load(Ordering::Relaxed),
            stripes_repaired: fec_counts[2].load(Ordering::Relaxed),
            stripes_combined: fec_counts[3].load(Ordering::Relaxed),
            loss: fec_loss.lock().map(|l| l.loss()).unwrap_or(0.0),
        }),
    })
}

/// The error to report when every provider has been dropped: an integrity failure if any
/// provider served corrupt data, else the last provider's error.
fn last_error(providers: &[Arc<Shared>]) -> NetError {
    let errors: Vec<NetError> = providers
        .iter()
        .filter_map(|p| p.dropped.lock().ok().and_then(|d| d.clone()))
        .collect();
    errors
        .iter()
        .find(|e| matches!(e, NetError::Integrity { .. }))
        .or(errors.last())
        .cloned()
        .unwrap_or_else(|| NetError::Io("no provider to fetch from".into()))
}

/// One pass over `missing`: every live provider's workers feed the disk stage until the
/// queue is empty. A provider whose worker fails is dropped (its other workers stop; what it
/// did not deliver stays missing for the next round). Returns the download (with what was
/// verified and saved) and the error that ends the fetch: a disk failure, or with a single
/// provider its failure (so that [`fetch_ticket`] can reconnect).
async fn round(
    live: &[Arc<Shared>],
    all: &[Arc<Shared>],
    download: PartialDownload,
    missing: Vec<(u64, u64)>,
    fec: bool,
) -> Result<(PartialDownload, Result<()>)> {
    let Some(first) = live.first() else {
        return Ok((download, Err(NetError::Io("no provider left".into()))));
    };
    // FEC mode with several providers: each batch goes to all of them, every one sending a
    // share of each stripe (they must all carry datagrams, and each needs a data shard).
    let combine =
        fec && first.combining()
            && live.len() > 1
            && first.options.fec.is_some_and(|f| {
                f.combine && live.len() <= f.data.min(crate::fec_fetch::MAX_MEMBERS)
            })
            && live
                .iter()
                .all(|p| p.session.inner_conn().max_datagram_size().is_some());
    // Requests of `request_bytes`, but small enough that every stream gets one: a blob (or
    // what is left of it) is striped over all `streams` (FEC mode: over its requests).
    let per_provider = if fec {
        FEC_REQUESTS
    } else {
        first.options.streams.max(1)
    };
    let streams = if combine {
        FEC_REQUESTS
    } else {
        per_provider * live.len()
    };
    let missing_groups: u64 = missing.iter().map(|&(_, count)| count).sum();
    let per_stream = missing_groups.div_ceil(streams as u64);
    let batch = (first.options.request_bytes >> first.group_log)
        .min(per_stream)
        .max(1);
    if let Ok(mut queue) = first.queue.lock() {
        queue.clear();
        queue.extend(missing.into_iter().flat_map(|(first, count)| {
            (0..count.div_ceil(batch))
                .map(move |k| (first + k * batch, (count - k * batch).min(batch)))
        }));
    }
    let depth = (DISK_QUEUE_BYTES >> first.group_log).clamp(2, 64);
    let (tx, rx) = tokio::sync::mpsc::channel(depth);
    // If this future is dropped (the fetch cancelled), the disk stage stops at its next group
    // rather than writing what is queued after the caller has moved on.
    let cancelled = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let disk = {
        let (all, cancelled) = (all.to_vec(), cancelled.0.clone());
        tokio::task::spawn_blocking(move || disk_stage(download, rx, &all, &cancelled))
    };
    // A JoinSet aborts its tasks when dropped: cancelling the fetch stops every worker, and
    // the disk stage ends as soon as their senders are gone.
    let mut workers = tokio::task::JoinSet::new();
    let mut handles: Vec<(usize, tokio::task::AbortHandle)> = Vec::new();
    for _ in 0..if combine { FEC_REQUESTS } else { 0 } {
        let (providers, tx) = (live.to_vec(), tx.clone());
        // A joint worker's batches notice a provider dropped meanwhile and carry on without
        // it; it is not aborted with the provider.
        let handle = workers
            .spawn(async move { (MIXED, crate::fec_fetch::joint_worker(providers, tx).await) });
        for p in live {
            handles.push((p.provider, handle.clone()));
        }
    }
    for shared in live.iter().filter(|_| !combine) {
        for _ in 0..per_provider {
            let (shared, tx) = (shared.clone(), tx.clone());
            let index = shared.provider;
            let handle = workers.spawn(async move {
                let result = if fec {
                    crate::fec_fetch::worker(shared, tx).await
                } else {
                    worker(shared, tx).await
                };
                (index, result)
            });
            handles.push((index, handle));
        }
    }
    drop(tx);
    let mut first_error = None;
    // With several providers, one that stops sending while the others deliver is dropped
    // after `PROVIDER_STALL` rather than the full stall timeout: the others take its share.
    let mut watch = tokio::time::interval(PROVIDER_STALL / 4);
    let mut last_moved: Vec<(u64, Instant)> = all
        .iter()
        .map(|p| (p.fetched.load(Ordering::Relaxed), Instant::now()))
        .collect();
    loop {
        let joined = tokio::select! {
            joined = workers.join_next() => joined,
            _ = watch.tick(), if live.len() > 1 => {
                let now = Instant::now();
                for p in live {
                    let fetched = p.fetched.load(Ordering::Relaxed);
                    if let Some(last) = last_moved.get_mut(p.provider) {
                        if fetched != last.0 {
                            *last = (fetched, now);
                        }
                    }
                }
                let idle = |q: &Shared| !handles.iter().any(|(i, h)| *i == q.provider && !h.is_finished());
                let moved_recently = |q: &Shared| last_moved
                    .get(q.provider)
                    .is_some_and(|l| now.duration_since(l.1) < PROVIDER_STALL);
                for p in live {
                    let Some(&(_, moved)) = last_moved.get(p.provider) else { continue };
                    // Others that could take over: delivering, or out of work.
                    let others = live.iter().any(|q| {
                        q.provider != p.provider && !q.is_dropped() && (moved_recently(q) || idle(q))
                    });
                    if !idle(p) && !p.is_dropped() && others
                        && now.duration_since(moved) > PROVIDER_STALL
                    {
                        p.drop_with(NetError::Stream(format!(
                            "sent nothing for {PROVIDER_STALL:?} while other providers could"
                        )));
                        for (_, handle) in handles.iter().filter(|(i, _)| *i == p.provider && !combine) {
                            handle.abort();
                        }
                    }
                }
                continue;
            }
        };
        let Some(joined) = joined else {
            break;
        };
        let (index, result) = match joined {
            Ok(done) => done,
            Err(e) if e.is_cancelled() => continue,
            Err(e) => return Err(NetError::Io(format!("fetch worker failed: {e}"))),
        };
        if let Err(e) = result {
            let Some(provider) = all.get(index) else {
                continue;
            };
            if !provider.is_dropped() {
                tracing::debug!(provider = %provider.session.remote_peer_id().short(), error = %e,
                    "provider dropped from the fetch");
                provider.drop_with(e.clone());
            }
            // Stop its other workers at once: nothing more is asked of it.
            for (_, handle) in handles.iter().filter(|(i, _)| *i == index) {
                handle.abort();
            }
            if live.len() == 1 && first_error.is_none() {
                first_error = Some(e);
            }
        }
    }
    let (download, disk_result) = disk
        .await
        .map_err(|e| NetError::Io(format!("disk stage failed: {e}")))?;
    drop(cancelled);
    // A disk failure stops the workers (their queue closes): it is the error to report.
    let result = match (disk_result, first_error) {
        (Err(e), _) | (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => Ok(()),
    };
    Ok((download, result))
}

/// Adds what an attempt fetched to its progress when the attempt ends, however it ends.
struct CountFetched(Arc<Shared>);

impl Drop for CountFetched {
    fn drop(&mut self) {
        let n = self.0.fetched.load(Ordering::Relaxed);
        self.0.progress.fetched.fetch_add(n, Ordering::Relaxed);
    }
}

/// Fetches a ticket's blob into `dest` from its provider, reconnecting after a dropped
/// connection as `options.reconnect` says (a reconnect to a peer met before goes in 0-RTT).
/// Figures in the outcome cover every attempt.
pub async fn fetch_ticket(
    node: &crate::Node,
    ticket: &i6p_core::ticket::Ticket,
    dest: PathBuf,
    options: FetchOptions,
    progress: Arc<Progress>,
) -> Result<FetchOutcome> {
    let start = Instant::now();
    let policy = options.reconnect;
    let (mut left, mut delay) = (policy.attempts, policy.backoff);
    // A provider that never answered is reported at once; only a dropped one is retried.
    let mut connected = false;
    loop {
        let before = progress.done.load(Ordering::Relaxed);
        let attempt = async {
            let session = node.connect_any(ticket.peer_id, &ticket.addrs).await;
            let session = match session {
                Ok(s) => s,
                Err(e) if !connected => return Err((e, false)),
                Err(e) => return Err((e, true)),
            };
            connected = true;
            let outcome = fetch_to_file(
                &session,
                ticket.hash,
                ticket.size,
                dest.clone(),
                options.clone(),
                progress.clone(),
            )
            .await
            .map_err(|e| session.explain(e));
            session.close(0, "fetch done").await;
            outcome.map_err(|e| (e, true))
        };
        match attempt.await {
            Ok(mut outcome) => {
                outcome.bytes_fetched = progress.fetched.load(Ordering::Relaxed);
                outcome.bytes_reused = progress.reused.get().copied().unwrap_or(0);
                outcome.duration = start.elapsed();
                return Ok(outcome);
            }
            Err((e, true)) if link_dropped(&e) && left > 0 => {
                if progress.done.load(Ordering::Relaxed) > before {
                    (left, delay) = (policy.attempts, policy.backoff);
                }
                left -= 1;
                tracing::debug!(error = %e, ?delay, left, "fetch lost its provider; reconnecting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(policy.max_backoff);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Fetches a blob from several providers at once (tickets naming the same blob). Providers
/// are dialed together; those that cannot be reached are reported in the outcome and the
/// others share the work (see [`fetch_from`]). One ticket: [`fetch_ticket`], with its
/// reconnection policy.
pub async fn fetch_tickets(
    node: &crate::Node,
    tickets: &[i6p_core::ticket::Ticket],
    dest: PathBuf,
    options: FetchOptions,
    progress: Arc<Progress>,
) -> Result<FetchOutcome> {
    let Some(first) = tickets.first() else {
        return Err(NetError::Config("a fetch needs at least one ticket".into()));
    };
    if tickets.len() == 1 {
        return fetch_ticket(node, first, dest, options, progress).await;
    }
    if let Some(other) = tickets
        .iter()
        .find(|t| t.hash != first.hash || t.size != first.size)
    {
        return Err(NetError::Config(format!(
            "tickets name different blobs ({} bytes and {} bytes, or different hashes)",
            first.size, other.size
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let tickets: Vec<_> = tickets.iter().filter(|t| seen.insert(t.peer_id)).collect();
    let mut dials = tokio::task::JoinSet::new();
    // The fetch's dialing work is bounded too: the addresses are shared out among providers.
    let per_provider = (MAX_DIAL_ADDRS_PER_FETCH / tickets.len()).max(1);
    for (i, ticket) in tickets.iter().enumerate() {
        let addrs = ticket
            .addrs
            .iter()
            .take(per_provider)
            .copied()
            .collect::<Vec<_>>();
        let (node, peer) = (node.clone(), ticket.peer_id);
        dials.spawn(async move { (i, node.connect_any(peer, &addrs).await) });
    }
    // Once one provider has answered, the others get a little longer (a provider that is
    // down would otherwise hold the fetch for a whole handshake timeout); later ones are
    // reported as unreachable.
    let started = tokio::time::Instant::now();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut dialed: Vec<Option<Result<Session>>> = (0..tickets.len()).map(|_| None).collect();
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, dials.join_next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => dials.join_next().await,
        };
        let Some(joined) = next else {
            break;
        };
        let (i, result) = joined.map_err(|e| NetError::Io(format!("dial task failed: {e}")))?;
        if result.is_ok() && deadline.is_none() {
            let waited = started.elapsed();
            deadline = Some(tokio::time::Instant::now() + (waited * 2).max(DIAL_GRACE));
        }
        dialed[i] = Some(result);
    }
    dials.abort_all();
    let mut sessions = Vec::new();
    let mut unreachable = Vec::new();
    for (ticket, result) in tickets.iter().zip(dialed) {
        match result {
            Some(Ok(session)) => sessions.push(session),
            Some(Err(e)) => unreachable.push(ProviderOutcome {
                peer: ticket.peer_id,
                bytes: 0,
                error: Some(e),
            }),
            None => unreachable.push(ProviderOutcome {
                peer: ticket.peer_id,
                bytes: 0,
                error: Some(NetError::Handshake(format!(
                    "no answer within {:?} of the first provider's",
                    DIAL_GRACE
                ))),
            }),
        }
    }
    if sessions.is_empty() {
        let error = unreachable.into_iter().find_map(|p| p.error);
        return Err(error.unwrap_or_else(|| NetError::Io("no provider reachable".into())));
    }
    let outcome = fetch_from(&sessions, first.hash, first.size, dest, options, progress).await;
    for session in &sessions {
        session.close(0, "fetch done").await;
    }
    let mut outcome = outcome?;
    outcome.providers.extend(unreachable);
    Ok(outcome)
}

/// How much longer than the first provider the others have to answer, at least.
const DIAL_GRACE: Duration = Duration::from_secs(1);

/// Addresses a fetch from several providers dials in all, at most (8 providers get 4 each,
/// of their ticket's up to 16; each provider's are dialed as [`crate::dial`] says).
pub const MAX_DIAL_ADDRS_PER_FETCH: usize = 32;

/// Errors after which a new connection may succeed where the old one failed (a provider
/// that is unavailable or busy may serve a later request).
fn link_dropped(e: &NetError) -> bool {
    matches!(
        e,
        NetError::ConnectionLost { .. }
            | NetError::Handshake(_)
            | NetError::Busy(_)
            | NetError::Stream(_)
    ) || matches!(e, NetError::Refused { code: 3 | 5, .. })
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The disk stage, on a blocking thread: verify each group against the root, write it, mark
/// it, and save the state every `save_interval` (fsync first, so progress is durable).
fn disk_stage(
    mut download: PartialDownload,
    mut rx: tokio::sync::mpsc::Receiver<Slot>,
    providers: &[Arc<Shared>],
    cancelled: &AtomicBool,
) -> (PartialDownload, Result<()>) {
    let Some(shared) = providers.first() else {
        return (download, Ok(()));
    };
    let mut last_save = Instant::now();
    let mut run = || -> Result<()> {
        while let Some(slot) = rx.blocking_recv() {
            if cancelled.load(Ordering::Relaxed) {
                break;
            }
            let (hash, size, log) = (&shared.hash, shared.size, shared.group_log);
            match verify_group(hash, size, log, slot.index, &slot.data, &slot.proof) {
                Ok(()) => download
                    .write_group(slot.index, &slot.data)
                    .map_err(|e| io_error(e, "cannot write to the partial file"))?,
                Err(e) => {
                    let detail = format!("group {}: {e}", slot.index);
                    match providers.get(slot.provider) {
                        Some(provider) => provider.fail(slot.index, detail),
                        None => shared.mixed_failure(slot.index, detail),
                    }
                }
            }
            shared.pool.give(slot);
            if last_save.elapsed() >= shared.options.save_interval {
                save(&mut download, &shared.progress)?;
                last_save = Instant::now();
            }
        }
        Ok(())
    };
    let result = run();
    // Record what is durable even after a failure; the first error is the one to report.
    let saved = save(&mut download, &shared.progress);
    (download, result.and(saved))
}

/// Saves the state and publishes durable progress.
fn save(download: &mut PartialDownload, progress: &Progress) -> Result<()> {
    download
        .save()
        .map_err(|e| io_error(e, "cannot save the download state"))?;
    progress
        .done
        .store(download.state.done_bytes(), Ordering::Relaxed);
    Ok(())
}

/// A stream worker: one request at a time on a stream of its own, its groups read into pooled
/// buffers for the disk stage. Workers run concurrently, so `streams` requests are always in
/// flight. A worker reads its stream to the end before asking again: a request sent ahead
/// on another stream whose data nobody reads yet could fill the connection's flow-control
/// window and starve the stream being read.
pub(crate) async fn worker(shared: Arc<Shared>, tx: tokio::sync::mpsc::Sender<Slot>) -> Result<()> {
    loop {
        if shared.gave_up() {
            return Err(shared.integrity_error());
        }
        let Some(claim) = shared.claim(true)? else {
            return Ok(());
        };
        if !plain_request(&shared, &tx, &claim).await? {
            // The disk stage stopped; its own result says why.
            return Ok(());
        }
    }
}

/// One GET for the groups of `claim`, read into the disk stage. False if the disk stage has
/// stopped.
pub(crate) async fn plain_request(
    shared: &Arc<Shared>,
    tx: &tokio::sync::mpsc::Sender<Slot>,
    claim: &Claim,
) -> Result<bool> {
    let (first, count) = (claim.first, claim.count);
    let get = send_get(&shared.session, shared.hash, shared.group_log, first, count);
    let recv = no_stall(shared.options.stall_timeout, get).await?;
    read_request(shared, tx, recv, claim).await
}

fn poisoned() -> NetError {
    NetError::Io("fetch queue lock poisoned".into())
}

/// Reads the answer to one GET and hands its groups to the disk stage. A provider that sends
/// something other than what was asked is recorded as a verification failure, and the rest
/// of the request is left for the next round. False if the disk stage has stopped.
async fn read_request(
    shared: &Arc<Shared>,
    tx: &tokio::sync::mpsc::Sender<Slot>,
    mut recv: quinn::RecvStream,
    claim: &Claim,
) -> Result<bool> {
    let (first, count) = (claim.first, claim.count);
    let session = &shared.session;
    let stall = shared.options.stall_timeout;
    if let Some(detail) = no_stall(stall, read_answer_raw(session, &mut recv, shared.size)).await? {
        shared.fail(first, detail);
        let _ = recv.stop(VarInt::from_u32(0));
        return Ok(true);
    }
    for index in first..first + count {
        if index >= claim.progress.end() {
            // Another provider took over the rest of this batch.
            let _ = recv.stop(VarInt::from_u32(0));
            return Ok(true);
        }
        let mut slot = shared.pool.take();
        slot.provider = shared.provider;
        let claimed = no_stall(stall, read_group_into(shared, &mut recv, index, &mut slot)).await?;
        if claimed != index {
            shared.fail(
                index,
                format!("expected group {index}, provider sent {claimed}"),
            );
            shared.pool.give(slot);
            let _ = recv.stop(VarInt::from_u32(0));
            return Ok(true);
        }
        shared
            .fetched
            .fetch_add(slot.data.len() as u64, Ordering::Relaxed);
        if tx.send(slot).await.is_err() {
            return Ok(false);
        }
        claim.progress.delivered_to(index + 1);
    }
    // Read the end of the stream too: a provider counts the request as served only once it
    // sees it acknowledged to the end, and anything after the last group is a protocol error.
    match no_stall(stall, async {
        recv.read_chunk(1, true)
            .await
            .map_err(|e| read_error(session, e))
    })
    .await?
    {
        None => Ok(true),
        Some(_) => Err(NetError::Protocol(
            "provider sent data after the last group".into(),
        )),
    }
}

/// A provider that sends nothing for this long is given up on (the default of
/// [`FetchOptions::stall_timeout`]).
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn no_stall<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| NetError::Stream(format!("provider sent nothing for {limit:?}")))?
}

async fn read_exact_raw(
    session: &Session,
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
) -> Result<()> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(n) => NetError::Stream(format!(
            "provider ended the stream {n} bytes into a {}-byte read",
            buf.len()
        )),
        quinn::ReadExactError::ReadError(e) => read_error(session, e),
    })
}

/// Reads one group record into `slot`, sized for group `index` whatever index the provider
/// claims (which is returned). Nothing here is verified yet.
async fn read_group_into(
    shared: &Shared,
    recv: &mut quinn::RecvStream,
    index: u64,
    slot: &mut Slot,
) -> Result<u64> {
    let session = &shared.session;
    let mut header = [0u8; GROUP_HEADER_LEN];
    read_exact_raw(session, recv, &mut header).await?;
    let (claimed, proof_len) =
        decode_group_header(header).map_err(|e| NetError::Protocol(e.to_string()))?;
    // proof_len is bounded by MAX_PROOF_LEN in decode_group_header.
    let mut proof = [0u8; MAX_PROOF_LEN * 32];
    let proof = &mut proof[..proof_len * 32];
    read_exact_raw(session, recv, proof).await?;
    slot.proof.clear();
    slot.proof.extend(proof.chunks_exact(32).map(|c| {
        let mut cv = [0u8; 32];
        cv.copy_from_slice(c);
        cv
    }));
    let (_, len) = group_range(shared.size, shared.group_log, index);
    // len <= the group size, the buffer's capacity: no reallocation.
    slot.data.resize(len as usize, 0);
    read_exact_raw(session, recv, &mut slot.data).await?;
    slot.index = index;
    Ok(claimed)
}

/// Reads the provider's answer to a GET from a bare stream (see [`read_answer`]).
pub(crate) async fn read_answer_raw(
    session: &Session,
    recv: &mut quinn::RecvStream,
    size: u64,
) -> Result<Option<String>> {
    let mut header = [0u8; i6p_core::FRAME_HEADER_LEN];
    read_exact_raw(session, recv, &mut header).await?;
    let h = i6p_core::FrameHeader::decode(header).map_err(|e| NetError::Protocol(e.to_string()))?;
    // The frame header bounds the length (MAX_FRAME_PAYLOAD) before this allocation.
    let mut payload = vec![0u8; h.len as usize];
    read_exact_raw(session, recv, &mut payload).await?;
    answer(h.kind, &payload, size)
}

/// Opens a transfer stream and sends a GET for groups `first..first+count`.
async fn send_get(
    session: &Session,
    hash: [u8; 32],
    group_log: u8,
    first: u64,
    count: u64,
) -> Result<quinn::RecvStream> {
    let (mut send, recv) = session.open_kind(Some(STREAM_KIND_BLOBS)).await?;
    let get = GetRequest {
        hash,
        group_log,
        ranges: vec![(first, count)],
    };
    write_frame_raw(&mut send, i6p_core::transfer::FRAME_GET, &get.encode()).await?;
    let _ = send.finish();
    Ok(recv)
}

/// Reads the provider's answer to a GET. A refusal or a malformed answer is an error; a BLOB
/// with another size than expected is returned as the detail of a verification failure.
async fn read_answer(recv: &mut crate::stream::RecvStream, size: u64) -> Result<Option<String>> {
    let (kind, payload) = read_frame_from(recv).await?;
    answer(kind, &payload, size)
}

fn answer(kind: u8, payload: &[u8], size: u64) -> Result<Option<String>> {
    match kind {
        FRAME_BLOB => {
            let announced = decode_blob(payload).map_err(|e| NetError::Protocol(e.to_string()))?;
            Ok((announced != size).then(|| {
                format!("provider says the blob has {announced} bytes, the ticket {size}")
            }))
        }
        FRAME_ERROR => {
            let err =
                TransferError::decode(payload).map_err(|e| NetError::Protocol(e.to_string()))?;
            Err(NetError::Refused {
                code: err.code as u16,
                message: err.message,
            })
        }
        other => Err(NetError::Protocol(format!(
            "unexpected transfer frame {other:#04x}"
        ))),
    }
}

/// Reads one group record, sized for group `index` (whatever index the provider claims):
/// (claimed index, proof, data). Nothing here is verified yet.
async fn read_group(
    recv: &mut crate::stream::RecvStream,
    size: u64,
    group_log: u8,
    index: u64,
) -> Result<(u64, Vec<Cv>, Bytes)> {
    let header = recv.read_exact(GROUP_HEADER_LEN).await?;
    let mut raw = [0u8; GROUP_HEADER_LEN];
    raw.copy_from_slice(&header);
    let (claimed, proof_len) =
        decode_group_header(raw).map_err(|e| NetError::Protocol(e.to_string()))?;
    // proof_len is bounded by MAX_PROOF_LEN in decode_group_header.
    let proof = recv
        .read_exact(proof_len * 32)
        .await?
        .chunks_exact(32)
        .map(|c| {
            let mut cv = [0u8; 32];
            cv.copy_from_slice(c);
            cv
        })
        .collect();
    let (_, len) = group_range(size, group_log, index);
    let data = recv.read_exact(len as usize).await?;
    Ok((claimed, proof, data))
}

async fn read_frame_from(recv: &mut crate::stream::RecvStream) -> Result<(u8, Bytes)> {
    let header = recv.read_exact(i6p_core::FRAME_HEADER_LEN).await?;
    let mut raw = [0u8; i6p_core::FRAME_HEADER_LEN];
    raw.copy_from_slice(&header);
    let h = i6p_core::FrameHeader::decode(raw).map_err(|e| NetError::Protocol(e.to_string()))?;
    let payload = recv.read_exact(h.len as usize).await?;
    Ok((h.kind, payload))
}

/// Fetches `len` bytes at `offset` of a blob into memory, verifying every group touched.
pub async fn fetch_range(
    session: &Session,
    hash: [u8; 32],
    size: u64,
    offset: u64,
    len: u64,
    group_log: u8,
) -> Result<Bytes> {
    check_group_log(group_log)?;
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(NetError::Stream(format!(
            "range {offset}+{len} is outside the {size}-byte blob"
        )));
    }
    if len == 0 {
        return Ok(Bytes::new());
    }
    let first = offset >> group_log;
    let last = (offset + len - 1) >> group_log;
    let count = (last - first + 1).min(group_count(size, group_log) - first);
    let recv = send_get(session, hash, group_log, first, count).await?;
    let mut recv = crate::stream::RecvStream::new(recv, session.clone());
    if let Some(detail) = no_stall(STALL_TIMEOUT, read_answer(&mut recv, size)).await? {
        return Err(integrity(session, detail));
    }
    let mut out = BytesMut::with_capacity(len as usize);
    for index in first..first + count {
        let (got, proof, data) =
            no_stall(STALL_TIMEOUT, read_group(&mut recv, size, group_log, index)).await?;
        let (start, glen) = group_range(size, group_log, index);
        if got != index {
            return Err(integrity(
                session,
                format!("expected group {index}, got {got}"),
            ));
        }
        verify_group(&hash, size, group_log, index, &data, &proof)
            .map_err(|e| integrity(session, format!("group {index}: {e}")))?;
        let from = offset.max(start) - start;
        let to = (offset + len).min(start + glen) - start;
        out.extend_from_slice(&data[from as usize..to as usize]);
    }
    Ok(out.freeze())
}

fn integrity(session: &Session, detail: String) -> NetError {
    NetError::Integrity {
        provider: session.remote_peer_id(),
        failures: 1,
        detail,
    }
}
