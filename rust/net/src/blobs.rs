//! The provider side of blob transfers: the blobs a node serves, and the handler for GET
//! streams.
//!
//! A blob is a file plus its [`Outboard`] (chaining values from which proofs are read off).
//! Group data is read ahead with positioned reads on a blocking thread, so disk I/O never
//! stalls the network tasks; record buffers are reused once the peer acknowledged them.
//! Serving never trusts the request: ranges are checked against the blob before anything is
//! read. A request takes one of the node's request slots (per node and per peer, see
//! [`Limits`]) only once it has been read and authorized, and gives it back when the
//! requester stops taking data for the send timeout: a peer that stops reading cannot keep
//! the provider from serving others.
//!
//! A blob holds no open file: each accepted request opens its [`Source`] (checking that the
//! file is still the one added) and keeps it open while it is served. A blob whose source
//! changed is marked stale: it stays listed, but every request for it is refused with
//! [`ErrorCode::SourceChanged`] until the file is added again.

mod dir;
mod source;

pub use dir::Collection;

use crate::control::{codes, read_frame, write_frame_raw};
use crate::limits::{Limits, RequestSlot, Requests, SLOT_WAIT};
use crate::session::Session;
use crate::storage::hash_file;
use bytes::{Bytes, BytesMut};
use i6p_core::codes::ErrorCode;
use i6p_core::fec::FecRequest;
use i6p_core::kinds::{FRAME_BLOB, FRAME_ERROR, FRAME_FEC_GET, FRAME_GET};
use i6p_core::transfer::{encode_blob, encode_group_header, GetRequest, TransferError};
use i6p_core::tree::{group_range, Outboard, LEAF_LOG};
use i6p_core::PeerId;
use source::{OpenError, Opened, Source, Stamp};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A blob this node serves.
pub struct Blob {
    /// Where its bytes are (empty for a blob held in memory).
    pub path: PathBuf,
    /// Its hash tree.
    pub outboard: Outboard,
    source: Source,
    /// Set once its source was found changed: it is no longer served.
    stale: AtomicBool,
}

impl Blob {
    /// The BLAKE3 hash.
    pub fn hash(&self) -> [u8; 32] {
        self.outboard.root()
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.outboard.size()
    }

    /// Whether its source was found changed since it was added (it is no longer served).
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Opens its bytes for one request. A changed source marks the blob stale, with one
    /// warning naming the path (for the node's owner; the requester only hears that it
    /// changed). Blocking: run it off the async threads.
    fn open(&self) -> Result<Opened, TransferError> {
        if self.is_stale() {
            return Err(source_changed());
        }
        match self.source.open(&self.path) {
            Ok(opened) => Ok(opened),
            Err(OpenError::Changed(how)) => {
                if !self.stale.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %self.path.display(), how,
                        "a served file changed since it was added; no longer serving it \
                         (add it again to serve its new contents)");
                }
                Err(source_changed())
            }
            Err(OpenError::Io(e)) => {
                tracing::debug!(path = %self.path.display(), error = %e, "cannot open a blob");
                Err(TransferError {
                    code: ErrorCode::Unavailable,
                    message: "the provider cannot read that blob now".into(),
                })
            }
        }
    }
}

fn source_changed() -> TransferError {
    TransferError {
        code: ErrorCode::SourceChanged,
        message: "the provider's source changed since it was added".into(),
    }
}

/// A blob opened for one request: its tree, and its bytes for positioned reads (the file
/// stays open until the last reader of the request lets go).
pub(crate) struct Serving {
    blob: Arc<Blob>,
    opened: Opened,
}

impl Serving {
    /// Opens `blob` for a request, on a blocking thread.
    async fn open(blob: Arc<Blob>) -> Result<Arc<Self>, TransferError> {
        let opening = blob.clone();
        let opened = tokio::task::spawn_blocking(move || opening.open())
            .await
            .map_err(|e| TransferError {
                code: ErrorCode::Unavailable,
                message: e.to_string(),
            })??;
        Ok(Arc::new(Self { blob, opened }))
    }

