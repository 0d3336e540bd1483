//! The disk stage, on a blocking thread: verify each group against the blob's root, write it
//! with a positioned write, mark it, and save the state (after an fsync) every
//! `save_interval`, so progress reported is progress that survives a crash. A group that
//! fails verification is reported to the scheduler, blamed on the provider that sent it, and
//! never reaches the file. Groups come in batches ([`super::queue`]): one wake-up for several.

use super::options::Progress;
use super::queue::DiskReceiver;
use super::shared::{Fetch, Slot};
use crate::error::{NetError, Result};
use crate::storage::PartialDownload;
use i6p_core::tree::verify_group_cv;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Runs the disk stage until every sender is gone, the fetch is cancelled, or a write fails.
/// Returns the download (with what was verified and saved) and the first error.
pub(super) fn disk_stage(
    mut download: PartialDownload,
    rx: DiskReceiver,
    fetch: &Fetch,
    cancelled: &AtomicBool,
) -> (PartialDownload, Result<()>) {
    let mut last_save = Instant::now();
    let mut run = || -> Result<()> {
        let mut batch = Vec::new();
        while rx.recv_batch(&mut batch) {
            for slot in batch.drain(..) {
                if cancelled.load(Ordering::Relaxed) {
                    return Ok(());
                }
                take(&mut download, fetch, slot)?;
                rx.done(1);
                if last_save.elapsed() >= fetch.options.save_interval {
                    save(&mut download, &fetch.progress)?;
                    last_save = Instant::now();
                }
            }
        }
        Ok(())
    };
    let result = run();
    // Record what is durable even after a failure; the first error is the one to report.
    let saved = save(&mut download, &fetch.progress);
    (download, result.and(saved))
}

/// Verifies one group and writes it, or reports it failed; its buffer goes back to the pool.
fn take(download: &mut PartialDownload, fetch: &Fetch, slot: Slot) -> Result<()> {
    let (hash, size, log) = (&fetch.hash, fetch.size, fetch.group_log);
    match verify_group_cv(hash, size, log, slot.index, &slot.data, &slot.proof) {
        Ok(cv) => {
            download
                .write_group(slot.index, &slot.data, cv)
                .map_err(|e| io_error(e, "cannot write to the partial file", &download.dest))?;
            fetch.progress.first_byte.get_or_init(Instant::now);
        }
        Err(e) => fetch.fail(
            slot.provider,
            slot.index,
            format!("group {}: {e}", slot.index),
        ),
    }
    fetch.pool.give(slot);
    Ok(())
}

/// Saves the state and publishes durable progress.
fn save(download: &mut PartialDownload, progress: &Progress) -> Result<()> {
    download
        .save()
        .map_err(|e| io_error(e, "cannot save the download state", &download.dest))?;
    progress
        .done
        .store(download.state.done_bytes(), Ordering::Relaxed);
    Ok(())
}

/// The error for a failed file operation on `path` (or on the path the error names): a full
/// disk says so first (the partial state stays consistent, so the fetch can resume once
/// there is room).
pub(super) fn io_error(e: std::io::Error, what: &str, path: &std::path::Path) -> NetError {
    let error = NetError::file(what, path, e);
    let full = error.is_disk_full();
    match error {
        NetError::File { what, path, source } if full => NetError::File {
            what: format!("disk full: {what}"),
            path,
            source,
        },
        other => other,
    }
}

/// Runs `f` on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetError::Io(format!("blocking task failed: {e}")))
}
