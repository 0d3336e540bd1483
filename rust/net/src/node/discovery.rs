//! Reaching a peer by its PeerId alone: the node's address book (see [`crate::discovery`]).

use super::Node;
use crate::error::{NetError, Result};
use crate::session::Session;
use i6p_core::PeerId;
use std::net::SocketAddr;

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

    /// Connects to `peer` at the addresses the address book knows (a few at a time, as
    /// [`Node::connect_any`]). Fails with [`NetError::NotFound`] when it knows none.
    pub async fn connect_by_id(&self, peer: PeerId) -> Result<Session> {
        self.ensure_open()?;
        if peer == self.peer_id() {
            return Err(NetError::OwnPeerId(peer));
        }
        let addrs = self.known_addrs(&peer);
        if addrs.is_empty() {
            return Err(NetError::NotFound(format!(
                "no address known for peer {}: give one (connect, add_addrs) or meet it once",
                peer.short()
            )));
        }
        self.connect_to(peer, &addrs, None).await
    }
}
