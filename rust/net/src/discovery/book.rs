//! The address book: where each peer was last seen, by PeerId, the first source `connect`
//! asks when it is given no address.
//!
//! Entries come from the application (`add`) and from every session whose HELLO verified:
//! the address the peer's packets came from and the listen addresses its HELLO lists. They
//! are hints, never trusted: TLS checks the identity at whatever address is dialed. The book
//! is bounded (peers, and addresses per peer; the least recently seen go first), and with a
//! state directory it is kept in a file there (mode 0600, replaced atomically, saved a moment
//! after a change and when the node closes), read back at bind skipping what does not parse.

use crate::addr::canonical;
use i6p_core::PeerId;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most peers the book holds.
pub const MAX_PEERS: usize = 4096;
/// Most addresses it holds per peer.
pub const MAX_ADDRS_PER_PEER: usize = 16;
/// A book file larger than this is not read (a full book is about 1 MiB of text).
const MAX_FILE_BYTES: u64 = 4 << 20;
/// How long after a change the book is saved (changes meanwhile are saved together).
const SAVE_DELAY: Duration = Duration::from_millis(200);
/// The file's first line.
const HEADER: &str = "# i6p address book v1: peer-id address unix-seconds";

/// An address and when it was last seen (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    addr: SocketAddr,
    at: u64,
}

/// Peers' addresses, most recently seen first.
#[derive(Debug)]
pub struct AddressBook {
    peers: Mutex<HashMap<PeerId, Vec<Seen>>>,
    path: Option<PathBuf>,
    /// A save is scheduled and has not started yet.
    save_due: AtomicBool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `addr` can be dialed at all: not unspecified, multicast or port 0.
fn dialable(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
}

impl AddressBook {
    /// A book kept in memory only.
    pub fn in_memory() -> Self {
        Self {
            peers: Mutex::default(),
            path: None,
            save_due: AtomicBool::new(false),
        }
    }

    /// The book of a node: in `address-book` in its state directory, if it has one.
    pub fn in_state_dir(dir: Option<&Path>) -> Self {
        dir.map_or_else(Self::in_memory, |d| Self::open(d.join("address-book")))
    }

    /// The book kept in `path`: read back now (a missing file is an empty book; lines that
    /// do not parse are skipped, a file too large or unreadable is logged and left alone
    /// until the next save replaces it).
    pub fn open(path: PathBuf) -> Self {
        let book = Self {
            path: Some(path.clone()),
            ..Self::in_memory()
        };
        match read_book(&path) {
            Ok(entries) => {
                for (peer, seen) in entries {
                    book.insert(peer, seen);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "the address book could not be read; starting with an empty one"),
        }
        book
    }

    /// Records `addrs` for `peer`, seen now; returns how many were dialable and kept.
    pub fn add(self: &Arc<Self>, peer: PeerId, addrs: &[SocketAddr]) -> usize {
        let at = now();
        let mut kept = 0;
        for addr in addrs.iter().map(|a| canonical(*a)).filter(dialable) {
            self.insert(peer, Seen { addr, at });
            kept += 1;
        }
        if kept > 0 {
            self.schedule_save();
        }
        kept
    }

    /// What the book knows of `peer`, most recently seen first.
    pub fn addrs(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.lock()
            .get(peer)
            .map(|seen| seen.iter().map(|s| s.addr).collect())
            .unwrap_or_default()
    }

    /// Forgets `peer`; true if the book knew it.
    pub fn forget(self: &Arc<Self>, peer: &PeerId) -> bool {
        let known = self.lock().remove(peer).is_some();
        if known {
            self.schedule_save();
        }
        known
    }

    /// Peers in the book.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the book knows no peer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Vec<Seen>>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, peer: PeerId, seen: Seen) {
        let mut peers = self.lock();
        if !peers.contains_key(&peer) && peers.len() >= MAX_PEERS {
            let stalest = peers
                .iter()
                .min_by_key(|(_, s)| s.first().map_or(0, |s| s.at))
                .map(|(p, _)| *p);
            if let Some(stalest) = stalest {
                peers.remove(&stalest);
            }
        }
        let list = peers.entry(peer).or_default();
        list.retain(|s| s.addr != seen.addr);
        let at = list.partition_point(|s| s.at >= seen.at);
        list.insert(at, seen);
        list.truncate(MAX_ADDRS_PER_PEER);
    }

    /// Saves a moment from now on the runtime's blocking pool (at once outside a runtime).
    fn schedule_save(self: &Arc<Self>) {
        if self.path.is_none() || self.save_due.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.save_now();
            return;
        };
        let book = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(SAVE_DELAY).await;
            let _ = tokio::task::spawn_blocking(move || book.save_now()).await;
        });
    }

    /// Writes the book to its file now (a no-op for an in-memory book); failures are logged.
    pub fn save_now(&self) {
        self.save_due.store(false, Ordering::Release);
        let Some(path) = &self.path else {
            return;
        };
        let text = self.encode();
        if let Err(e) = write_atomically(path, text.as_bytes()) {
            tracing::warn!(path = %path.display(), error = %e, "the address book was not saved");
        }
    }

    fn encode(&self) -> String {
        let peers = self.lock();
        let mut text = format!("{HEADER}\n");
        for (peer, seen) in peers.iter() {
            for s in seen {
                text.push_str(&format!("{peer} {} {}\n", s.addr, s.at));
            }
        }
        text
    }
}

/// The entries of a book file, in file order; lines that do not parse are skipped.
fn read_book(path: &Path) -> std::io::Result<Vec<(PeerId, Seen)>> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{size} bytes, more than the {MAX_FILE_BYTES} a book may have"
        )));
    }
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<(PeerId, Seen)> {
    let mut parts = line.split_ascii_whitespace();
    let peer = parts.next()?.parse::<PeerId>().ok()?;
    let addr = canonical(parts.next()?.parse::<SocketAddr>().ok()?);
    let at = parts.next()?.parse::<u64>().ok()?;
    (parts.next().is_none() && dialable(&addr)).then_some((peer, Seen { addr, at }))
}

/// Replaces `path` with `data`: a temporary file beside it (mode 0600), fsynced, renamed.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    // A file left there (another mode, a link) is not reused.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
