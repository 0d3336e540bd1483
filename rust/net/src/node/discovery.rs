//! Reaching a peer by its identity alone: the node's address book, then mDNS, then (by its
//! public key) the Mainline DHT (see [`crate::discovery`]). Also the node's DHT publisher:
//! it publishes the node's record at start, again whenever what the record says changes
//! (checked every [`DHT_CHECK`]), and every [`DHT_REPUBLISH`] before DHT nodes forget it.

use super::{Node, NodeConfig, NodeInner, TransferLease};
use crate::discovery::{Dht, Mdns, Resolved};
use crate::error::{NetError, Result};
use crate::session::Session;
use i6p_core::contact::Contact;
use i6p_core::dht_record::DhtRecord;
use i6p_core::{Identity, PeerId, PublicKey};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// How long `connect_by_id` listens on the LAN for a peer nothing else knows.
pub const MDNS_PATIENCE: Duration = Duration::from_secs(3);
/// How often the publisher looks whether the record would say something new.
pub const DHT_CHECK: Duration = Duration::from_secs(5);
/// A record unchanged is published again this often (BEP 44 nodes drop items after about
/// two hours).
pub const DHT_REPUBLISH: Duration = Duration::from_secs(30 * 60);
/// How long a published record holds (seconds): past it, resolvers drop it.
pub const DHT_VALIDITY_SECS: u32 = 2 * 3600;
/// After failed publishes, the publisher waits up to this long before trying again.
const DHT_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The node's DHT client, the contacts its record names, and the task that publishes it.
pub(super) struct DhtPart {
    client: Dht,
    contacts: Mutex<Vec<Contact>>,
    changed: Notify,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The seq of the last record published.
    published: Mutex<Option<i64>>,
}

/// The node's DHT client, when `config.dht` asks for one (the publisher starts with
/// [`spawn_dht`], once the node exists).
pub(super) fn start_dht(identity: &Identity, config: &NodeConfig) -> Result<Option<Arc<DhtPart>>> {
    if !config.dht {
        return Ok(None);
    }
    Ok(Some(Arc::new(DhtPart {
        client: Dht::start(
            identity.clone(),
            &config.dht_bootstrap,
            config.dht_request_timeout,
        )?,
        contacts: Mutex::new(config.dht_contacts.clone()),
        changed: Notify::new(),
        task: Mutex::new(None),
        published: Mutex::new(None),
    })))
}

/// Starts the node's DHT publisher.
pub(super) fn spawn_dht(node: &Node) {
    if let Some(part) = &node.inner.dht {
        let task = tokio::spawn(publish_loop(Arc::downgrade(&node.inner), part.clone()));
        if let Ok(mut t) = part.task.lock() {
            *t = Some(task);
        }
    }
}

/// Stops the node's discovery: mDNS announcements and the DHT client and publisher.
pub(super) fn stop(inner: &NodeInner) {
    if let Some(mdns) = &inner.mdns {
        mdns.shutdown();
    }
    if let Some(part) = &inner.dht {
        if let Some(task) = part.task.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
        part.client.shutdown();
    }
}

