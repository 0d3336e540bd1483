//! The BitTorrent Mainline DHT as a discovery source (BEP 44 mutable items, through the
//! `mainline` crate, which runs its own thread): a node publishes a signed
//! [`DhtRecord`] under its Ed25519 public key, and anyone who knows the key resolves it.
//!
//! Signing: `mainline` brings ed25519-dalek 3.0-pre, not ours, so our secret key is never
//! handed to it; [`Identity::sign`] signs BEP 44's signable form ([`signable`]: mainline
//! 8.0.1 keeps its own `encode_signable` private) and the item is built from that signature.
//! DHT nodes check it with mainline's encoding, so a publish that is stored proves the two
//! agree.
//!
//! Sequence numbers: the issue time in microseconds, never at or below the last one this
//! client published or saw for its key, so they grow across restarts (a clock set back is
//! met by asking the DHT for the latest first).
//!
//! Resolving trusts nothing it gets: `mainline` drops items whose signature or target is
//! wrong; [`verify_item`] checks them again with our own key type, then the value's format
//! and validity window. Any rejected item is dropped with a debug log. A resolve reads at
//! most [`MAX_RESOLVE_ITEMS`] answers for at most [`RESOLVE_TIMEOUT`], keeps only the best
//! one, and never returns a seq lower than one it returned before for that key.
//!
//! The crate's DHT traffic is IPv4 only; records may still carry IPv6 addresses.

use crate::error::{NetError, Result};
use i6p_core::dht_record::DhtRecord;
use i6p_core::{CoreError, Identity, PublicKey};
use mainline::async_dht::AsyncDht;
use mainline::errors::{ConcurrencyError, PutMutableError};
use mainline::MutableItem;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many answers are read by one resolve (one per DHT node that holds the item).
pub const MAX_RESOLVE_ITEMS: usize = 64;
/// A resolve gives up after this long.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(15);
/// A publish gives up after this long.
///
/// Resolves and publishes wait for mainline's query to end, which is when every request in
/// it is answered or timed out (the request timeout, 2 s by default): on local testnets a
/// query often has one request that is never answered and then takes about that long,
/// otherwise about 0.1 s. Answering at the first good item would be faster but returned an
/// older seq in our tests, so the way round is a shorter request timeout
/// ([`REQUEST_TIMEOUTS`]) where peers answer quickly.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The request timeouts a client accepts: below 50 ms even a LAN answer can miss it; above
/// 10 s a lost request holds a query for longer than anyone waits.
pub const REQUEST_TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(50)..=Duration::from_secs(10);
/// Keys whose highest seen seq is remembered (beyond it, one is forgotten at random).
pub const MAX_SEEN_KEYS: usize = 4096;
/// At most this many bootstrap addresses.
pub const MAX_BOOTSTRAP: usize = 64;
const WHAT: &str = "dht record";

/// A record found in the DHT, signed by the key it was asked for and valid now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The key it was found under (and signed by).
    pub key: PublicKey,
    /// Its BEP 44 sequence number.
    pub seq: i64,
    /// Its value.
    pub record: DhtRecord,
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// BEP 44's signed form of an unsalted item: the bencoded `seq` and `v` entries, without
/// the enclosing dictionary (`3:seqi<seq>e1:v<len>:<value>`).
pub fn signable(seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = format!("3:seqi{seq}e1:v{}:", value.len()).into_bytes();
    out.extend_from_slice(value);
    out
}

/// The BEP 44 item carrying `value` under `identity`'s key, signed by it (no salt).
pub fn sign_item(identity: &Identity, value: &[u8], seq: i64) -> MutableItem {
    let signable = signable(seq, value);
    let signature = identity.sign(&signable);
    MutableItem::new_signed_unchecked(
        identity.public_key().to_bytes(),
        signature,
        value,
        seq,
        None,
    )
}

/// The record in `item`, if `item` is under `expected`, signed by it, well formed and valid
/// at `now` (unix seconds).
pub fn verify_item(
    expected: &PublicKey,
    item: &MutableItem,
    now: u64,
) -> i6p_core::Result<DhtRecord> {
    if item.key() != &expected.to_bytes() {
        return Err(CoreError::BadSignature("dht record: another key"));
    }
    if item.salt().is_some() {
        return Err(CoreError::Malformed {
            what: WHAT,
            detail: "salted item".into(),
        });
    }
    let signable = signable(item.seq(), item.value());
    if !expected.verify(&signable, item.signature()) {
        return Err(CoreError::BadSignature(WHAT));
    }
    let record = DhtRecord::decode(item.value())?;
    record.check_time(now)?;
    Ok(record)
}

