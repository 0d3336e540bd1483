//! The requester side of blob transfers: verified, resumable fetching into a file.
//!
//! Missing groups are split into batches; a few worker tasks each take a batch, send a GET on
//! a fresh stream, and verify every group against the blob's root before it is written. A
//! group that fails verification is counted, put back and fetched again; after
//! `max_failures` the fetch fails with an integrity error naming the provider. Verified groups
//! are written with positioned writes on the blocking pool, and recorded in the state file
//! (after an fsync) at most every `save_interval`, so progress reported is progress that
//! survives a crash.

use crate::control::write_frame_raw;
use crate::error::{NetError, Result};
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use i6p_core::partial::PartialDownload;
use i6p_core::transfer::{
    decode_blob, decode_group_header, GetRequest, TransferError, FRAME_BLOB, FRAME_ERROR,
    GROUP_HEADER_LEN, STREAM_KIND_BLOBS,
};
use i6p_core::tree::{
    check_group_log, group_count, group_range, verify_group, Cv, DEFAULT_GROUP_LOG,
};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a fetch runs.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// log2 of the chunk-group size (14..=22; default 18 = 256 KiB).
    pub group_log: u8,
    /// Requests in flight at once, each on its own stream.
    pub streams: usize,
    /// Groups per request.
    pub groups_per_request: u64,
    /// Failed verifications tolerated from one provider before giving up.
    pub max_failures: u32,
    /// Replace an existing destination file.
    pub overwrite: bool,
    /// Longest time between state saves.
    pub save_interval: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            group_log: DEFAULT_GROUP_LOG,
            streams: 4,
            groups_per_request: 64,
            max_failures: 3,
            overwrite: false,
            save_interval: Duration::from_millis(100),
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
}

struct Shared {
    session: Session,
    hash: [u8; 32],
    size: u64,
    group_log: u8,
    download: Mutex<PartialDownload>,
    queue: Mutex<VecDeque<(u64, u64)>>,
    fetched: AtomicU64,
    failures: AtomicU32,
    last_failure: Mutex<String>,
    last_save: Mutex<Instant>,
    options: FetchOptions,
    progress: Arc<Progress>,
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
    check_group_log(options.group_log)?;
    let start = Instant::now();
    if dest.exists() && !options.overwrite {
        return Err(NetError::DestinationExists(dest.display().to_string()));
    }
    let group_log = options.group_log;
    let path = dest.clone();
    let download = blocking(move || PartialDownload::open(&path, hash, size, group_log))
        .await?
        .map_err(|e| io_error(e, "cannot open the partial download"))?;
    let group_log = download.state.group_log;
    let reused = download.reused_bytes;
    progress.total.store(size, Ordering::Relaxed);
    progress.done.store(reused, Ordering::Relaxed);
    let batch = options.groups_per_request.max(1);
    let queue: VecDeque<(u64, u64)> = download
        .state
        .missing_ranges()
        .into_iter()
        .flat_map(|(first, count)| {
            (0..count.div_ceil(batch))
                .map(move |k| (first + k * batch, (count - k * batch).min(batch)))
        })
        .collect();
    let shared = Arc::new(Shared {
        session: session.clone(),
        hash,
        size,
        group_log,
        download: Mutex::new(download),
        queue: Mutex::new(queue),
        fetched: AtomicU64::new(0),
        failures: AtomicU32::new(0),
        last_failure: Mutex::new(String::new()),
        last_save: Mutex::new(Instant::now()),
        options: options.clone(),
        progress: progress.clone(),
    });
    // A JoinSet aborts its tasks when dropped: cancelling the fetch stops every worker.
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.streams.max(1) {
        workers.spawn(worker(shared.clone()));
    }
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        let result = joined
            .map_err(|e| NetError::Io(format!("fetch worker failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = result {
            if first_error.is_none() {
                // Stop the others at once: they must not keep writing after a failure.
                workers.abort_all();
                first_error = Some(e);
            }
        }
    }
    if let Some(e) = first_error {
        // Record what is durable (best effort); the first error is the one to report.
        let _ = save(&shared, true).await;
        return Err(e);
    }
    save(&shared, true).await?;
    let shared = Arc::try_unwrap(shared).map_err(|_| NetError::Io("fetch still shared".into()))?;
    let download = shared
        .download
        .into_inner()
        .map_err(|_| NetError::Io("download lock poisoned".into()))?;
    if !download.state.complete() {
        return Err(NetError::Io("fetch ended with groups missing".into()));
    }
    let overwrite = options.overwrite;
    let provider = session.remote_peer_id();
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
        bytes_fetched: shared.fetched.load(Ordering::Relaxed),
        bytes_reused: reused,
        failed_groups: shared.failures.load(Ordering::Relaxed),
        duration: start.elapsed(),
        path,
    })
}

/// Saves the state if it is due (or `force`), and publishes durable progress.
async fn save(shared: &Arc<Shared>, force: bool) -> Result<()> {
    {
        let mut last = shared.last_save.lock().map_err(|_| poisoned())?;
        if !force && last.elapsed() < shared.options.save_interval {
            return Ok(());
        }
        *last = Instant::now();
    }
    let s = shared.clone();
    blocking(move || {
        let mut d = s.download.lock().map_err(|_| poisoned())?;
        d.save()
            .map_err(|e| io_error(e, "cannot save the download state"))?;
        s.progress
            .done
            .store(d.state.done_bytes(), Ordering::Relaxed);
        Ok(())
    })
    .await?
}

