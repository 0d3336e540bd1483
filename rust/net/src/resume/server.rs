//! The listener's single-use resumption tickets: charged to the client's subnet and site so
//! a flood evicts only its own, and saved to a file across restarts (see the parent module
//! for the invariants of both).

use super::file::{SavedTicket, Snapshot};
use super::{MAX_KEY, MAX_SERVER_ENTRIES, MAX_VALUE};
use crate::exporter::EarlyExporter;
use rustls::server::StoresServerSessions;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where a client connected from, as its tickets are charged: the /64 of an IPv6 address or
/// the /32 of an IPv4 one (IPv4-mapped IPv6 counts as IPv4). Family 0 is "unknown" (a store
/// used without [`ServerConfigs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Subnet {
    family: u8,
    bits: u64,
}

impl Subnet {
    const UNKNOWN: Self = Self { family: 0, bits: 0 };

    fn of(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V4(a) => Self {
                family: 4,
                bits: u64::from(u32::from(a)),
            },
            IpAddr::V6(a) => Self {
                family: 6,
                bits: (u128::from(a) >> 64) as u64,
            },
        }
    }

    /// The site around the subnet, the unit one operator usually holds: /48 or /24.
    fn site(self) -> Self {
        let mask = match self.family {
            6 => !0xffff,
            4 => !0xff,
            _ => 0,
        };
        Self {
            family: self.family,
            bits: self.bits & mask,
        }
    }

    pub(super) fn encode(self) -> [u8; 9] {
        let mut out = [self.family; 9];
        out[1..].copy_from_slice(&self.bits.to_be_bytes());
        out
    }

    pub(super) fn decode(raw: &[u8]) -> Option<Self> {
        let (&family, bits) = raw.split_first()?;
        let bits = u64::from_be_bytes(bits.try_into().ok()?);
        let valid = match family {
            0 => bits == 0,
            4 => bits <= u64::from(u32::MAX),
            6 => true,
            _ => false,
        };
        valid.then_some(Self { family, bits })
    }
}

/// Counts per key, and the key with the highest count, in O(log n).
struct Tally<K> {
    counts: HashMap<K, usize>,
    ranked: BTreeSet<(usize, K)>,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self {
            counts: HashMap::new(),
            ranked: BTreeSet::new(),
        }
    }
}

impl<K: Copy + Ord + std::hash::Hash> Tally<K> {
    fn add(&mut self, key: K) {
        let n = self.counts.entry(key).or_insert(0);
        self.ranked.remove(&(*n, key));
        *n += 1;
        self.ranked.insert((*n, key));
    }

    fn remove(&mut self, key: K) {
        let Some(n) = self.counts.get_mut(&key) else {
            return;
        };
        self.ranked.remove(&(*n, key));
        *n -= 1;
        if *n == 0 {
            self.counts.remove(&key);
        } else {
            self.ranked.insert((*n, key));
        }
    }

    fn largest(&self) -> Option<K> {
        self.ranked.last().map(|(_, k)| *k)
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// The state behind one issued ticket.
struct Ticket {
    value: Vec<u8>,
    subnet: Subnet,
    /// Issue order, for oldest-first eviction.
    seq: u64,
}

/// The listener's single-use ticket store, optionally saved to a file (see the module comment).
pub(crate) struct ServerSessions {
    state: Mutex<ServerState>,
    /// The file the tickets are saved to when the node closes.
    path: Option<PathBuf>,
}

#[derive(Default)]
pub(crate) struct ServerState {
    tickets: HashMap<Vec<u8>, Ticket>,
    /// Each subnet's tickets by issue order.
    by_subnet: HashMap<Subnet, BTreeMap<u64, Vec<u8>>>,
    /// Tickets per site, and per subnet within each site.
    sites: Tally<Subnet>,
    subnets: HashMap<Subnet, Tally<Subnet>>,
    next_seq: u64,
    /// Set when the tickets were handed to the file for the next run: from then on nothing is
    /// taken (it would be honoured twice) and nothing is issued.
    closed: bool,
}

impl std::fmt::Debug for ServerSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values hold resumption secrets: show only how many there are.
        write!(f, "ServerSessions({} tickets)", self.len())
    }
}

