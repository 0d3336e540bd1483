//! TLS session resumption state, keyed by PeerId.
//!
//! Dialer side: rustls keeps resumption tickets per server name. The server name of a dial is
//! made from the PeerId asked for (`dial_name`), and [`PeerSessions`] files tickets under that
//! PeerId, so a ticket from peer X can only ever be offered to a dial that requires X; the
//! certificate check on the full handshake that issued it proved X.
//!
//! Listener side: [`ServerSessions`] holds the state behind the tickets this node issued.
//! Each ticket is single use: rustls `take`s it when a client offers it, so a replayed
//! ClientHello finds nothing, falls back to a full handshake and its early data is refused.
//! With a state directory the entries are also kept in a file (mode 0600) and survive a
//! restart of the process.
//!
//! rustls 0.23 offers no way to serialize the dialer's tickets (`Tls13ClientSessionValue` has
//! no public encoding), so the dialer's cache lives as long as the process.

use i6p_core::{PeerId, PublicKey};
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::server::StoresServerSessions;
use rustls::NamedGroup;
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Peers whose tickets the dialer keeps; the least recently used one goes first.
pub const MAX_PEERS: usize = 512;
/// Tickets kept per peer (each reconnect uses one; every handshake brings new ones).
const TICKETS_PER_PEER: usize = 4;
/// Tickets a listener keeps at once.
pub const MAX_SERVER_ENTRIES: usize = 4096;
/// Bounds on one stored ticket's key and value, checked before anything is allocated.
/// (A value is the resumption secret, parameters and the peer's certificate: a few hundred
/// bytes with our Ed25519 certificates.)
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 4096;
/// The largest state file read: compaction keeps it within four records per live ticket.
const MAX_FILE: u64 = 4 * (MAX_SERVER_ENTRIES * (MAX_KEY + MAX_VALUE + 15)) as u64;

/// The TLS server name of a dial that requires `peer`. It is never sent (SNI is off): it is
/// the key of the resumption cache, and tells the certificate verifier whom to expect. `dial`
/// makes each dial's name unique so the verifier can report on that dial alone.
pub(crate) fn dial_name(peer: &PeerId, dial: u64) -> String {
    let hex: String = peer.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("d{dial:016x}.{}.{}.i6p", &hex[..32], &hex[32..])
}

/// The PeerId and dial number in a name made by [`dial_name`].
pub(crate) fn parse_dial_name(name: &ServerName<'_>) -> Option<(PeerId, u64)> {
    let ServerName::DnsName(dns) = name else {
        return None;
    };
    let mut labels = dns.as_ref().split('.');
    let dial = u64::from_str_radix(labels.next()?.strip_prefix('d')?, 16).ok()?;
    let hex = [labels.next()?, labels.next()?].concat();
    if labels.next()? != "i6p" || labels.next().is_some() || hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((PeerId::from_bytes(bytes), dial))
}

#[derive(Default)]
struct PeerEntry {
    tickets: VecDeque<Tls13ClientSessionValue>,
    kx_hint: Option<NamedGroup>,
    key: Option<PublicKey>,
}

/// The dialer's resumption cache: tickets and key-exchange hints per PeerId, bounded.
#[derive(Default)]
pub(crate) struct PeerSessions {
    peers: Mutex<(HashMap<PeerId, PeerEntry>, VecDeque<PeerId>)>,
}

impl std::fmt::Debug for PeerSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tickets hold resumption secrets: show only how many peers there are.
        let n = self.peers.lock().map(|p| p.0.len()).unwrap_or(0);
        write!(f, "PeerSessions({n} peers)")
    }
}

impl PeerSessions {
    fn with_peer<T>(&self, peer: PeerId, f: impl FnOnce(&mut PeerEntry) -> T) -> Option<T> {
        let mut guard = self.peers.lock().ok()?;
        let (map, order) = &mut *guard;
        if !map.contains_key(&peer) {
            while map.len() >= MAX_PEERS {
                let Some(oldest) = order.pop_front() else {
                    break;
                };
                map.remove(&oldest);
            }
            map.insert(peer, PeerEntry::default());
        } else if let Some(pos) = order.iter().position(|p| *p == peer) {
            order.remove(pos);
        }
        order.push_back(peer);
        map.get_mut(&peer).map(f)
    }

    fn lookup<T>(&self, peer: &PeerId, f: impl FnOnce(&mut PeerEntry) -> T) -> Option<T> {
        let mut guard = self.peers.lock().ok()?;
        guard.0.get_mut(peer).map(f)
    }

    /// Records the key a completed handshake authenticated for `peer`; a later 0-RTT dial
    /// checks the peer's HELLO against it.
    pub(crate) fn remember_key(&self, peer: PeerId, key: PublicKey) {
        self.with_peer(peer, |e| e.key = Some(key));
    }

