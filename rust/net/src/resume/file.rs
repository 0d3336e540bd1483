//! The listener's ticket file: its format (checked record by record, pure so the fuzzer can
//! drive it) and its atomic, durable replacement.

use super::server::Subnet;
use super::{MAX_KEY, MAX_SERVER_ENTRIES, MAX_VALUE};
use std::io::{Read, Write};
use std::path::Path;

/// The largest state file read: one record per ticket held.
pub(super) const MAX_FILE: u64 =
    (8 + MAX_SERVER_ENTRIES * (RECORD_HEAD + MAX_KEY + MAX_VALUE + 8)) as u64;

/// A saved ticket: the subnet it was charged to, its key and its state.
pub(crate) type SavedTicket = (Subnet, Vec<u8>, Vec<u8>);

/// The file of tickets saved for the next run, written whole (temporary file, fsync, rename).
/// After the magic, one record per ticket, oldest first: subnet (family u8, prefix u64), key
/// length (u16), value length (u32), key, value, then a BLAKE3 checksum (first 8 bytes) of
/// everything before it in the record.
pub(super) struct Snapshot;

pub(crate) const MAGIC: &[u8; 8] = b"i6pres02";
pub(crate) const RECORD_HEAD: usize = 9 + 2 + 4;

pub(super) fn record(subnet: Subnet, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEAD + key.len() + value.len() + 8);
    out.extend_from_slice(&subnet.encode());
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let sum = blake3::hash(&out);
    out.extend_from_slice(&sum.as_bytes()[..8]);
    out
}

/// Decodes a ticket file's bytes (the magic, then records; see [`Snapshot`]): every record
/// is bounded and its checksum checked before anything is kept. Pure, for the fuzzer.
pub(crate) fn decode_tickets(data: &[u8]) -> Result<Vec<SavedTicket>, String> {
    let body = data
        .strip_prefix(&MAGIC[..])
        .ok_or_else(|| "not an i6p resumption state file".to_string())?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let rest = &body[at..];
        let corrupt = || format!("corrupt record at byte {}", at + MAGIC.len());
        if rest.len() < RECORD_HEAD || out.len() >= MAX_SERVER_ENTRIES {
            return Err(corrupt());
        }
        let subnet = Subnet::decode(&rest[..9]).ok_or_else(corrupt)?;
        let klen = usize::from(u16::from_be_bytes([rest[9], rest[10]]));
        let vlen = u32::from_be_bytes([rest[11], rest[12], rest[13], rest[14]]) as usize;
        if klen > MAX_KEY || vlen > MAX_VALUE || rest.len() < RECORD_HEAD + klen + vlen + 8 {
            return Err(corrupt());
        }
        let end = RECORD_HEAD + klen + vlen;
        if blake3::hash(&rest[..end]).as_bytes()[..8] != rest[end..end + 8] {
            return Err(corrupt());
        }
        let key = rest[RECORD_HEAD..RECORD_HEAD + klen].to_vec();
        out.push((subnet, key, rest[RECORD_HEAD + klen..end].to_vec()));
        at += end + 8;
    }
    Ok(out)
}

/// A ticket file holding `tickets` (oldest first), as [`decode_tickets`] reads it.
pub(crate) fn encode_tickets(tickets: &[SavedTicket]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (subnet, key, value) in tickets {
        out.extend_from_slice(&record(*subnet, key, value));
    }
    out
}

impl Snapshot {
    /// Reads the tickets saved at `path`; a missing file holds none.
    pub(super) fn load(path: &Path) -> Result<Vec<SavedTicket>, String> {
        let mut data = Vec::new();
        match std::fs::File::open(path) {
            Ok(f) => {
                let len = f.metadata().map_err(|e| e.to_string())?.len();
                if len > MAX_FILE {
                    return Err(format!("{len} bytes is more than a state file can hold"));
                }
                f.take(MAX_FILE)
                    .read_to_end(&mut data)
                    .map_err(|e| e.to_string())?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        }
        decode_tickets(&data)
    }

    /// Replaces `path` atomically and durably with a file (mode 0600) holding `tickets`.
    pub(super) fn write(path: &Path, tickets: &[SavedTicket]) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let out = encode_tickets(tickets);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&out)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must be durable before a ticket is honoured (see `persistent`).
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    }
}