/// Publishes the node's record now, when it changes, and every [`DHT_REPUBLISH`]; ends when
/// the node is gone or closed.
async fn publish_loop(node: Weak<NodeInner>, part: Arc<DhtPart>) {
    let mut last: Option<(DhtRecord, tokio::time::Instant)> = None;
    let mut failures = 0u32;
    loop {
        let Some(inner) = node.upgrade() else { return };
        let record = Node { inner }.dht_record(&part);
        let due = last
            .as_ref()
            .is_none_or(|(prev, at)| !same_claims(prev, &record) || at.elapsed() >= DHT_REPUBLISH);
        let mut pause = DHT_CHECK;
        if due {
            match part.client.publish(&record).await {
                Ok(seq) => {
                    failures = 0;
                    if let Ok(mut p) = part.published.lock() {
                        *p = Some(seq);
                    }
                    last = Some((record, tokio::time::Instant::now()));
                }
                Err(NetError::NodeClosed) => return,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    pause = (DHT_CHECK * 2u32.saturating_pow(failures.min(8))).min(DHT_MAX_BACKOFF);
                    tracing::debug!("DHT publish failed ({e}); again in {pause:?}");
                }
            }
        }
        tokio::select! {
            _ = part.changed.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Whether two records say the same (their issue times aside).
fn same_claims(a: &DhtRecord, b: &DhtRecord) -> bool {
    (a.protocol, a.relay, &a.addrs, &a.contacts) == (b.protocol, b.relay, &b.addrs, &b.contacts)
}

/// The node's mDNS announcer and listener, when `config.mdns` asks for one.
pub(super) fn start_mdns(
    identity: &Identity,
    endpoint: &quinn::Endpoint,
    config: &NodeConfig,
) -> Result<Option<Arc<Mdns>>> {
    if !config.mdns {
        return Ok(None);
    }
    let port = endpoint.local_addr()?.port();
    Mdns::start(identity.public_key(), port).map(Some)
}

impl Node {
    /// Tells the address book where `peer` can be reached (hints: TLS still checks the
    /// identity at whatever address is dialed); returns how many addresses were kept (an
    /// unspecified or multicast address, or port 0, is not).
    pub fn add_addrs(&self, peer: PeerId, addrs: &[SocketAddr]) -> usize {
        self.inner.book.add(peer, addrs)
    }

    /// What the address book knows of `peer`, most recently seen first.
    pub fn known_addrs(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.inner.book.addrs(peer)
    }

    /// Forgets what the address book knows of `peer`; true if it knew something.
    pub fn forget_addrs(&self, peer: &PeerId) -> bool {
        self.inner.book.forget(peer)
    }

    /// Connects to the peer whose public key is `key`: as [`Self::connect_by_id`], then,
    /// when the node takes part in the DHT and that found nothing that answered, through
    /// the peer's DHT record (see [`Self::connect_by_record`]).
    pub async fn connect_by_key(&self, key: PublicKey) -> Result<Session> {
        let Some(part) = self.inner.dht.clone() else {
            return self.connect_by_id(key.peer_id()).await;
        };
        let first = match self.connect_by_id(key.peer_id()).await {
            Ok(session) => return Ok(session),
            Err(e @ (NetError::NodeClosed | NetError::OwnPeerId(_))) => return Err(e),
            Err(NetError::NotFound(_)) => None,
            Err(e) => Some(e.to_string()),
        };
        let found = record_of(&part, &key, first).await?;
        self.connect_by_record(&found).await
    }

    /// A session for a transfer from the peer a key ticket names (`key`, or only `peer` for
    /// a ticket by PeerId), found as [`Self::connect_by_key`] finds it. Dialed at an address
    /// or made through a contact, it is a transfer session, which the peer's application
    /// never sees (see [`Self::transfer_session`]).
    pub async fn transfer_session_by_discovery(
        &self,
        peer: PeerId,
        key: Option<PublicKey>,
    ) -> Result<TransferLease> {
        let addrs = self.discover_addrs(&peer).await?;
        let dht = key.zip(self.inner.dht.clone());
        let first = match addrs.is_empty() {
            true => None,
            false => match self.transfer_session(peer, &addrs).await {
                Ok(lease) => return Ok(lease),
                Err(e @ NetError::NodeClosed) => return Err(e),
                Err(e) if dht.is_none() => return Err(e),
                Err(e) => Some(e.to_string()),
            },
        };
        let Some((key, part)) = dht else {
            return Err(not_found(&peer));
        };
        let found = record_of(&part, &key, first).await?;
        let mut tried = Vec::new();
        if !found.record.addrs.is_empty() {
            match self.transfer_session(peer, &found.record.addrs).await {
                Ok(lease) => return Ok(lease),
                Err(e @ NetError::NodeClosed) => return Err(e),
                Err(e) => tried.push(format!("the record's addresses ({e})")),
            }
        }
        self.lease_via_contacts(peer, &found.record.contacts, tried, "its DHT record")
            .await
    }

    /// Connects to the peer whose record `found` is: at the addresses it lists, then through
    /// each contact it names (see [`Self::connect_via_contacts`]).
    pub async fn connect_by_record(&self, found: &Resolved) -> Result<Session> {
        let mut tried = Vec::new();
        if !found.record.addrs.is_empty() {
            let peer = found.key.peer_id();
            match self.connect_to(peer, &found.record.addrs, None).await {
                Ok(session) => return Ok(session),
                Err(e @ (NetError::NodeClosed | NetError::OwnPeerId(_))) => return Err(e),
                Err(e) => tried.push(format!("the record's addresses ({e})")),
            }
        }
        let peer = found.key.peer_id();
        let contacts = &found.record.contacts;
        self.connect_via_contacts((peer, false), contacts, tried, "its DHT record")
            .await
    }

    /// What the DHT holds for `key`: its newest record signed by that key and valid now, or
    /// None. Fails with [`NetError::Config`] when the node does not take part in the DHT.
    pub async fn dht_lookup(&self, key: &PublicKey) -> Result<Option<Resolved>> {
        self.ensure_open()?;
        self.dht_part()?.client.resolve(key).await
    }

    /// Publishes this node's DHT record now (the publisher also does, at start and on
    /// change); returns its seq.
    pub async fn dht_publish(&self) -> Result<i64> {
        self.ensure_open()?;
        let part = self.dht_part()?;
        let seq = part.client.publish(&self.dht_record(part)).await?;
        if let Ok(mut p) = part.published.lock() {
            *p = Some(seq);
        }
        Ok(seq)
    }

    /// The seq of the last record this node published in the DHT (None before the first).
    pub fn dht_published(&self) -> Option<i64> {
        let part = self.inner.dht.as_ref()?;
        part.published.lock().ok().and_then(|p| *p)
    }

    /// Replaces the contacts the DHT record names (at most
    /// [`i6p_core::dht_record::MAX_RECORD_CONTACTS`] are published); the record is
    /// published again at once.
    pub fn set_dht_contacts(&self, contacts: Vec<Contact>) -> Result<()> {
        let part = self.dht_part()?;
        if let Ok(mut c) = part.contacts.lock() {
            *c = contacts;
        }
        part.changed.notify_one();
        Ok(())
    }

    fn dht_part(&self) -> Result<&DhtPart> {
        self.inner.dht.as_deref().ok_or_else(|| {
            NetError::Config("this node does not take part in the DHT (NodeConfig::dht)".into())
        })
    }

    /// What this node's DHT record says now: its protocol, whether it relays, its contacts,
    /// and its reachable addresses only if `publish_addrs`.
    fn dht_record(&self, part: &DhtPart) -> DhtRecord {
        let config = &self.inner.config;
        let mut record = DhtRecord::new(crate::discovery::dht::unix_now(), DHT_VALIDITY_SECS);
        record.relay = config.relay;
        if config.publish_addrs {
            record.addrs = self.reachable_addrs().unwrap_or_default();
        }
        record.contacts = part.contacts.lock().map(|c| c.clone()).unwrap_or_default();
        record
    }

    /// Where the LAN heard `peer` announce itself (empty without mDNS).
    pub fn mdns_addrs(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.inner
            .mdns
            .as_ref()
            .map(|m| m.addrs(peer))
            .unwrap_or_default()
    }

    /// Connects to `peer` at the addresses the address book knows, then those it announced
    /// on the LAN (waiting up to [`MDNS_PATIENCE`] to hear it when nothing is known), a few
    /// at a time as [`Node::connect_any`]. Fails with [`NetError::NotFound`] when no source
    /// knows an address.
    pub async fn connect_by_id(&self, peer: PeerId) -> Result<Session> {
        let addrs = self.discover_addrs(&peer).await?;
        if addrs.is_empty() {
            return Err(not_found(&peer));
        }
        self.connect_to(peer, &addrs, None).await
    }

    /// Where `peer` may be, by the address book, then by mDNS (listening up to
    /// [`MDNS_PATIENCE`] when the book knows nothing): hints, most recent first.
    pub async fn discover_addrs(&self, peer: &PeerId) -> Result<Vec<SocketAddr>> {
        self.ensure_open()?;
        if *peer == self.peer_id() {
            return Err(NetError::OwnPeerId(*peer));
        }
        let mut addrs = self.known_addrs(peer);
        if let Some(mdns) = &self.inner.mdns {
            let heard = match addrs.is_empty() {
                true => mdns.wait_for(peer, MDNS_PATIENCE).await,
                false => mdns.addrs(peer),
            };
            addrs.extend(
                heard
                    .into_iter()
                    .filter(|a| !addrs.contains(a))
                    .collect::<Vec<_>>(),
            );
        }
        Ok(addrs)
    }
}

fn not_found(peer: &PeerId) -> NetError {
    NetError::NotFound(format!(
        "no address known for peer {}: give one (connect, add_addrs) or meet it once",
        peer.short()
    ))
}

/// `key`'s DHT record; when it has none, the error says so, after `first` (what the book and
/// mDNS gave, if they gave anything).
async fn record_of(part: &DhtPart, key: &PublicKey, first: Option<String>) -> Result<Resolved> {
    match part.client.resolve(key).await? {
        Some(found) => Ok(found),
        None => Err(match first {
            Some(e) => NetError::Unreachable(format!("{e}; the DHT has no record of it")),
            None => NetError::NotFound(format!(
                "no address known for peer {} and no DHT record of it",
                key.peer_id().short()
            )),
        }),
    }
}
