//! What a fetch is asked to do ([`FetchOptions`], [`Reconnect`]), how far it has got
//! ([`Progress`]) and what it did ([`FetchOutcome`], [`ProviderOutcome`], [`FecStats`]).

use crate::error::NetError;
use i6p_core::tree::DEFAULT_GROUP_LOG;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// A provider that sends nothing for this long is given up on (the default of
/// [`FetchOptions::stall_timeout`]).
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// How [`super::fetch_ticket`] gets back to the provider when the connection drops.
    pub reconnect: Reconnect,
    /// FEC mode: groups come as erasure-coded shards in datagrams (see [`fec`]).
    pub fec: Option<crate::fetch::fec::FecOptions>,
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
    pub(super) fetched: AtomicU64,
    /// Bytes reused from an earlier run, as the first attempt found them.
    pub(super) reused: std::sync::OnceLock<u64>,
    /// When the fetch began (its first attempt, discovery and dialing included).
    pub(super) started: std::sync::OnceLock<Instant>,
    /// When the first group this run fetched was verified and written to the file.
    pub(super) first_byte: std::sync::OnceLock<Instant>,
}

impl Progress {
    /// From the fetch's start to its first verified byte on disk (None before it).
    pub fn first_byte(&self) -> Option<Duration> {
        let (start, first) = (self.started.get()?, self.first_byte.get()?);
        Some(first.saturating_duration_since(*start))
    }
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
    /// From the start of this run (discovery and dialing included) to the first byte it
    /// fetched, verified and written to the file; None when nothing needed fetching.
    pub first_byte: Option<Duration>,
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