    /// Fills `buf` with the blob's bytes from `offset`.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.opened.read_exact_at(buf, offset)
    }
}

impl Deref for Serving {
    type Target = Blob;
    fn deref(&self) -> &Blob {
        &self.blob
    }
}

/// A requester must send its GET within this time.
const GET_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of coverage bitmaps kept for `served` figures (one bit per 16 KiB of a blob per
/// peer); past it, the entries updated least recently are forgotten. New identities are
/// free, so this must not grow with the number of peers.
const MAX_COVERAGE_BYTES: usize = 16 << 20;

/// The blobs a node serves, and who may fetch them.
pub struct BlobStore {
    requests: Arc<Requests>,
    /// Send timeout, request idle timeout and read-ahead of every request.
    pub(crate) limits: Limits,
    blobs: RwLock<HashMap<[u8; 32], Arc<Blob>>>,
    /// Deliberate misbehaviour for conformance tests of requesters (see [`Faults`]).
    faults: std::sync::atomic::AtomicU8,
    allowed: RwLock<Option<HashSet<PeerId>>>,
    served: RwLock<Served>,
}

impl BlobStore {
    /// An empty store whose requests are bounded by `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            requests: Requests::new(limits),
            limits: limits.clone(),
            blobs: RwLock::default(),
            faults: Default::default(),
            allowed: RwLock::default(),
            served: RwLock::default(),
        }
    }

    /// Blob requests being served now.
    pub fn requests_in_flight(&self) -> usize {
        self.requests.in_use()
    }

    /// Takes a request slot for `peer` (after its request was read and authorized), waiting
    /// up to [`SLOT_WAIT`] for the node to have one.
    pub(crate) async fn take_slot(&self, peer: PeerId) -> Result<RequestSlot, &'static str> {
        self.requests.take(peer, SLOT_WAIT).await
    }

    /// Hashes the file at `path` and serves it (the file is closed again: each request
    /// opens it). Blocking: run it off the async threads.
    pub fn add_path(&self, path: &Path) -> io::Result<Arc<Blob>> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let outboard = hash_file(&file)?;
        // A file edited while it was hashed may not match its hash: refused, not served.
        let stamp = Stamp::of(&file.metadata()?);
        if stamp != Stamp::of(&meta) {
            return Err(io::Error::other(
                "the file changed while it was being hashed",
            ));
        }
        Ok(self.insert(path.to_path_buf(), outboard, Source::File { stamp }))
    }

    /// Serves `bytes`, held in memory (a collection's listing). Blocking for large ones.
    pub fn add_bytes(&self, bytes: Bytes) -> Arc<Blob> {
        let outboard = Outboard::from_bytes(&bytes);
        self.insert(PathBuf::new(), outboard, Source::Memory(bytes))
    }

    fn insert(&self, path: PathBuf, outboard: Outboard, source: Source) -> Arc<Blob> {
        let blob = Arc::new(Blob {
            path,
            outboard,
            source,
            stale: AtomicBool::new(false),
        });
        if let Ok(mut blobs) = self.blobs.write() {
            blobs.insert(blob.hash(), blob.clone());
        }
        blob
    }

    /// Stops serving a blob and forgets who fetched it; true if it was served.
    pub fn remove(&self, hash: &[u8; 32]) -> bool {
        if let Ok(mut s) = self.served.write() {
            s.forget_blob(hash);
        }
        self.blobs
            .write()
            .map(|mut b| b.remove(hash).is_some())
            .unwrap_or(false)
    }

    /// A served blob.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<Blob>> {
        self.blobs.read().ok().and_then(|b| b.get(hash).cloned())
    }

    /// Restricts fetching to these peers (`None`: anyone).
    pub fn set_allowed(&self, peers: Option<Vec<PeerId>>) {
        if let Ok(mut a) = self.allowed.write() {
            *a = peers.map(|p| p.into_iter().collect());
        }
    }

    fn allows(&self, peer: &PeerId) -> bool {
        self.allowed
            .read()
            .map(|a| a.as_ref().is_none_or(|set| set.contains(peer)))
            .unwrap_or(false)
    }

    /// Distinct bytes of blob `hash` that `peer` acknowledged receiving.
    pub fn served_bytes(&self, peer: &PeerId, hash: &[u8; 32]) -> u64 {
        self.served
            .read()
            .ok()
            .and_then(|s| s.entries.get(&(*peer, *hash)).map(|c| c.bytes))
            .unwrap_or(0)
    }

    /// The most distinct bytes of blob `hash` any one peer acknowledged receiving: equal to
    /// the size once some peer has the whole blob, however often groups were re-sent.
    pub fn max_served_bytes(&self, hash: &[u8; 32]) -> u64 {
        self.served
            .read()
            .map(|s| {
                s.entries
                    .iter()
                    .filter(|((_, h), _)| h == hash)
                    .map(|(_, c)| c.bytes)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Acknowledged bytes of blob `hash` per peer, for every peer that fetched from it.
    pub fn served(&self, hash: &[u8; 32]) -> Vec<(PeerId, u64)> {
        self.served
            .read()
            .map(|s| {
                s.entries
                    .iter()
                    .filter(|((_, h), _)| h == hash)
                    .map(|((peer, _), c)| (*peer, c.bytes))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn count_served(&self, peer: PeerId, blob: &Blob, group_log: u8, index: u64) {
        if let Ok(mut s) = self.served.write() {
            let (start, len) = group_range(blob.size(), group_log, index);
            s.mark((peer, blob.hash()), blob.size(), start, len);
        }
    }
}

/// What each peer acknowledged of each blob, within [`MAX_COVERAGE_BYTES`] of bitmaps.
#[derive(Default)]
struct Served {
    entries: HashMap<(PeerId, [u8; 32]), Coverage>,
    /// Bitmap bytes of all entries.
    bytes: usize,
    /// Counts updates, to find the entries updated least recently.
    clock: u64,
}

impl Served {
    fn mark(&mut self, key: (PeerId, [u8; 32]), size: u64, start: u64, len: u64) {
        self.clock += 1;
        if !self.entries.contains_key(&key) {
            let coverage = Coverage::new(size);
            self.bytes += coverage.leaves.len();
            self.entries.insert(key, coverage);
            self.evict(&key);
        }
        if let Some(c) = self.entries.get_mut(&key) {
            c.touched = self.clock;
            c.mark(start, len);
        }
    }

    /// Forgets the entries updated least recently until the bitmaps fit (never `keep`).
    fn evict(&mut self, keep: &(PeerId, [u8; 32])) {
        while self.bytes > MAX_COVERAGE_BYTES {
            let oldest = self
                .entries
                .iter()
                .filter(|(k, _)| *k != keep)
                .min_by_key(|(_, c)| c.touched)
                .map(|(k, _)| *k);
            let Some(oldest) = oldest else { return };
            if let Some(c) = self.entries.remove(&oldest) {
                self.bytes -= c.leaves.len();
            }
        }
    }

    fn forget_blob(&mut self, hash: &[u8; 32]) {
        let before = self.entries.len();
        self.entries.retain(|(_, h), _| h != hash);
        if self.entries.len() != before {
            self.bytes = self.entries.values().map(|c| c.leaves.len()).sum();
        }
    }
}

/// Which 16 KiB leaves of a blob a peer has received (groups are whole leaves).
struct Coverage {
    size: u64,
    leaves: Vec<u8>,
    bytes: u64,
    /// When it was last updated ([`Served::clock`]).
    touched: u64,
}

impl Coverage {
    fn new(size: u64) -> Self {
        let leaves = size.div_ceil(1 << LEAF_LOG).max(1);
        Self {
            size,
            leaves: vec![0; leaves.div_ceil(8) as usize],
            bytes: 0,
            touched: 0,
        }
    }

    fn mark(&mut self, start: u64, len: u64) {
        let first = start >> LEAF_LOG;
        let end = (start + len).div_ceil(1 << LEAF_LOG);
        for leaf in first..end {
            let (byte, bit) = ((leaf / 8) as usize, 1u8 << (leaf % 8));
            if let Some(b) = self.leaves.get_mut(byte) {
                if *b & bit == 0 {
                    *b |= bit;
                    let leaf_start = leaf << LEAF_LOG;
                    self.bytes += self.size.saturating_sub(leaf_start).min(1 << LEAF_LOG);
                }
            }
        }
    }
}

/// Ways a provider can be made to misbehave, so tests can check that requesters catch it.
/// A real provider never sets any of these.
#[derive(Debug, Clone, Copy)]
pub struct Faults;

impl Faults {
    /// Flip a bit in the first hash of every proof.
    pub const WRONG_PROOF: u8 = 1;
    /// Send each group under the next group's index.
    pub const WRONG_INDEX: u8 = 2;
    /// Announce a size one byte larger than the blob.
    pub const WRONG_SIZE: u8 = 4;
    /// Flip a bit in every group's data.
    pub const FLIPPED_DATA: u8 = 8;
    /// FEC mode: send forged SHARD datagrams of garbage ahead of each stripe's real ones (a
    /// wrong index, size, shape, tag, transfer number, a stripe beyond the blob, and a shard
    /// from another provider's share), which a requester must drop.
    pub const FORGED_SHARDS: u8 = 16;
    /// FEC mode: send only junk SHARD datagrams (the forgeries above, over and over) and
    /// never a real shard, proof, END or repair, until the requester gives the request up.
    pub const JUNK_ONLY: u8 = 32;
    /// Serve each plain GET at about [`SLOW_RATE`] bytes a second while set, so a test can
    /// act on a fetch in flight however fast the machine moves bytes.
    pub const SLOW: u8 = 64;
}

/// A GET's rate while [`Faults::SLOW`] is set.
pub const SLOW_RATE: u64 = 8 << 20;

impl BlobStore {
    /// Makes this provider misbehave (tests only; 0 restores honest service).
    pub fn set_faults(&self, faults: u8) {
        self.faults
            .store(faults, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn faults(&self) -> u8 {
        self.faults.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A request read, authorized and checked, holding one of the node's request slots.
pub(crate) struct Accepted {
    /// The groups asked for.
    pub(crate) get: GetRequest,
    /// The FEC parameters, for a FEC GET.
    pub(crate) fec: Option<FecRequest>,
    /// The blob asked for, opened.
    pub(crate) blob: Arc<Serving>,
    /// Given back when the request ends.
    pub(crate) slot: RequestSlot,
}

/// Reads the GET (or FEC GET) of a blob stream from `session`'s peer and answers it: with
/// ERROR (then `None`) or with BLOB, after which the caller serves the groups.
pub(crate) async fn accept(
    store: &BlobStore,
    session: &Session,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Option<Accepted> {
    let peer = session.remote_peer_id();
    let refuse = |code: ErrorCode, message: String| TransferError { code, message };
    let answer = async {
        let frame = match tokio::time::timeout(GET_TIMEOUT, read_frame(recv)).await {
            Ok(Ok(Some(f))) if f.kind == FRAME_GET || f.kind == FRAME_FEC_GET => f,
            Ok(Ok(_)) => return Err(refuse(ErrorCode::BadRequest, "expected a GET frame".into())),
            Ok(Err(e)) => return Err(refuse(ErrorCode::BadRequest, e.to_string())),
            Err(_) => return Err(refuse(ErrorCode::BadRequest, "no GET in time".into())),
        };
        let (get, fec) = if frame.kind == FRAME_FEC_GET {
            let fec = FecRequest::decode(&frame.payload)
                .map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
            (fec.get.clone(), Some(fec))
        } else {
            let get = GetRequest::decode(&frame.payload)
                .map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
            (get, None)
        };
        // A read of content-addressed data: safe to serve even if it came as early data.
        session.note_request();
        if !store.allows(&peer) {
            return Err(refuse(
                ErrorCode::Forbidden,
                "not on this provider's allow-list".into(),
            ));
        }
        let blob = store.get(&get.hash).ok_or_else(|| {
            refuse(
                ErrorCode::NotFound,
                "this provider does not have that blob".into(),
            )
        })?;
        get.check_bounds(blob.size())
            .map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        if blob.is_stale() {
            return Err(source_changed());
        }
        // Only now, for a request that will be served, is a slot taken; the slots bound the
        // files open at once.
        let slot = store
            .take_slot(peer)
            .await
            .map_err(|why| refuse(ErrorCode::Busy, why.into()))?;
        let blob = Serving::open(blob).await?;
        Ok(Accepted {
            get,
            fec,
            blob,
            slot,
        })
    };
    let accepted = match answer.await {
        Ok(accepted) => accepted,
        Err(refusal) => {
            tracing::debug!(peer = %peer.short(), code = ?refusal.code, why = %refusal.message,
                "blob request refused");
            let _ = tokio::time::timeout(store.limits.send_timeout, async {
                let _ = write_frame_raw(send, FRAME_ERROR, &refusal.encode()).await;
                let _ = send.finish();
                let _ = send.stopped().await;
            })
            .await;
            return None;
        }
    };
    let faults = store.faults();
    let announced = accepted.blob.size() + u64::from(faults & Faults::WRONG_SIZE != 0);
    write_frame_raw(send, FRAME_BLOB, &encode_blob(announced))
        .await
        .ok()?;
    Some(accepted)
}

/// Serves the groups of an accepted plain GET on `send`, whose BLOB answer has been sent.
pub(crate) async fn serve_get(
    store: &BlobStore,
    peer: PeerId,
    get: &GetRequest,
    blob: Arc<Serving>,
    mut send: quinn::SendStream,
) {
    let (limits, faults) = (&store.limits, store.faults());
    // Group records are read ahead (positioned reads on the blocking pool, none of them
    // waiting on the network, up to the read-ahead in bytes) while earlier ones are sent.
    // QUIC keeps each record until the peer acknowledges it; a record it has dropped is
    // acknowledged, so it is counted as served and its buffer is reused.
    let log = get.group_log;
    let ahead = read_ahead_groups(limits.read_ahead, log);
    let mut indexes = get
        .ranges
        .iter()
        .flat_map(|&(first, count)| first..first + count);
    let mut reading = VecDeque::with_capacity(ahead);
    let mut free: Vec<BytesMut> = Vec::new();
    let mut unacked: VecDeque<(u64, Bytes)> = VecDeque::new();
    loop {
        while reading.len() < ahead {
            let Some(index) = indexes.next() else {
                break;
            };
            let (blob, buf) = (blob.clone(), free.pop().unwrap_or_default());
            let read =
                tokio::task::spawn_blocking(move || read_record(&blob, log, index, faults, buf));
            reading.push_back((index, read));
        }
        let Some((index, read)) = reading.pop_front() else {
            break;
        };
        let record = match read.await.map_err(io::Error::other).and_then(|r| r) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "reading a group failed");
                let _ = send.reset(quinn::VarInt::from_u32(codes::RESET_UNAVAILABLE));
                return;
            }
        };
        if store.faults() & Faults::SLOW != 0 {
            let pause = record.len() as f64 / SLOW_RATE as f64;
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        }
        match write_progressing(&mut send, record.clone(), limits.send_timeout).await {
            Ok(()) => {}
            Err(Stalled::Yes) => {
                tracing::debug!(peer = %peer.short(), "requester took no data; request reset");
                let _ = send.reset(quinn::VarInt::from_u32(codes::SEND_TIMEOUT));
                return;
            }
            Err(Stalled::No) => return,
        }
        unacked.push_back((index, record));
        while unacked.front().is_some_and(|(_, r)| r.is_unique()) {
            if let Some((index, record)) = unacked.pop_front() {
                store.count_served(peer, &blob, log, index);
                if let Ok(buf) = record.try_into_mut() {
                    free.push(buf);
                }
            }
        }
    }
    let _ = send.finish();
    // The rest counts once the peer has acknowledged it: all of it when the stream ends
    // acknowledged; if the peer stopped the stream instead, what QUIC has let go of (a
    // STOP_SENDING does not discard unacknowledged data, only our reset would). A requester
    // that takes nothing more for the send timeout is not waited for.
    let stopped = tokio::time::timeout(limits.send_timeout, send.stopped()).await;
    let acked_all = matches!(stopped, Ok(Ok(None)));
    for (index, record) in unacked {
        if acked_all || record.is_unique() {
            store.count_served(peer, &blob, log, index);
        }
    }
}

/// Most group records read ahead of the network per GET (fewer when groups are large: the
/// read-ahead is bounded in bytes, at least one group).
const MAX_READ_AHEAD: usize = 4;

/// Groups of `2^group_log` bytes a request reads ahead within `bytes`.
fn read_ahead_groups(bytes: usize, group_log: u8) -> usize {
    (bytes >> group_log.min(63)).clamp(1, MAX_READ_AHEAD)
}

/// Whether a failed write was a stall (the requester took nothing for the timeout) or the
/// stream going away.
pub(crate) enum Stalled {
    /// No flow-control credit for the whole timeout.
    Yes,
    /// The stream or connection ended.
    No,
}

/// Writes `data` whole, failing if the requester takes none of it for `timeout` at a time
/// (a slow requester that keeps taking data is never cut off).
pub(crate) async fn write_progressing(
    send: &mut quinn::SendStream,
    data: Bytes,
    timeout: Duration,
) -> Result<(), Stalled> {
    let mut chunks = [data];
    while !chunks[0].is_empty() {
        match tokio::time::timeout(timeout, send.write_chunks(&mut chunks)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(Stalled::No),
            Err(_) => return Err(Stalled::Yes),
        }
    }
    Ok(())
}

/// Reads one group record into `buf` (header, proof and data together, so each record is a
/// single write to QUIC).
fn read_record(
    blob: &Serving,
    group_log: u8,
    index: u64,
    faults: u8,
    mut buf: BytesMut,
) -> io::Result<Bytes> {
    let (offset, len) = group_range(blob.size(), group_log, index);
    let mut proof = blob
        .outboard
        .proof(group_log, index)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if faults & Faults::WRONG_PROOF != 0 {
        if let Some(cv) = proof.first_mut() {
            cv[0] ^= 1;
        }
    }
    let claimed = index + u64::from(faults & Faults::WRONG_INDEX != 0);
    let header = encode_group_header(claimed, &proof);
    let total = header.len() + len as usize;
    // A recycled buffer keeps its length: zeroes are written only the first time.
    if buf.len() < total {
        buf.resize(total, 0);
    } else {
        buf.truncate(total);
    }
    buf[..header.len()].copy_from_slice(&header);
    let data = &mut buf[header.len()..];
    blob.read_exact_at(data, offset)?;
    if faults & Faults::FLIPPED_DATA != 0 {
        if let Some(b) = data.first_mut() {
            *b ^= 1;
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_figures_stay_within_their_memory_bound_however_many_peers_come() {
        let mut served = Served::default();
        // 64 GiB blobs: half a MiB of bitmap per peer; 100 peers would need 50 MiB.
        let size = 64 << 30;
        let peer = |i: u32| PeerId::from_bytes(blake3::hash(&i.to_be_bytes()).into());
        for i in 0..100 {
            served.mark((peer(i), [1; 32]), size, 0, 1 << 20);
            assert!(served.bytes <= MAX_COVERAGE_BYTES, "{}", served.bytes);
        }
        // The peers seen last are kept, with their figures; the first ones are forgotten.
        assert_eq!(served.entries[&(peer(99), [1; 32])].bytes, 1 << 20);
        assert!(!served.entries.contains_key(&(peer(0), [1; 32])));
        served.forget_blob(&[1; 32]);
        assert_eq!((served.entries.len(), served.bytes), (0, 0));
    }
}
