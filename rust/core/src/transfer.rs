//! Messages of the blob transfer protocol, carried on streams of kind [`STREAM_KIND_BLOBS`].
//!
//! The requester sends one GET frame (using the control frame format) and finishes its side;
//! the provider answers with a BLOB frame (the size) or an ERROR frame, then streams the
//! requested groups in order, each as `index:u64 proof_len:u8 proof:proof_len*32 data`, where
//! the data length follows from the size and the group size, and finishes.

use crate::error::{CoreError, Result};
use crate::tree::{check_group_log, group_count, Cv, MAX_PROOF_LEN};
use crate::wire::{put_string, Reader};

pub use crate::codes::ErrorCode;
/// First byte of every stream an application opens (registered in [`crate::kinds`]).
pub use crate::kinds::STREAM_APP as STREAM_KIND_APP;
/// First byte of every blob transfer stream (registered in [`crate::kinds`]).
pub use crate::kinds::STREAM_BLOBS as STREAM_KIND_BLOBS;
pub use crate::kinds::{FRAME_BLOB, FRAME_ERROR, FRAME_GET};

/// At most this many ranges in one GET.
pub const MAX_RANGES: usize = 1024;
/// Longest ERROR message.
pub const MAX_ERROR_MESSAGE: usize = 1024;
/// Bytes before the proof in a group record.
pub const GROUP_HEADER_LEN: usize = 9;

/// GET: which groups of which blob, at which group size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    /// BLAKE3 hash of the blob.
    pub hash: [u8; 32],
    /// log2 of the group size.
    pub group_log: u8,
    /// Runs of groups as (first index, count), served in this order.
    pub ranges: Vec<(u64, u64)>,
}

impl GetRequest {
    /// Encodes the frame payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36 + 16 * self.ranges.len());
        out.extend_from_slice(&self.hash);
        out.push(self.group_log);
        out.extend_from_slice(&(self.ranges.len() as u16).to_be_bytes());
        for (first, count) in &self.ranges {
            out.extend_from_slice(&first.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
        }
        out
    }

    /// Decodes and checks the frame payload (not yet against a blob's size).
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "get");
        let hash = r.array()?;
        let group_log = r.u8()?;
        check_group_log(group_log)?;
        let n = usize::from(r.u16()?);
        if n == 0 || n > MAX_RANGES {
            return Err(r.malformed(format!("{n} ranges (allowed 1..={MAX_RANGES})")));
        }
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            let first = r.u64()?;
            let count = r.u64()?;
            if count == 0 || first.checked_add(count).is_none() {
                return Err(r.malformed(format!("bad range {first}+{count}")));
            }
            ranges.push((first, count));
        }
        r.finish()?;
        Ok(Self {
            hash,
            group_log,
            ranges,
        })
    }

    /// Checks every range against a blob of `size` bytes.
    pub fn check_bounds(&self, size: u64) -> Result<()> {
        let groups = group_count(size, self.group_log);
        for (first, count) in &self.ranges {
            if first + count > groups {
                return Err(CoreError::Malformed {
                    what: "get",
                    detail: format!(
                        "groups {first}..{} beyond the blob's {groups}",
                        first + count
                    ),
                });
            }
        }
        Ok(())
    }
}

/// ERROR: a refusal with a code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferError {
    /// Why.
    pub code: ErrorCode,
    /// In words.
    pub message: String,
}

impl TransferError {
    /// Encodes the frame payload.
    pub fn encode(&self) -> Vec<u8> {
        let msg = crate::messages::truncate_utf8(&self.message, MAX_ERROR_MESSAGE);
        let mut out = (self.code as u16).to_be_bytes().to_vec();
        put_string(&mut out, msg, 2);
        out
    }

    /// Decodes the frame payload.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "error");
        let code = ErrorCode::from_u16(r.u16()?);
        let message = r.string(2, MAX_ERROR_MESSAGE)?;
        r.finish()?;
        Ok(Self { code, message })
    }
}

/// Encodes BLOB's payload: the blob's size.
pub fn encode_blob(size: u64) -> [u8; 8] {
    size.to_be_bytes()
}

/// Decodes BLOB's payload.
pub fn decode_blob(payload: &[u8]) -> Result<u64> {
    let mut r = Reader::new(payload, "blob");
    let size = r.u64()?;
    r.finish()?;
    Ok(size)
}

/// Encodes a group record's header and proof (the data follows).
pub fn encode_group_header(index: u64, proof: &[Cv]) -> Vec<u8> {
    let mut out = Vec::with_capacity(GROUP_HEADER_LEN + 32 * proof.len());
    out.extend_from_slice(&index.to_be_bytes());
    out.push(proof.len() as u8);
    for cv in proof {
        out.extend_from_slice(cv);
    }
    out
}

/// Decodes a group record's fixed header: (index, proof length), the length bounded.
pub fn decode_group_header(raw: [u8; GROUP_HEADER_LEN]) -> Result<(u64, usize)> {
    let mut r = Reader::new(&raw, "group");
    let index = r.u64()?;
    let proof_len = usize::from(r.u8()?);
    if proof_len > MAX_PROOF_LEN {
        return Err(r.malformed(format!(
            "proof of {proof_len} hashes exceeds {MAX_PROOF_LEN}"
        )));
    }
    Ok((index, proof_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        let get = GetRequest {
            hash: [3; 32],
            group_log: 18,
            ranges: vec![(0, 4), (9, 1)],
        };
        assert_eq!(GetRequest::decode(&get.encode()).unwrap(), get);
        assert!(get.check_bounds(10 << 18).is_ok());
        assert!(get.check_bounds(9 << 18).is_err());
        let mut bad = get.clone();
        bad.group_log = 23;
        assert!(GetRequest::decode(&bad.encode()).is_err());
        let mut bad = get.clone();
        bad.ranges = vec![(u64::MAX, 2)];
        assert!(GetRequest::decode(&bad.encode()).is_err());
        let mut bad = get;
        bad.ranges.clear();
        assert!(GetRequest::decode(&bad.encode()).is_err());
        let e = TransferError {
            code: ErrorCode::NotFound,
            message: "no such blob".into(),
        };
        assert_eq!(TransferError::decode(&e.encode()).unwrap(), e);
        assert_eq!(decode_blob(&encode_blob(77)).unwrap(), 77);
        assert!(decode_group_header([0, 0, 0, 0, 0, 0, 0, 1, 51]).is_err());
        assert_eq!(
            decode_group_header([0, 0, 0, 0, 0, 0, 0, 1, 3]).unwrap(),
            (1, 3)
        );
    }
}
