//! The provider side of blob transfers: the blobs a node serves, and the handler for GET
//! streams.
//!
//! A blob is a file plus its [`Outboard`] (chaining values from which proofs are read off).
//! Group data is read ahead with positioned reads on a blocking thread, so disk I/O never
//! stalls the network tasks; record buffers are reused once the peer acknowledged them. Serving never trusts the request: ranges are checked
//! against the blob before anything is read.

use crate::control::{read_frame, write_frame_raw};
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use i6p_core::fec::{FecRequest, FRAME_FEC_GET};
use i6p_core::transfer::{
    encode_blob, encode_group_header, ErrorCode, GetRequest, TransferError, FRAME_BLOB,
    FRAME_ERROR, FRAME_GET,
};
use i6p_core::tree::{group_range, hash_file, Outboard, LEAF_LOG};
use i6p_core::PeerId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A blob this node serves.
pub struct Blob {
    /// Where its bytes are.
    pub path: PathBuf,
    /// Its hash tree.
    pub outboard: Outboard,
    file: File,
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

    /// The open file, for positioned reads.
    pub(crate) fn file_ref(&self) -> &File {
        &self.file
    }
}

/// At most this many GET requests are served at once per node (each holds up to one group,
/// at most 4 MiB, in memory): a bound on what peers can make a provider allocate.
const MAX_CONCURRENT_GETS: usize = 64;
/// A requester must send its GET within this time.
const GET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The blobs a node serves, and who may fetch them.
pub struct BlobStore {
    serving: tokio::sync::Semaphore,
    blobs: RwLock<HashMap<[u8; 32], Arc<Blob>>>,
    /// Deliberate misbehaviour for conformance tests of requesters (see [`Faults`]).
    faults: std::sync::atomic::AtomicU8,
    allowed: RwLock<Option<HashSet<PeerId>>>,
    served: RwLock<HashMap<(PeerId, [u8; 32]), Coverage>>,
    /// Requests (PING, GET) this node served before a handshake completed (0-RTT).
    early_requests: std::sync::atomic::AtomicU64,
}

impl Default for BlobStore {
    fn default() -> Self {
        Self {
            serving: tokio::sync::Semaphore::new(MAX_CONCURRENT_GETS),
            blobs: RwLock::default(),
            faults: Default::default(),
            early_requests: Default::default(),
            allowed: RwLock::default(),
            served: RwLock::default(),
        }
    }
}