fn poisoned() -> NetError {
    NetError::Io("download lock poisoned".into())
}

async fn worker(shared: Arc<Shared>) -> Result<()> {
    loop {
        let next = shared.queue.lock().map_err(|_| poisoned())?.pop_front();
        let Some((first, count)) = next else {
            return Ok(());
        };
        match request(&shared, first, count).await {
            Ok(()) => {}
            Err(Failed::Verification { index, detail }) => {
                let failures = shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
                *shared.last_failure.lock().map_err(|_| poisoned())? = detail.clone();
                tracing::debug!(index, %detail, "group failed verification");
                // Everything of this batch from `index` on goes back to the queue.
                let rest = (index, first + count - index);
                shared.queue.lock().map_err(|_| poisoned())?.push_back(rest);
                if failures >= shared.options.max_failures {
                    return Err(NetError::Integrity {
                        provider: shared.session.remote_peer_id(),
                        failures,
                        detail,
                    });
                }
            }
            Err(Failed::Other(e)) => return Err(e),
        }
    }
}

enum GroupOutcome {
    Written,
    Bad(String),
    Io(std::io::Error),
}

enum Failed {
    Verification { index: u64, detail: String },
    Other(NetError),
}

impl From<NetError> for Failed {
    fn from(e: NetError) -> Self {
        Self::Other(e)
    }
}

/// Fetches groups `first..first+count` on one stream.
async fn request(shared: &Arc<Shared>, first: u64, count: u64) -> Result<(), Failed> {
    let mut recv = send_get(&shared.session, shared.hash, shared.group_log, first, count).await?;
    if let Some(detail) = no_stall(read_answer(&mut recv, shared.size)).await? {
        return Err(Failed::Verification {
            index: first,
            detail,
        });
    }
    for index in first..first + count {
        let (got_index, proof, data) =
            no_stall(read_group(&mut recv, shared.size, shared.group_log, index)).await?;
        if got_index != index {
            return Err(Failed::Verification {
                index,
                detail: format!("expected group {index}, provider sent {got_index}"),
            });
        }
        let len = data.len() as u64;
        shared.fetched.fetch_add(len, Ordering::Relaxed);
        // Verify, then write, in one trip to the blocking pool: nothing unverified is written.
        let s = shared.clone();
        let outcome = blocking(move || {
            if let Err(e) = verify_group(&s.hash, s.size, s.group_log, index, &data, &proof) {
                return GroupOutcome::Bad(format!("group {index}: {e}"));
            }
            let Ok(mut d) = s.download.lock() else {
                return GroupOutcome::Io(std::io::Error::other("download lock poisoned"));
            };
            match d.write_group(index, &data) {
                Ok(()) => GroupOutcome::Written,
                Err(e) => GroupOutcome::Io(e),
            }
        })
        .await?;
        match outcome {
            GroupOutcome::Written => {}
            GroupOutcome::Bad(detail) => return Err(Failed::Verification { index, detail }),
            GroupOutcome::Io(e) => {
                return Err(io_error(e, "cannot write to the partial file").into());
            }
        }
        save(shared, false).await?;
    }
    Ok(())
}

/// A provider that sends nothing for this long is given up on.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn no_stall<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(STALL_TIMEOUT, fut)
        .await
        .map_err(|_| NetError::Stream(format!("provider sent nothing for {STALL_TIMEOUT:?}")))?
}

/// Opens a transfer stream and sends a GET for groups `first..first+count`.
async fn send_get(
    session: &Session,
    hash: [u8; 32],
    group_log: u8,
    first: u64,
    count: u64,
) -> Result<crate::stream::RecvStream> {
    let (mut send, recv) = session.open_kind(Some(STREAM_KIND_BLOBS)).await?;
    let get = GetRequest {
        hash,
        group_log,
        ranges: vec![(first, count)],
    };
    write_frame_raw(&mut send, i6p_core::transfer::FRAME_GET, &get.encode()).await?;
    let _ = send.finish();
    Ok(crate::stream::RecvStream::new(recv, session.clone()))
}

/// Reads the provider's answer to a GET. A refusal or a malformed answer is an error; a BLOB
/// with another size than expected is returned as the detail of a verification failure.
async fn read_answer(recv: &mut crate::stream::RecvStream, size: u64) -> Result<Option<String>> {
    let (kind, payload) = read_frame_from(recv).await?;
    match kind {
        FRAME_BLOB => {
            let announced = decode_blob(&payload).map_err(|e| NetError::Protocol(e.to_string()))?;
            Ok((announced != size).then(|| {
                format!("provider says the blob has {announced} bytes, the ticket {size}")
            }))
        }
        FRAME_ERROR => {
            let err =
                TransferError::decode(&payload).map_err(|e| NetError::Protocol(e.to_string()))?;
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
    let mut recv = send_get(session, hash, group_log, first, count).await?;
    if let Some(detail) = no_stall(read_answer(&mut recv, size)).await? {
        return Err(integrity(session, detail));
    }
    let mut out = BytesMut::with_capacity(len as usize);
    for index in first..first + count {
        let (got, proof, data) = no_stall(read_group(&mut recv, size, group_log, index)).await?;
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
