//! The round driver: opens the partial download, runs rounds until every group is verified
//! on disk, and turns the scheduler's figures into the outcome.
//!
//! A round queues what is missing (the scheduler splits it into batches), starts the
//! providers' workers and the disk stage, and watches for stalled providers; groups that
//! failed verification stay missing and are asked for again in the next round, until their
//! provider reaches `max_failures` and the scheduler drops it. A provider whose worker fails
//! is dropped (its other workers stop; what it did not deliver stays missing).

use super::disk::{blocking, disk_stage, io_error};
use super::options::{FetchOptions, FetchOutcome, Progress, ProviderOutcome};
use super::queue::{disk_queue, DiskSender};
use super::shared::{CountFetched, Fetch, Shared, WorkerGuard, MIXED, PROVIDER_STALL};
use crate::error::{NetError, Result};
use crate::session::Session;
use crate::storage::{check_destination, PartialDownload};
use i6p_core::tree::check_group_log;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// FEC requests in flight at once: three, so that the round trip of a new request and the
/// repairs at the end of one overlap the shards of the others.
const FEC_REQUESTS: usize = 3;

/// Received groups queued for the disk stage (to be verified and written), at most in bytes.
const DISK_QUEUE_BYTES: usize = 8 << 20;

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
    let download = blocking(move || {
        check_destination(&dest)
            .and_then(|()| PartialDownload::open(&dest, hash, size, group_log))
            .map_err(|e| io_error(e, "cannot open the partial download", &dest))
    })
    .await??;
    let reused = download.reused_bytes;
    let _ = progress.reused.set(reused);
    progress.started.get_or_init(Instant::now);
    progress.total.store(size, Ordering::Relaxed);
    progress.done.store(reused, Ordering::Relaxed);
    let peers = sessions.iter().map(|s| s.remote_peer_id()).collect();
    // An earlier run's state keeps its own group size.
    let group_log = download.state.group_log;
    let fetch = Fetch::new(hash, size, group_log, options, progress, peers);
    let fetch = Arc::new(fetch);
    let providers: Vec<Arc<Shared>> = sessions
        .iter()
        .enumerate()
        .map(|(p, session)| Arc::new(Shared::new(fetch.clone(), session.clone(), p)))
        .collect();
    let _count = CountFetched(fetch.clone());
    let (download, result) = rounds(&fetch, &providers, download).await?;
    if let Err(e) = result {
        // Dropped on a blocking thread, as it touches the disk: files that hold nothing
        // verified go, the rest stays for the next fetch to resume (see `storage`).
        let _ = blocking(move || drop(download)).await;
        return Err(e);
    }
    let overwrite = fetch.options.overwrite;
    let path = blocking(move || {
        let dest = download.dest.clone();
        download.finish(overwrite).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => NetError::DestinationExists(e.to_string()),
            std::io::ErrorKind::InvalidData => NetError::Integrity {
                provider,
                failures: 0,
                detail: e.to_string(),
            },
            _ => io_error(e, "cannot finish the download", &dest),
        })
    })
    .await??;
    Ok(outcome(&fetch, sessions, path, reused, start))
}

/// Rounds until every group is verified on disk: each fetches every missing group; groups
/// that failed verification stay missing and are asked for again in the next one, until
/// their provider reaches `max_failures`. Returns the download, complete unless the fetch
/// failed (then with the error).
async fn rounds(
    fetch: &Arc<Fetch>,
    providers: &[Arc<Shared>],
    mut download: PartialDownload,
) -> Result<(PartialDownload, Result<()>)> {
    let mut fec = fetch.options.fec.is_some();
    loop {
        let missing = download.state.missing_ranges();
        if missing.is_empty() {
            return Ok((download, Ok(())));
        }
        let verified = download.state.done_groups();
        let live: Vec<Arc<Shared>> = fetch
            .schedule()
            .begin_round(Instant::now(), verified)
            .into_iter()
            .filter_map(|p| providers.get(p).cloned())
            .collect();
        if live.is_empty() {
            return Ok((download, Err(last_error(fetch))));
        }
        let (returned, result) = round(fetch, &live, download, &missing, fec).await?;
        download = returned;
        if result.is_err() {
            return Ok((download, result));
        }
        let progressed = fetch.schedule().end_round(download.state.done_groups());
        if !progressed && fec {
            // Nothing came through FEC: the rest goes over plain streams.
            fec = false;
        } else if !progressed {
            let e = NetError::Incomplete("fetch ended with groups missing".into());
            return Ok((download, Err(e)));
        }
    }
}