/// The bootstrap list as socket addresses, bounded; true when all of them are loopback.
fn bootstrap_addrs(bootstrap: &[String]) -> Result<(Vec<String>, bool)> {
    if bootstrap.len() > MAX_BOOTSTRAP {
        return Err(NetError::Config(format!(
            "{} DHT bootstrap nodes (at most {MAX_BOOTSTRAP})",
            bootstrap.len()
        )));
    }
    let mut all_loopback = !bootstrap.is_empty();
    for entry in bootstrap {
        let addrs: Vec<SocketAddr> = entry
            .to_socket_addrs()
            .map_err(|e| NetError::Config(format!("DHT bootstrap node {entry:?}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(NetError::Config(format!(
                "DHT bootstrap node {entry:?}: no address"
            )));
        }
        all_loopback &= addrs.iter().all(|a| a.ip().is_loopback());
    }
    Ok((bootstrap.to_vec(), all_loopback))
}

struct State {
    /// The seq this client last published (or saw) for its own key.
    last_seq: Option<i64>,
    /// The highest seq resolved per key, so an older record is not taken back.
    seen: HashMap<[u8; 32], i64>,
}

/// A Mainline DHT client (client mode: it answers no queries and stores nothing for others).
pub struct Dht {
    client: Mutex<Option<AsyncDht>>,
    identity: Identity,
    state: Mutex<State>,
    /// One publish at a time: mainline refuses concurrent puts of one key with different seqs.
    publishing: tokio::sync::Mutex<()>,
}

impl Dht {
    /// A client bootstrapping from `bootstrap` (`host:port` entries) only; an empty list
    /// means mainline's public bootstrap nodes. When every bootstrap node is on loopback the
    /// client binds to 127.0.0.1, so a local testnet keeps all its traffic on the machine.
    /// `request_timeout` (within [`REQUEST_TIMEOUTS`]; None: mainline's 2 s) is how long
    /// each DHT request waits for its answer, which sets how long a lookup takes when a
    /// DHT node does not answer.
    pub fn start(
        identity: Identity,
        bootstrap: &[String],
        request_timeout: Option<Duration>,
    ) -> Result<Self> {
        let (bootstrap, local) = bootstrap_addrs(bootstrap)?;
        let mut builder = mainline::Dht::builder();
        if let Some(timeout) = request_timeout {
            if !REQUEST_TIMEOUTS.contains(&timeout) {
                return Err(NetError::Config(format!(
                    "DHT request timeout {timeout:?} (50 ms to 10 s)"
                )));
            }
            builder.request_timeout(timeout);
        }
        if !bootstrap.is_empty() {
            builder.bootstrap(&bootstrap);
        }
        if local {
            builder.bind_address(Ipv4Addr::LOCALHOST);
        }
        let dht = builder
            .build()
            .map_err(|e| NetError::Io(format!("DHT client: {e}")))?;
        Ok(Self {
            client: Mutex::new(Some(dht.as_async())),
            identity,
            state: Mutex::new(State {
                last_seq: None,
                seen: HashMap::new(),
            }),
            publishing: tokio::sync::Mutex::new(()),
        })
    }

    fn client(&self) -> Result<AsyncDht> {
        self.client
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or(NetError::NodeClosed)
    }

    /// Stops the client (its thread ends once in-flight calls return).
    pub fn shutdown(&self) {
        if let Ok(mut c) = self.client.lock() {
            c.take();
        }
    }

    /// The UDP address the client uses.
    pub async fn local_addr(&self) -> Result<SocketAddr> {
        Ok(SocketAddr::V4(self.client()?.info().await.local_addr()))
    }

    /// Publishes `record` under this node's key with a seq above every one used or seen
    /// for it; returns the seq.
    pub async fn publish(&self, record: &DhtRecord) -> Result<i64> {
        let _one = self.publishing.lock().await;
        let client = self.client()?;
        let value = record.encode();
        if self.last_seq().is_none() {
            self.learn_own_seq(&client).await;
        }
        for attempt in 0..2 {
            let seq = self.next_seq();
            let item = sign_item(&self.identity, &value, seq);
            let put = tokio::time::timeout(PUBLISH_TIMEOUT, client.put_mutable(item, None));
            match put.await {
                Ok(Ok(outcome)) => {
                    tracing::debug!(seq, stored_at = outcome.stored_at, "DHT record published");
                    return Ok(seq);
                }
                // Someone (this key's previous run) holds a higher seq: learn it, go above.
                Ok(Err(PutMutableError::Concurrency(ConcurrencyError::NotMostRecent)))
                    if attempt == 0 =>
                {
                    self.learn_own_seq(&client).await;
                }
                Ok(Err(e)) => return Err(NetError::Unreachable(format!("DHT publish: {e}"))),
                Err(_) => return Err(NetError::Timeout("DHT publish".into())),
            }
        }
        Err(NetError::Unreachable(
            "DHT publish: the DHT keeps a newer record for this key".into(),
        ))
    }