impl ServerSessions {
    /// A store in memory only.
    pub(crate) fn in_memory() -> Self {
        Self {
            state: Mutex::new(ServerState::default()),
            path: None,
        }
    }

    /// A store saved to `path` when the node closes. Tickets saved there by the last run are
    /// loaded, and the file is durably emptied before this returns, so that none of them can
    /// be honoured twice; a file that cannot be read or is corrupt is ignored with a warning.
    pub(crate) fn persistent(path: PathBuf) -> Self {
        let loaded = Snapshot::load(&path).unwrap_or_else(|why| {
            tracing::warn!(path = %path.display(), %why, "ignoring the resumption state file");
            Vec::new()
        });
        let mut state = ServerState::default();
        if let Err(e) = Snapshot::write(&path, &[]) {
            // The old file still names its tickets: honouring them now could honour them
            // twice (once more in a later run), so they are dropped.
            tracing::warn!(path = %path.display(), error = %e,
                "cannot write the resumption state file; tickets will not survive a restart");
            return Self {
                state: Mutex::new(state),
                path: None,
            };
        }
        for (subnet, key, value) in loaded {
            state.insert(key, value, subnet);
        }
        Self {
            state: Mutex::new(state),
            path: Some(path),
        }
    }

    /// Tickets held.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().map(|s| s.tickets.len()).unwrap_or(0)
    }

    /// Stops issuing and taking tickets and saves the ones held for the next run (blocking: a
    /// write and two fsyncs). Called when the node closes; later calls do nothing.
    pub(crate) fn close(&self) {
        let saved = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state.closed {
                return;
            }
            state.closed = true;
            state.drain_oldest_first()
        };
        if let Some(path) = &self.path {
            if let Err(e) = Snapshot::write(path, &saved) {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot save the resumption tickets; peers will make full handshakes");
            }
        }
    }

    fn put_from(&self, subnet: Subnet, key: Vec<u8>, value: Vec<u8>) -> bool {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return false;
        }
        match self.state.lock() {
            Ok(mut state) if !state.closed => {
                state.insert(key, value, subnet);
                true
            }
            _ => false,
        }
    }
}

impl Drop for ServerSessions {
    fn drop(&mut self) {
        // Nothing can take a ticket any more: saving is safe (and does nothing after `close`).
        self.close();
    }
}

impl ServerState {
    /// Tickets held.
    pub(crate) fn len(&self) -> usize {
        self.tickets.len()
    }

    pub(crate) fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, subnet: Subnet) {
        self.remove(&key);
        while self.tickets.len() >= MAX_SERVER_ENTRIES && self.evict() {}
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_subnet
            .entry(subnet)
            .or_default()
            .insert(seq, key.clone());
        self.sites.add(subnet.site());
        self.subnets.entry(subnet.site()).or_default().add(subnet);
        self.tickets.insert(key, Ticket { value, subnet, seq });
    }

    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let ticket = self.tickets.remove(key)?;
        let subnet = ticket.subnet;
        if let Some(keys) = self.by_subnet.get_mut(&subnet) {
            keys.remove(&ticket.seq);
            if keys.is_empty() {
                self.by_subnet.remove(&subnet);
            }
        }
        self.sites.remove(subnet.site());
        if let Some(tally) = self.subnets.get_mut(&subnet.site()) {
            tally.remove(subnet);
            if tally.is_empty() {
                self.subnets.remove(&subnet.site());
            }
        }
        Some(ticket.value)
    }

    /// Drops the oldest ticket of the largest subnet of the largest site; false if empty.
    fn evict(&mut self) -> bool {
        let oldest = self
            .sites
            .largest()
            .and_then(|site| self.subnets.get(&site)?.largest())
            .and_then(|subnet| self.by_subnet.get(&subnet)?.values().next().cloned());
        oldest.is_some_and(|key| self.remove(&key).is_some())
    }

    pub(crate) fn drain_oldest_first(&mut self) -> Vec<SavedTicket> {
        let mut all: Vec<(u64, SavedTicket)> = self
            .tickets
            .drain()
            .map(|(key, t)| (t.seq, (t.subnet, key, t.value)))
            .collect();
        *self = Self {
            closed: self.closed,
            ..Self::default()
        };
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, t)| t).collect()
    }
}

