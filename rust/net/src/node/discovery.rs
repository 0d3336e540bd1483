//! Reaching a peer by its PeerId alone: the node's address book, then mDNS (see
//! [`crate::discovery`]).

use super::{Node, NodeConfig};
use crate::discovery::Mdns;
use crate::error::{NetError, Result};
use crate::session::Session;
use i6p_core::{Identity, PeerId, PublicKey};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long `connect_by_id` listens on the LAN for a peer nothing else knows.
pub const MDNS_PATIENCE: Duration = Duration::from_secs(3);

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

    /// Connects to the peer whose public key is `key`, by [`Self::connect_by_id`]: the key
    /// is what the sources that need more than its PeerId (a DHT record is found by the key)
    /// will look it up by.
    pub async fn connect_by_key(&self, key: PublicKey) -> Result<Session> {
        self.connect_by_id(key.peer_id()).await
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
        self.ensure_open()?;
        if peer == self.peer_id() {
            return Err(NetError::OwnPeerId(peer));
        }
        let mut addrs = self.known_addrs(&peer);
        if let Some(mdns) = &self.inner.mdns {
            let heard = match addrs.is_empty() {
                true => mdns.wait_for(&peer, MDNS_PATIENCE).await,
                false => mdns.addrs(&peer),
            };
            addrs.extend(
                heard
                    .into_iter()
                    .filter(|a| !addrs.contains(a))
                    .collect::<Vec<_>>(),
            );
        }
        if addrs.is_empty() {
            return Err(NetError::NotFound(format!(
                "no address known for peer {}: give one (connect, add_addrs) or meet it once",
                peer.short()
            )));
        }
        self.connect_to(peer, &addrs, None).await
    }
}
