//! The resumable state of a download: which groups of which blob are verified on disk, and
//! the format of the state file that records it (`DEST.i6p-state`).
//!
//! The format: `magic "I6PSTAT1" | root:32 | size:u64 | group_log:u8 | bitmap | checksum:u64`,
//! the checksum covering everything before it. Decoding checks every field and the bitmap's
//! padding, so a damaged or foreign state is refused, never half-trusted. The files
//! themselves (opening, locking, fsyncing, renaming) are the networking crate's
//! (`i6p_net::storage`): this module does no I/O.

use crate::error::{CoreError, Result};
use crate::tree::{check_group_log, group_count, group_range, MIN_GROUP_LOG};

const MAGIC: &[u8; 8] = b"I6PSTAT1";
/// The most groups a download may have: a 2 MiB bitmap (4 TiB at 256 KiB groups, 64 TiB at
/// 4 MiB). A ticket claiming more is refused before any file is made.
const MAX_GROUPS: u64 = 1 << 24;
/// A state file's bytes besides the bitmap: magic, root, size, group log, checksum.
const STATE_OVERHEAD: u64 = 8 + 32 + 8 + 1 + 8;

/// The longest state file a blob of `size` bytes can have (at the smallest group size, since
/// a state is resumed at its own group size), plus slack; anything longer is not read.
pub fn max_state_len(size: u64) -> u64 {
    let groups = group_count(size, MIN_GROUP_LOG).min(MAX_GROUPS);
    STATE_OVERHEAD + groups.div_ceil(8) + 64
}

/// Which groups of which blob are already verified on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferState {
    /// BLAKE3 hash of the blob.
    pub root: [u8; 32],
    /// Size of the blob.
    pub size: u64,
    /// log2 of the group size the bitmap counts in.
    pub group_log: u8,
    bits: Vec<u8>,
    done: u64,
    done_bytes: u64,
}

impl TransferState {
    /// Nothing fetched yet.
    pub fn new(root: [u8; 32], size: u64, group_log: u8) -> Result<Self> {
        check_group_log(group_log)?;
        let groups = group_count(size, group_log);
        if groups > MAX_GROUPS {
            return Err(CoreError::Malformed {
                what: "state",
                detail: format!("{groups} groups is too many; use larger groups"),
            });
        }
        Ok(Self {
            root,
            size,
            group_log,
            bits: vec![0; groups.div_ceil(8) as usize],
            done: 0,
            done_bytes: 0,
        })
    }

    /// Number of groups.
    pub fn groups(&self) -> u64 {
        group_count(self.size, self.group_log)
    }

    /// True if group `i` is verified on disk.
    pub fn has(&self, i: u64) -> bool {
        self.bits
            .get((i / 8) as usize)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Marks group `i` as verified on disk.
    pub fn set(&mut self, i: u64) {
        if i < self.groups() && !self.has(i) {
            self.bits[(i / 8) as usize] |= 1 << (i % 8);
            self.done += 1;
            self.done_bytes += group_range(self.size, self.group_log, i).1;
        }
    }

    /// Unmarks group `i` (its bytes did not reach the disk after all).
    pub fn unset(&mut self, i: u64) {
        if self.has(i) {
            self.bits[(i / 8) as usize] &= !(1 << (i % 8));
            self.done -= 1;
            self.done_bytes -= group_range(self.size, self.group_log, i).1;
        }
    }

    /// Groups done.
    pub fn done_groups(&self) -> u64 {
        self.done
    }

    /// Bytes done.
    pub fn done_bytes(&self) -> u64 {
        self.done_bytes
    }

    /// True when every group is done.
    pub fn complete(&self) -> bool {
        self.done == self.groups()
    }

    /// Runs of missing groups as (first, count).
    pub fn missing_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for i in 0..self.groups() {
            if self.has(i) {
                continue;
            }
            match out.last_mut() {
                Some((first, count)) if *first + *count == i => *count += 1,
                _ => out.push((i, 1)),
            }
        }
        out
    }

    /// The on-disk form, with a checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.bits.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.push(self.group_log);
        out.extend_from_slice(&self.bits);
        Self::seal(out)
    }

    /// Appends the checksum to an encoded body.
    pub(crate) fn seal(mut body: Vec<u8>) -> Vec<u8> {
        let sum = blake3::hash(&body);
        body.extend_from_slice(&sum.as_bytes()[..8]);
        body
    }

    /// Parses the on-disk form; any damage is an error (the caller then starts over).
    pub fn decode(raw: &[u8]) -> Result<Self> {
        let bad = |d: &str| CoreError::Malformed {
            what: "state file",
            detail: d.to_string(),
        };
        if raw.len() < MAGIC.len() + 32 + 8 + 1 + 8 || &raw[..8] != MAGIC {
            return Err(bad("not an i6p state file"));
        }
        let (body, sum) = raw.split_at(raw.len() - 8);
        if &blake3::hash(body).as_bytes()[..8] != sum {
            return Err(bad("checksum mismatch"));
        }
        let mut root = [0u8; 32];
        root.copy_from_slice(&body[8..40]);
        let size = u64::from_be_bytes(body[40..48].try_into().map_err(|_| bad("size"))?);
        let group_log = body[48];
        let mut state = Self::new(root, size, group_log)?;
        let bits = &body[49..];
        if bits.len() != state.bits.len() {
            return Err(bad("bitmap length does not match the size"));
        }
        for i in 0..state.groups() {
            if bits[(i / 8) as usize] & (1 << (i % 8)) != 0 {
                state.set(i);
            }
        }
        // Our encoder never sets the padding bits after the last group.
        if state.bits != bits {
            return Err(bad("bits set beyond the last group"));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_damage() {
        let mut s = TransferState::new([1; 32], 10 * (1 << 18) + 5, 18).unwrap();
        assert_eq!(s.groups(), 11);
        s.set(0);
        s.set(3);
        s.set(10);
        assert_eq!(s.missing_ranges(), vec![(1, 2), (4, 6)]);
        assert_eq!(s.done_bytes(), 2 * (1 << 18) + 5);
        let raw = s.encode();
        assert_eq!(TransferState::decode(&raw).unwrap(), s);
        for i in 0..raw.len() {
            let mut damaged = raw.clone();
            damaged[i] ^= 0x10;
            assert!(TransferState::decode(&damaged).is_err(), "byte {i}");
        }
        assert!(TransferState::decode(&raw[..raw.len() - 1]).is_err());
        // A bit past the last of the 11 groups, with a valid checksum, is damage too.
        let mut body = raw[..raw.len() - 8].to_vec();
        *body.last_mut().unwrap() |= 0x80;
        assert!(TransferState::decode(&TransferState::seal(body)).is_err());
    }
}