impl StoresServerSessions for ServerSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.put_from(Subnet::UNKNOWN, key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let state = self.state.lock().ok()?;
        state.tickets.get(key).map(|t| t.value.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        // Memory only: the file never names a ticket of this run (see the module comment).
        self.state.lock().ok()?.remove(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The ticket store as one incoming connection sees it: what it issues is charged to the
/// client's subnet; what it takes may have been issued to any address (clients move).
struct ClientTickets {
    store: Arc<ServerSessions>,
    subnet: Subnet,
    /// Set when this connection's ClientHello took one of our tickets.
    taken: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for ClientTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTickets({:?})", self.subnet)
    }
}

impl StoresServerSessions for ClientTickets {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.store.put_from(self.subnet, key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let taken = self.store.take(key);
        if taken.is_some() {
            self.taken.store(true, std::sync::atomic::Ordering::Release);
        }
        taken
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Makes the server config of each incoming connection: the node's, with a ticket store view
/// that knows the client's address (a clone of the rustls config and two `Arc`s per
/// connection, next to a handshake's cost).
pub(crate) struct ServerConfigs {
    tls: rustls::ServerConfig,
    base: quinn::ServerConfig,
    sessions: Arc<ServerSessions>,
    /// Discovery bounds by route (none on a relayed endpoint, which does not discover).
    paths: Option<Arc<crate::route_mtu::PathTransports>>,
}

impl ServerConfigs {
    /// `tls` and `base` are the node's configs, both using `sessions`.
    pub(crate) fn new(
        tls: rustls::ServerConfig,
        base: quinn::ServerConfig,
        sessions: Arc<ServerSessions>,
        paths: Option<Arc<crate::route_mtu::PathTransports>>,
    ) -> Self {
        Self {
            tls,
            base,
            sessions,
            paths,
        }
    }

    /// Accepts `incoming` with a config whose tickets are charged to its address, and
    /// which keeps the handshake's exporter secret for the HELLO sent at 0.5-RTT and says
    /// whether the ClientHello took one of our tickets (neither when the node's own config
    /// had to be used).
    pub(crate) fn accept(
        &self,
        incoming: quinn::Incoming,
    ) -> Result<Accepted, quinn::ConnectionError> {
        let mut tls = self.tls.clone();
        let taken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tls.session_storage = Arc::new(ClientTickets {
            store: self.sessions.clone(),
            subnet: Subnet::of(incoming.remote_address().ip()),
            taken: taken.clone(),
        });
        let exporter = EarlyExporter::new();
        tls.key_log = exporter.clone();
        // It was accepted once for the node's own config, with the same provider.
        match quinn::crypto::rustls::QuicServerConfig::try_from(tls) {
            Ok(crypto) => {
                let mut config = self.base.clone();
                config.crypto = Arc::new(crypto);
                let route = self
                    .paths
                    .as_ref()
                    .map(|p| p.for_remote(incoming.remote_address()));
                if let Some(Ok(Some(transport))) = route {
                    config.transport_config(transport);
                }
                Ok((
                    incoming.accept_with(Arc::new(config))?,
                    Some((exporter, taken)),
                ))
            }
            Err(_) => Ok((incoming.accept()?, None)),
        }
    }
}

/// An accepted connection, with its exporter capture and "a ticket was taken" flag.
pub(crate) type Accepted = (
    quinn::Connecting,
    Option<(Arc<EarlyExporter>, Arc<std::sync::atomic::AtomicBool>)>,
);

#[cfg(test)]
mod tests {
    use super::super::file::{record, MAX_FILE, RECORD_HEAD};
    use super::*;
    use std::path::PathBuf;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("i6p-res-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn server_tickets_are_single_use_and_survive_a_restart() {
        let dir = scratch();
        let path = dir.join("tickets");
        let store = ServerSessions::persistent(path.clone());
        assert!(store.put(b"a".to_vec(), b"secret-a".to_vec()));
        assert!(store.put(b"b".to_vec(), b"secret-b".to_vec()));
        assert_eq!(store.take(b"a"), Some(b"secret-a".to_vec()));
        assert_eq!(store.take(b"a"), None);
        store.close();
        // Closed: the tickets belong to the next run now.
        assert_eq!(store.take(b"b"), None);
        assert!(!store.put(b"c".to_vec(), b"secret-c".to_vec()));
        drop(store);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = ServerSessions::persistent(path.clone());
        assert_eq!(again.take(b"a"), None, "a taken ticket must not come back");
        assert_eq!(again.take(b"b"), Some(b"secret-b".to_vec()));
        drop(again);
        let third = ServerSessions::persistent(path.clone());
        assert_eq!(third.len(), 0, "a ticket taken in the last run came back");
        drop(third);
        // A damaged file is ignored, not trusted and not fatal.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&record(Subnet::UNKNOWN, b"c", b"v"));
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let damaged = ServerSessions::persistent(path.clone());
        assert_eq!(damaged.len(), 0);
        assert!(damaged.put(b"d".to_vec(), b"v".to_vec()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_node_that_dies_without_closing_brings_no_ticket_back() {
        let dir = scratch();
        let path = dir.join("tickets");
        let first = ServerSessions::persistent(path.clone());
        assert!(first.put(b"a".to_vec(), b"secret-a".to_vec()));
        first.close();
        // The next run honours `a`, then is killed: its store is never closed or dropped.
        let second = ServerSessions::persistent(path.clone());
        assert_eq!(second.take(b"a"), Some(b"secret-a".to_vec()));
        assert!(second.put(b"b".to_vec(), b"secret-b".to_vec()));
        std::mem::forget(second);
        let third = ServerSessions::persistent(path.clone());
        assert_eq!(
            third.take(b"a"),
            None,
            "a ticket honoured before a crash came back"
        );
        assert_eq!(third.len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issuing_and_taking_tickets_never_touches_the_disk() {
        let dir = scratch();
        let path = dir.join("tickets");
        let store = ServerSessions::persistent(path.clone());
        let on_disk = std::fs::read(&path).unwrap();
        for i in 0..1000u32 {
            assert!(store.put(i.to_be_bytes().to_vec(), vec![7; 300]));
            if i % 2 == 0 {
                assert!(store.take(&i.to_be_bytes()).is_some());
            }
        }
        assert_eq!(std::fs::read(&path).unwrap(), on_disk);
        drop(store);
        assert_eq!(ServerSessions::persistent(path).len(), 500);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_saved_file_is_bounded() {
        let dir = scratch();
        let path = dir.join("tickets");
        let store = ServerSessions::persistent(path.clone());
        for i in 0..3 * MAX_SERVER_ENTRIES as u64 {
            assert!(store.put(i.to_be_bytes().to_vec(), vec![1; 64]));
        }
        store.close();
        let len = std::fs::metadata(&path).unwrap().len();
        let record = (RECORD_HEAD + 8 + 64 + 8) as u64;
        assert_eq!(len, 8 + MAX_SERVER_ENTRIES as u64 * record);
        assert!(len <= MAX_FILE);
        let again = ServerSessions::persistent(path.clone());
        assert_eq!(again.len(), MAX_SERVER_ENTRIES);
        // The newest were kept.
        let newest = (3 * MAX_SERVER_ENTRIES as u64 - 1).to_be_bytes();
        assert!(again.get(&newest).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn v6(s: &str) -> Subnet {
        Subnet::of(s.parse().unwrap())
    }

    #[test]
    fn subnets_and_sites_follow_the_address_plan() {
        assert_eq!(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("2001:db8:1:2::1").site(), v6("2001:db8:1:ff::1").site());
        assert_ne!(v6("2001:db8:1::1").site(), v6("2001:db8:2::1").site());
        assert_eq!(v6("::ffff:192.0.2.7"), v6("192.0.2.7"));
        assert_ne!(v6("192.0.2.7"), v6("192.0.2.8"));
        assert_eq!(v6("192.0.2.7").site(), v6("192.0.2.8").site());
        for s in [v6("2001:db8::1"), v6("192.0.2.1"), Subnet::UNKNOWN] {
            assert_eq!(Subnet::decode(&s.encode()), Some(s));
        }
        assert_eq!(Subnet::decode(&[4, 0, 0, 0, 1, 0, 0, 0, 0]), None);
    }

    /// Others' tickets: four each for 200 clients in different sites, both families.
    fn others(store: &ServerSessions) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        for c in 0..200u32 {
            let subnet = if c % 2 == 0 {
                v6(&format!("2001:db8:{c:x}::1"))
            } else {
                v6(&format!("198.51.{c}.1"))
            };
            for t in 0..4u32 {
                let key = format!("other-{c}-{t}").into_bytes();
                assert!(store.put_from(subnet, key.clone(), vec![1; 32]));
                keys.push(key);
            }
        }
        keys
    }

    /// A flood's description, and the address of its `i`th handshake.
    type Flood = (&'static str, fn(u32) -> String);

    #[test]
    fn a_flood_from_one_subnet_or_one_site_leaves_others_tickets_in_place() {
        let floods: [Flood; 4] = [
            ("one /64", |i| format!("2001:db8:ffff:1::{:x}", i % 0xffff)),
            ("one /48, a new /64 each time", |i| {
                format!("2001:db8:ffff:{:x}::1", i % 0xffff)
            }),
            ("one IPv4 address, mapped or not", |i| {
                if i % 2 == 0 {
                    "203.0.113.9"
                } else {
                    "::ffff:203.0.113.9"
                }
                .to_string()
            }),
            ("one /24", |i| format!("203.0.113.{}", i % 256)),
        ];
        for (what, addr) in floods {
            let store = ServerSessions::in_memory();
            let keys = others(&store);
            for i in 0..10 * MAX_SERVER_ENTRIES as u32 {
                let from = v6(&addr(i));
                assert!(store.put_from(from, i.to_be_bytes().to_vec(), vec![0; 32]));
            }
            assert_eq!(store.len(), MAX_SERVER_ENTRIES, "{what}");
            for key in &keys {
                assert!(store.get(key).is_some(), "{what}: evicted another's ticket");
            }
        }
    }

    #[test]
    fn a_full_store_takes_from_the_biggest_holder_first() {
        let store = ServerSessions::in_memory();
        // A client that let many tickets pile up gives back its oldest first.
        let heavy = v6("2001:db8:aaaa::1");
        for i in 0..MAX_SERVER_ENTRIES as u32 - 1 {
            assert!(store.put_from(heavy, i.to_be_bytes().to_vec(), vec![]));
        }
        assert!(store.put_from(v6("2001:db8:bbbb::1"), b"light".to_vec(), vec![]));
        assert!(store.put_from(v6("2001:db8:cccc::1"), b"new".to_vec(), vec![]));
        assert!(store.get(b"light").is_some() && store.get(b"new").is_some());
        assert!(store.get(&0u32.to_be_bytes()).is_none());
        assert!(store.get(&1u32.to_be_bytes()).is_some());
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
            let from = v6(&format!("2001:db8:{:x}::1", i % 5000));
            assert!(churn.put_from(from, i.to_be_bytes().to_vec(), vec![1]));
            assert!(churn.take(&i.to_be_bytes()).is_some());
        }
        let state = churn.state.lock().unwrap();
        assert!(state.tickets.is_empty() && state.by_subnet.is_empty());
        assert!(state.sites.is_empty() && state.subnets.is_empty());
    }
}