    fn last_seq(&self) -> Option<i64> {
        self.state.lock().ok().and_then(|s| s.last_seq)
    }

    /// The issue time in microseconds, or one above the last seq, whichever is higher.
    fn next_seq(&self) -> i64 {
        let now = unix_micros();
        let Ok(mut state) = self.state.lock() else {
            return now;
        };
        let seq = match state.last_seq {
            Some(last) if last >= now => last.saturating_add(1),
            _ => now,
        };
        state.last_seq = Some(seq);
        seq
    }

    /// Takes the highest seq the DHT holds for this node's own key (any value).
    async fn learn_own_seq(&self, client: &AsyncDht) {
        let key = self.identity.public_key().to_bytes();
        let latest =
            tokio::time::timeout(RESOLVE_TIMEOUT, client.get_mutable_most_recent(&key, None))
                .await
                .ok()
                .flatten();
        if let (Some(item), Ok(mut state)) = (latest, self.state.lock()) {
            state.last_seq = Some(state.last_seq.unwrap_or(i64::MIN).max(item.seq()));
        }
    }

    /// The newest valid record signed by `key`, or None when the DHT has none (or only
    /// forged, malformed, expired or older ones than this client returned before).
    pub async fn resolve(&self, key: &PublicKey) -> Result<Option<Resolved>> {
        use futures_lite::StreamExt;
        let client = self.client()?;
        let bytes = key.to_bytes();
        let floor = self.seen(&bytes);
        let mut items = client.get_mutable(&bytes, None, floor.map(|s| s.saturating_sub(1)));
        let now = unix_now();
        let mut best: Option<Resolved> = None;
        let deadline = tokio::time::Instant::now() + RESOLVE_TIMEOUT;
        for _ in 0..MAX_RESOLVE_ITEMS {
            let Ok(Some(item)) = tokio::time::timeout_at(deadline, items.next()).await else {
                break;
            };
            if best.as_ref().is_some_and(|b| b.seq >= item.seq()) {
                continue;
            }
            match verify_item(key, &item, now) {
                Ok(record) => {
                    best = Some(Resolved {
                        key: *key,
                        seq: item.seq(),
                        record,
                    })
                }
                Err(e) => tracing::debug!(seq = item.seq(), "DHT item rejected: {e}"),
            }
        }
        Ok(best.filter(|b| self.note_seen(&bytes, b.seq)))
    }

    fn seen(&self, key: &[u8; 32]) -> Option<i64> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.seen.get(key).copied())
    }

    /// Records `seq` for `key`; false when a higher one was returned before.
    fn note_seen(&self, key: &[u8; 32], seq: i64) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        if state.seen.get(key).is_some_and(|&s| s > seq) {
            tracing::debug!(seq, "DHT record older than one resolved before; ignored");
            return false;
        }
        if state.seen.len() >= MAX_SEEN_KEYS && !state.seen.contains_key(key) {
            let victim = state.seen.keys().next().copied();
            if let Some(v) = victim {
                state.seen.remove(&v);
            }
        }
        state.seen.insert(*key, seq);
        true
    }
}

/// At most this many nodes in a [`LocalTestnet`].
pub const MAX_TESTNET_NODES: usize = 1000;

/// A DHT of its own on 127.0.0.1 (`mainline::Testnet`, server nodes with full routing
/// tables), for trying discovery offline and for tests; it runs while this value lives.
pub struct LocalTestnet(mainline::Testnet);

impl LocalTestnet {
    /// Starts `nodes` DHT nodes (2 to [`MAX_TESTNET_NODES`]) on 127.0.0.1; blocks meanwhile.
    pub fn start(nodes: usize) -> Result<Self> {
        if !(2..=MAX_TESTNET_NODES).contains(&nodes) {
            return Err(NetError::Config(format!(
                "a testnet of {nodes} nodes (2 to {MAX_TESTNET_NODES})"
            )));
        }
        mainline::Testnet::builder(nodes)
            .bind_address(Ipv4Addr::LOCALHOST)
            .build()
            .map(Self)
            .map_err(|e| NetError::Io(format!("DHT testnet: {e}")))
    }

    /// Every node's `127.0.0.1:port`, to bootstrap from.
    pub fn bootstrap(&self) -> &[String] {
        &self.0.bootstrap
    }
}

#[cfg(test)]
#[path = "dht_tests.rs"]
mod tests;