impl BlobStore {
    /// Counts a request served as early data on any of the node's sessions.
    pub(crate) fn note_early(&self) {
        self.early_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests this node served before their session's handshake completed.
    pub fn early_requests(&self) -> u64 {
        self.early_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hashes the file at `path` and serves it. Blocking: run it off the async threads.
    pub fn add_path(&self, path: &Path) -> io::Result<Arc<Blob>> {
        let file = File::open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let outboard = hash_file(&file)?;
        let blob = Arc::new(Blob {
            path: path.to_path_buf(),
            outboard,
            file,
        });
        if let Ok(mut blobs) = self.blobs.write() {
            blobs.insert(blob.hash(), blob.clone());
        }
        Ok(blob)
    }

    /// Stops serving a blob; true if it was served.
    pub fn remove(&self, hash: &[u8; 32]) -> bool {
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
            .and_then(|s| s.get(&(*peer, *hash)).map(|c| c.bytes))
            .unwrap_or(0)
    }

    /// The most distinct bytes of blob `hash` any one peer acknowledged receiving: equal to
    /// the size once some peer has the whole blob, however often groups were re-sent.
    pub fn max_served_bytes(&self, hash: &[u8; 32]) -> u64 {
        self.served
            .read()
            .map(|s| {
                s.iter()
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
                s.iter()
                    .filter(|((_, h), _)| h == hash)
                    .map(|((peer, _), c)| (*peer, c.bytes))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn count_served(&self, peer: PeerId, blob: &Blob, group_log: u8, index: u64) {
        if let Ok(mut s) = self.served.write() {
            let (start, len) = group_range(blob.size(), group_log, index);
            s.entry((peer, blob.hash()))
                .or_insert_with(|| Coverage::new(blob.size()))
                .mark(start, len);
        }
    }
}

/// Which 16 KiB leaves of a blob a peer has received (groups are whole leaves).
struct Coverage {
    size: u64,
    leaves: Vec<u8>,
    bytes: u64,
}

impl Coverage {
    fn new(size: u64) -> Self {
        let leaves = size.div_ceil(1 << LEAF_LOG).max(1);
        Self {
            size,
            leaves: vec![0; leaves.div_ceil(8) as usize],
            bytes: 0,
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
}

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

/// Handles one GET stream from `session`'s peer.
pub(crate) async fn serve(
    store: Arc<BlobStore>,
    session: Session,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let peer = session.remote_peer_id();
    let Ok(_permit) = store.serving.acquire().await else {
        return;
    };
    let refuse = |code: ErrorCode, message: String| TransferError { code, message };
    let answer = async {
        let frame = match tokio::time::timeout(GET_TIMEOUT, read_frame(&mut recv)).await {
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
        Ok((get, fec, blob))
    };
    let (get, fec, blob) = match answer.await {
        Ok(ok) => ok,
        Err(refusal) => {
            let _ = write_frame_raw(&mut send, FRAME_ERROR, &refusal.encode()).await;
            let _ = send.finish();
            let _ = send.stopped().await;
            return;
        }
    };
    let faults = store.faults();
    let announced = blob.size() + u64::from(faults & Faults::WRONG_SIZE != 0);
    if write_frame_raw(&mut send, FRAME_BLOB, &encode_blob(announced))
        .await
        .is_err()
    {
        return;
    }
    if let Some(fec) = fec {
        crate::fec_serve::serve_fec(store.clone(), session, blob, fec, send, recv).await;
        return;
    }
    // Group records are read ahead (READ_AHEAD positioned reads on the blocking pool at once,
    // none of them waiting on the network) while earlier ones are sent. QUIC keeps each record
    // until the peer acknowledges it; a record it has dropped is acknowledged, so it is
    // counted as served and its buffer is reused.
    let log = get.group_log;
    let mut indexes = get
        .ranges
        .iter()
        .flat_map(|&(first, count)| first..first + count);
    let mut reading = VecDeque::with_capacity(READ_AHEAD);
    let mut free: Vec<BytesMut> = Vec::new();
    let mut unacked: VecDeque<(u64, Bytes)> = VecDeque::new();
    loop {
        while reading.len() < READ_AHEAD {
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
                let _ = send.reset(quinn::VarInt::from_u32(ErrorCode::Unavailable as u32));
                return;
            }
        };
        if send.write_chunk(record.clone()).await.is_err() {
            return;
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
    // STOP_SENDING does not discard unacknowledged data, only our reset would).
    let acked_all = matches!(send.stopped().await, Ok(None));
    for (index, record) in unacked {
        if acked_all || record.is_unique() {
            store.count_served(peer, &blob, log, index);
        }
    }
}

/// Group records read ahead of the network, per GET.
const READ_AHEAD: usize = 4;

/// Reads one group record into `buf` (header, proof and data together, so each record is a
/// single write to QUIC).
fn read_record(
    blob: &Blob,
    group_log: u8,
    index: u64,
    faults: u8,
    mut buf: BytesMut,
) -> io::Result<Bytes> {
    let (offset, len) = group_range(blob.size(), group_log, index);
    let mut proof = blob
        .outboard
        .proof(group_log, index)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
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
    blob.file.read_exact_at(data, offset)?;
    if faults & Faults::FLIPPED_DATA != 0 {
        if let Some(b) = data.first_mut() {
            *b ^= 1;
        }
    }
    Ok(buf.freeze())
}