    /// The key of `peer` if this node holds a ticket for it.
    pub(crate) fn resumable(&self, peer: &PeerId) -> Option<PublicKey> {
        self.lookup(peer, |e| (!e.tickets.is_empty()).then_some(e.key).flatten())
            .flatten()
    }

    /// Peers with at least one ticket.
    pub(crate) fn len(&self) -> usize {
        self.peers
            .lock()
            .map(|p| p.0.values().filter(|e| !e.tickets.is_empty()).count())
            .unwrap_or(0)
    }
}

impl ClientSessionStore for PeerSessions {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        if let Some((peer, _)) = parse_dial_name(&name) {
            self.with_peer(peer, |e| e.kx_hint = Some(group));
        }
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        let (peer, _) = parse_dial_name(name)?;
        self.lookup(&peer, |e| e.kx_hint).flatten()
    }

    // TLS 1.2 is never negotiated (the configs allow TLS 1.3 only).
    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        if let Some((peer, _)) = parse_dial_name(&name) {
            self.with_peer(peer, |e| {
                if e.tickets.len() >= TICKETS_PER_PEER {
                    e.tickets.pop_front();
                }
                e.tickets.push_back(value);
            });
        }
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let (peer, _) = parse_dial_name(name)?;
        // Newest first; each ticket is used once (RFC 8446 C.4).
        self.lookup(&peer, |e| e.tickets.pop_back()).flatten()
    }
}

/// The listener's single-use ticket store, optionally backed by a file.
pub(crate) struct ServerSessions {
    state: Mutex<ServerState>,
}

#[derive(Default)]
struct ServerState {
    entries: HashMap<Vec<u8>, Vec<u8>>,
    /// Keys oldest first, for eviction; may hold keys already taken.
    order: VecDeque<Vec<u8>>,
    file: Option<Journal>,
}

impl std::fmt::Debug for ServerSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.state.lock().map(|s| s.entries.len()).unwrap_or(0);
        write!(f, "ServerSessions({n} tickets)")
    }
}

impl ServerSessions {
    /// A store in memory only.
    pub(crate) fn in_memory() -> Self {
        Self {
            state: Mutex::new(ServerState::default()),
        }
    }

    /// A store kept in `path` too. Entries already there are loaded; a file that cannot be
    /// read or is corrupt is set aside with a warning and the store starts empty.
    pub(crate) fn persistent(path: PathBuf) -> Self {
        let mut state = ServerState::default();
        match Journal::load(&path) {
            Ok(entries) => {
                for (k, v) in entries {
                    state.insert(k, v);
                }
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), %why, "ignoring the resumption state file");
            }
        }
        match Journal::rewrite(&path, &state.entries) {
            Ok(journal) => state.file = Some(journal),
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "cannot write the resumption state file; tickets will not survive a restart"),
        }
        Self {
            state: Mutex::new(state),
        }
    }

    /// Tickets held.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().map(|s| s.entries.len()).unwrap_or(0)
    }
}

impl ServerState {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        let mut evicted = None;
        while self.entries.len() >= MAX_SERVER_ENTRIES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.entries.remove(&oldest).is_some() {
                evicted = Some(oldest);
            }
        }
        if self.entries.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        // `take` leaves its key here (removing it would cost a scan per resumption); drop
        // such stale keys once they outnumber the live ones.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
        evicted
    }
}

impl StoresServerSessions for ServerSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return false;
        }
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if let Some(journal) = state.file.as_mut() {
            if journal.put(&key, &value).is_err() {
                return false;
            }
        }
        if let Some(evicted) = state.insert(key, value) {
            if let Some(journal) = state.file.as_mut() {
                let _ = journal.remove(&evicted);
            }
        }
        let ServerState { entries, file, .. } = &mut *state;
        if let Some(journal) = file.as_mut() {
            journal.maybe_compact(entries.len(), entries);
        }
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.state.lock().ok()?.entries.get(key).cloned()
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut state = self.state.lock().ok()?;
        let value = state.entries.remove(key)?;
        if let Some(journal) = state.file.as_mut() {
            // The removal must reach the file before the ticket is honoured, or a restart
            // would bring the ticket (and a replay of its early data) back.
            if journal.remove(key).is_err() {
                return None;
            }
        }
        Some(value)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// An append-only file of PUT and DEL records, rewritten when it grows well past what is live.
/// Record: tag (1 = put, 2 = del), key length (u16), value length (u32), key, value,
/// then a BLAKE3 checksum (first 8 bytes) of everything before it in the record.
struct Journal {
    path: PathBuf,
    file: std::fs::File,
    records: usize,
}

const MAGIC: &[u8; 8] = b"i6pres01";

/// A ticket's key and the state behind it.
type Entry = (Vec<u8>, Vec<u8>);
const TAG_PUT: u8 = 1;
const TAG_DEL: u8 = 2;

fn record(tag: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 + 4 + key.len() + value.len() + 8);
    out.push(tag);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let sum = blake3::hash(&out);
    out.extend_from_slice(&sum.as_bytes()[..8]);
    out
}

