//! Checking, before a resumed download is placed, the groups it took over from an earlier run:
//! only those are read and hashed again; the groups verified by this run count with the
//! hashes their verification computed.

use super::PartialDownload;
use i6p_core::tree::root_from_groups;
use std::io;
use std::os::unix::fs::FileExt;

/// Most groups whose hashes a resumed download keeps for `finish` (33 bytes each: 66 MiB).
pub(super) const MAX_KEPT_HASHES: u64 = 1 << 21;

impl PartialDownload {
    /// With groups reused from an earlier run: the blob's root as the part file now gives it
    /// (reading the reused groups, or the whole file without kept hashes), and the bytes read.
    pub(super) fn reused_root(&self) -> io::Result<Option<([u8; 32], u64)>> {
        if self.reused_bytes == 0 {
            return Ok(None);
        }
        if self.written.is_empty() {
            return crate::storage::hash_file(&self.part)
                .map(|ob| Some((ob.root(), self.state.size)));
        }
        let read = std::sync::atomic::AtomicU64::new(0);
        let root = root_from_groups(
            self.state.size,
            self.state.group_log,
            &self.written,
            |buf, offset| {
                read.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
                self.part.read_exact_at(buf, offset)
            },
        )?;
        Ok(Some((root, read.into_inner())))
    }
}
