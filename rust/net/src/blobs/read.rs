//! Reading the group records of a GET from the blob, on the blocking pool and ahead of the
//! network: each record is one buffer (header, proof, data), so it is a single write to QUIC.

use super::{Faults, Serving};
use bytes::{Bytes, BytesMut};
use i6p_core::transfer::{encode_group_header, GetRequest};
use i6p_core::tree::group_range;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

/// Most group records read ahead of the network per GET (fewer when groups are large: the
/// read-ahead is bounded in bytes, at least one group).
const MAX_READ_AHEAD: usize = 4;

/// A group's index and its record (or why it could not be read).
type Record = (u64, io::Result<Bytes>);

/// A batch of records being read on the blocking pool.
type Reading = tokio::task::JoinHandle<Vec<Record>>;

/// The group records of a GET, read on the blocking pool a batch of up to the read-ahead at
/// a time (one hand-off to a blocking thread and back for several groups, not one per
/// group); the next batch is read while this one is sent.
pub(super) struct ReadAhead<I> {
    indexes: I,
    blob: Arc<Serving>,
    log: u8,
    faults: u8,
    batch: usize,
    reading: Option<Reading>,
    ready: VecDeque<Record>,
    /// Buffers of records QUIC has let go of, for the next reads.
    pub(super) free: Vec<BytesMut>,
}

impl ReadAhead<()> {
    pub(super) fn new(
        get: &GetRequest,
        blob: Arc<Serving>,
        read_ahead: usize,
        faults: u8,
    ) -> ReadAhead<impl Iterator<Item = u64> + '_> {
        let indexes = get
            .ranges
            .iter()
            .flat_map(|&(first, count)| first..first + count);
        ReadAhead {
            indexes,
            blob,
            log: get.group_log,
            faults,
            batch: read_ahead_groups(read_ahead, get.group_log),
            reading: None,
            ready: VecDeque::new(),
            free: Vec::new(),
        }
    }
}

impl<I: Iterator<Item = u64>> ReadAhead<I> {
    /// The next record in order, with its index; `None` after the last.
    pub(super) async fn next(&mut self) -> Option<Record> {
        if self.reading.is_none() {
            self.reading = self.start();
        }
        if self.ready.is_empty() {
            let read = self.reading.take()?;
            match read.await {
                Ok(records) => self.ready.extend(records),
                Err(e) => return Some((0, Err(io::Error::other(e)))),
            }
            self.reading = self.start();
        }
        self.ready.pop_front()
    }

    /// Starts reading the next batch, if any group is left.
    fn start(&mut self) -> Option<Reading> {
        let batch: Vec<(u64, BytesMut)> = (&mut self.indexes)
            .take(self.batch)
            .map(|i| (i, self.free.pop().unwrap_or_default()))
            .collect();
        if batch.is_empty() {
            return None;
        }
        let (blob, log, faults) = (self.blob.clone(), self.log, self.faults);
        Some(tokio::task::spawn_blocking(move || {
            let read = |(i, buf)| (i, read_record(&blob, log, i, faults, buf));
            batch.into_iter().map(read).collect()
        }))
    }
}

/// Groups of `2^group_log` bytes a request reads ahead within `bytes`.
fn read_ahead_groups(bytes: usize, group_log: u8) -> usize {
    (bytes >> group_log.min(63)).clamp(1, MAX_READ_AHEAD)
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