impl Journal {
    /// Reads the live entries of the file at `path`; a missing file is empty.
    fn load(path: &Path) -> Result<Vec<Entry>, String> {
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
        let body = data
            .strip_prefix(&MAGIC[..])
            .ok_or_else(|| "not an i6p resumption state file".to_string())?;
        let mut entries: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut order = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let rest = &body[at..];
            let corrupt = || format!("corrupt record at byte {}", at + MAGIC.len());
            if rest.len() < 7 {
                return Err(corrupt());
            }
            let tag = rest[0];
            let klen = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            let vlen = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
            if klen > MAX_KEY || vlen > MAX_VALUE || rest.len() < 7 + klen + vlen + 8 {
                return Err(corrupt());
            }
            let end = 7 + klen + vlen;
            if blake3::hash(&rest[..end]).as_bytes()[..8] != rest[end..end + 8] {
                return Err(corrupt());
            }
            let key = rest[7..7 + klen].to_vec();
            match tag {
                TAG_PUT => {
                    order.push(key.clone());
                    entries.insert(key, rest[7 + klen..end].to_vec());
                }
                TAG_DEL => {
                    entries.remove(&key);
                }
                _ => return Err(corrupt()),
            }
            at += end + 8;
        }
        Ok(order
            .into_iter()
            .filter_map(|k| entries.remove(&k).map(|v| (k, v)))
            .collect())
    }

    /// Writes `entries` to a fresh file that replaces `path` atomically, mode 0600.
    fn rewrite(path: &Path, entries: &HashMap<Vec<u8>, Vec<u8>>) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let mut out = MAGIC.to_vec();
        for (k, v) in entries {
            out.extend_from_slice(&record(TAG_PUT, k, v));
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&out)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            records: entries.len(),
        })
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        self.records += 1;
        self.file.write_all(&record(TAG_PUT, key, value))
    }

    fn remove(&mut self, key: &[u8]) -> std::io::Result<()> {
        self.records += 1;
        self.file.write_all(&record(TAG_DEL, key, &[]))
    }

    /// Rewrites the file once it holds four times more records than live entries.
    fn maybe_compact(&mut self, live: usize, entries: &HashMap<Vec<u8>, Vec<u8>>) {
        if self.records > 64 && self.records > 4 * live {
            match Self::rewrite(&self.path, entries) {
                Ok(fresh) => *self = fresh,
                Err(e) => tracing::warn!(error = %e, "cannot compact the resumption state file"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_names_round_trip_and_reject_others() {
        let peer = i6p_core::Identity::generate().peer_id();
        let name = ServerName::try_from(dial_name(&peer, 7)).unwrap();
        assert_eq!(parse_dial_name(&name), Some((peer, 7)));
        for bad in ["i6p", "d1.ab.cd.i6p", "x.i6p.i6p.i6p", "localhost"] {
            let name = ServerName::try_from(bad.to_string()).unwrap();
            assert_eq!(parse_dial_name(&name), None, "{bad}");
        }
    }

    #[test]
    fn server_tickets_are_single_use_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("i6p-res-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tickets");
        let store = ServerSessions::persistent(path.clone());
        assert!(store.put(b"a".to_vec(), b"secret-a".to_vec()));
        assert!(store.put(b"b".to_vec(), b"secret-b".to_vec()));
        assert_eq!(store.take(b"a"), Some(b"secret-a".to_vec()));
        assert_eq!(store.take(b"a"), None);
        drop(store);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = ServerSessions::persistent(path.clone());
        assert_eq!(again.take(b"a"), None, "a taken ticket must not come back");
        assert_eq!(again.take(b"b"), Some(b"secret-b".to_vec()));
        drop(again);
        // A damaged file is ignored, not trusted and not fatal.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&record(TAG_PUT, b"c", b"v"));
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let damaged = ServerSessions::persistent(path.clone());
        assert_eq!(damaged.len(), 0);
        assert!(damaged.put(b"d".to_vec(), b"v".to_vec()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn server_store_is_bounded() {
        let store = ServerSessions::in_memory();
        for i in 0..MAX_SERVER_ENTRIES + 10 {
            assert!(store.put(i.to_be_bytes().to_vec(), vec![0; 8]));
        }
        assert_eq!(store.len(), MAX_SERVER_ENTRIES);
        assert_eq!(store.get(&0usize.to_be_bytes()), None);
        assert!(!store.put(vec![0; MAX_KEY + 1], vec![]));
        // Tickets used as fast as they are issued leave no trail behind.
        let churn = ServerSessions::in_memory();
        for i in 0..100_000u64 {
            assert!(churn.put(i.to_be_bytes().to_vec(), vec![1]));
            assert!(churn.take(&i.to_be_bytes()).is_some());
        }
        let order = churn.state.lock().unwrap().order.len();
        assert!(order <= 64 + 2, "{order} stale keys kept");
    }
}