/// What a finished fetch did, from the scheduler's figures.
fn outcome(
    fetch: &Fetch,
    sessions: &[Session],
    path: PathBuf,
    reused: u64,
    start: Instant,
) -> FetchOutcome {
    let (bytes_fetched, failed_groups, delivered) = {
        let schedule = fetch.schedule();
        let delivered: Vec<u64> = schedule.providers().iter().map(|p| p.delivered()).collect();
        (
            schedule.total_delivered(),
            schedule.failed_groups(),
            delivered,
        )
    };
    FetchOutcome {
        size: fetch.size,
        bytes_fetched,
        bytes_reused: reused,
        failed_groups,
        duration: start.elapsed(),
        first_byte: fetch.progress.first_byte(),
        path,
        providers: sessions
            .iter()
            .zip(delivered)
            .zip(fetch.dropped())
            .map(|((session, bytes), error)| ProviderOutcome {
                peer: session.remote_peer_id(),
                bytes,
                error,
            })
            .collect(),
        fec: fetch.options.fec.map(|_| fetch.fec_stats()),
    }
}

/// The error to report when every provider has been dropped: an integrity failure if any
/// provider served corrupt data, else the last provider's error.
fn last_error(fetch: &Fetch) -> NetError {
    let errors: Vec<NetError> = fetch.dropped().into_iter().flatten().collect();
    errors
        .iter()
        .find(|e| matches!(e, NetError::Integrity { .. }))
        .or(errors.last())
        .cloned()
        .unwrap_or_else(|| NetError::Io("no provider to fetch from".into()))
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One pass over `missing`: every live provider's workers feed the disk stage until the
/// queue is empty. Returns the download (with what was verified and saved) and the error
/// that ends the fetch: a disk failure, or with a single provider its failure (so that
/// [`super::fetch_ticket`] can reconnect).
async fn round(
    fetch: &Arc<Fetch>,
    live: &[Arc<Shared>],
    download: PartialDownload,
    missing: &[(u64, u64)],
    fec: bool,
) -> Result<(PartialDownload, Result<()>)> {
    let plan = Plan::new(fetch, live, fec);
    let request_groups = fetch.options.request_bytes >> fetch.group_log;
    fetch
        .schedule()
        .queue_missing(missing, plan.workers(live.len()), request_groups);
    let depth = (DISK_QUEUE_BYTES >> fetch.group_log).clamp(2, 64);
    let (tx, rx) = disk_queue(depth);
    // If this future is dropped (the fetch cancelled), the disk stage stops at its next group
    // rather than writing what is queued after the caller has moved on.
    let cancelled = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let disk = {
        let (fetch, cancelled) = (fetch.clone(), cancelled.0.clone());
        tokio::task::spawn_blocking(move || disk_stage(download, rx, &fetch, &cancelled))
    };
    // A JoinSet aborts its tasks when dropped: cancelling the fetch stops every worker, and
    // the disk stage ends as soon as their senders are gone.
    let mut workers = Workers {
        tasks: tokio::task::JoinSet::new(),
        handles: Vec::new(),
    };
    workers.spawn(fetch, live, &plan, tx);
    let first_error = workers.supervise(fetch, live).await?;
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

/// How a round fetches: over plain streams or FEC, per provider or combined.
struct Plan {
    fec: bool,
    /// FEC mode with several providers: each batch goes to all of them, every one sending a
    /// share of each stripe (they must all carry datagrams, and each needs a data shard).
    combine: bool,
    /// Workers per provider (FEC mode: requests).
    per_provider: usize,
}

impl Plan {
    fn new(fetch: &Fetch, live: &[Arc<Shared>], fec: bool) -> Self {
        let combine = fec
            && fetch.combining()
            && live.len() > 1
            && fetch.options.fec.is_some_and(|f| {
                f.combine && live.len() <= f.data.min(crate::fetch::fec::MAX_MEMBERS)
            })
            && live
                .iter()
                .all(|p| p.session().inner_conn().max_datagram_size().is_some());
        let per_provider = if fec {
            FEC_REQUESTS
        } else {
            fetch.options.streams.max(1)
        };
        Self {
            fec,
            combine,
            per_provider,
        }
    }

    /// Workers in all: requests are of `request_bytes`, but small enough that every worker
    /// gets one (a blob, or what is left of it, is striped over all of them).
    fn workers(&self, providers: usize) -> usize {
        if self.combine {
            FEC_REQUESTS
        } else {
            self.per_provider * providers
        }
    }
}

/// The worker tasks of a round, and which provider each works for.
struct Workers {
    tasks: tokio::task::JoinSet<(usize, Result<()>)>,
    /// A provider's own workers, to stop when it is dropped (not the joint ones).
    handles: Vec<(usize, tokio::task::AbortHandle)>,
}

impl Workers {
    fn spawn(&mut self, fetch: &Arc<Fetch>, live: &[Arc<Shared>], plan: &Plan, tx: DiskSender) {
        let everyone: Vec<usize> = live.iter().map(|p| p.provider).collect();
        for _ in 0..if plan.combine { FEC_REQUESTS } else { 0 } {
            let (providers, tx) = (live.to_vec(), tx.clone());
            // A joint worker works for every provider; its batches notice a provider dropped
            // meanwhile and carry on without it, so it is not aborted with the provider.
            let guard = WorkerGuard::new(fetch, everyone.clone());
            self.tasks.spawn(async move {
                let _guard = guard;
                (MIXED, crate::fetch::fec::joint_worker(providers, tx).await)
            });
        }
        for shared in live.iter().filter(|_| !plan.combine) {
            for _ in 0..plan.per_provider {
                let (shared, tx, fec) = (shared.clone(), tx.clone(), plan.fec);
                let index = shared.provider;
                let guard = WorkerGuard::new(fetch, vec![index]);
                let handle = self.tasks.spawn(async move {
                    let _guard = guard;
                    let result = if fec {
                        crate::fetch::fec::worker(shared, tx).await
                    } else {
                        super::worker::worker(shared, tx).await
                    };
                    (index, result)
                });
                self.handles.push((index, handle));
            }
        }
    }

    /// Waits for every worker, dropping providers whose worker failed and, with several
    /// providers, those the scheduler judges stalled: one that stops sending while the
    /// others deliver is dropped after `PROVIDER_STALL` rather than the full stall timeout,
    /// and the others take its share. A steady tick asks the scheduler often enough for the
    /// judgement to land within a quarter of that time. Returns the first failure of a
    /// single provider (which ends the fetch).
    async fn supervise(&mut self, fetch: &Fetch, live: &[Arc<Shared>]) -> Result<Option<NetError>> {
        let mut first_error = None;
        let mut watch = tokio::time::interval(PROVIDER_STALL / 4);
        loop {
            let joined = tokio::select! {
                joined = self.tasks.join_next() => joined,
                _ = watch.tick(), if live.len() > 1 => {
                    let stalled = fetch.schedule().handle_timeout(Instant::now());
                    for p in stalled {
                        if let Some(provider) = live.iter().find(|s| s.provider == p) {
                            tracing::info!(provider = %provider.session().remote_peer_id().short(),
                                "provider stalled; dropped from the fetch");
                        }
                        self.abort(p);
                    }
                    continue;
                }
            };
            let Some(joined) = joined else {
                return Ok(first_error);
            };
            let (index, result) = match joined {
                Ok(done) => done,
                Err(e) if e.is_cancelled() => continue,
                Err(e) => return Err(NetError::Io(format!("fetch worker failed: {e}"))),
            };
            let (Err(e), Some(provider)) = (result, live.iter().find(|p| p.provider == index))
            else {
                continue;
            };
            if !provider.is_dropped() {
                tracing::info!(provider = %provider.session().remote_peer_id().short(), error = %e,
                    "provider dropped from the fetch");
                provider.drop_with(e.clone());
            }
            // Stop its other workers at once: nothing more is asked of it.
            self.abort(index);
            if live.len() == 1 && first_error.is_none() {
                first_error = Some(e);
            }
        }
    }

    fn abort(&self, provider: usize) {
        for (_, handle) in self.handles.iter().filter(|(i, _)| *i == provider) {
            handle.abort();
        }
    }
}
