//! Reaching a peer through the rendezvous nodes a ticket or a DHT record names: each in turn
//! becomes the coordinator of an introduction (and the relay, if it relays) through
//! [`Node::connect_to`]. A fetch takes the session so made for its transfer.
//!
//! For a fetch, the session made through a contact is for transfers only, as one dialed at
//! the ticket's addresses: the introduction says so (CONNECT's `transfers` flag), so the
//! provider's application never gets it from `accept`, whichever side dials.

use super::punch::DIRECT_FIRST;
use super::{Node, TransferLease};
use crate::error::{NetError, Result};
use crate::session::Session;
use i6p_core::contact::Contact;
use i6p_core::PeerId;
use std::net::SocketAddr;

impl Node {
    /// A session for a transfer from `peer`, which a ticket says is reached at `addrs` or
    /// through `contacts`, its rendezvous nodes: a transfer session at the addresses when
    /// one answers within [`DIRECT_FIRST`] (a filtered address is a black hole that would
    /// hold the whole handshake timeout), else a session through each contact in turn.
    pub async fn transfer_session_via(
        &self,
        peer: PeerId,
        addrs: &[SocketAddr],
        contacts: &[Contact],
    ) -> Result<TransferLease> {
        if contacts.is_empty() {
            return self.transfer_session(peer, addrs).await;
        }
        let mut tried = Vec::new();
        if !addrs.is_empty() {
            match tokio::time::timeout(DIRECT_FIRST, self.transfer_session(peer, addrs)).await {
                Ok(Ok(lease)) => return Ok(lease),
                Ok(Err(e @ NetError::NodeClosed)) => return Err(e),
                Ok(Err(e)) => tried.push(format!("the ticket's addresses ({e})")),
                Err(_) => tried.push(format!(
                    "the ticket's addresses (no answer within {DIRECT_FIRST:?})"
                )),
            }
        }
        self.lease_via_contacts(peer, contacts, tried, "its ticket's rendezvous nodes")
            .await
    }

    /// A transfer session to `peer` made through `contacts` (see
    /// [`Self::connect_via_contacts`]), leased for a transfer.
    pub(super) async fn lease_via_contacts(
        &self,
        peer: PeerId,
        contacts: &[Contact],
        tried: Vec<String>,
        source: &str,
    ) -> Result<TransferLease> {
        let session = self
            .connect_via_contacts((peer, true), contacts, tried, source)
            .await?;
        // The transfer leases the session just made (the node lists it as live).
        let lease = self.transfer_session(peer, &[]).await;
        drop(session);
        lease
    }

    /// Connects to `peer` through each of `contacts` (a live session to the contact, or one
    /// made at its addresses) as coordinator, and relay if it relays, by
    /// [`Node::connect_to`] (for `transfers` only, or not). `tried` says what failed
    /// before, and `source` where the contacts came from, for the error.
    pub(super) async fn connect_via_contacts(
        &self,
        (peer, transfers): (PeerId, bool),
        contacts: &[Contact],
        mut tried: Vec<String>,
        source: &str,
    ) -> Result<Session> {
        for contact in contacts {
            if contact.peer_id == peer || contact.peer_id == self.peer_id() {
                continue;
            }
            let via = match self.inner.live.any_session(&contact.peer_id) {
                Some(via) => via,
                None => match self.connect_any(contact.peer_id, &contact.addrs).await {
                    Ok(via) => via,
                    Err(e @ NetError::NodeClosed) => return Err(e),
                    Err(e) => {
                        tried.push(format!("contact {} ({e})", contact.peer_id.short()));
                        continue;
                    }
                },
            };
            match self.connect_to_as(peer, &[], Some(&via), transfers).await {
                Ok(session) => return Ok(session),
                Err(e @ NetError::NodeClosed) => return Err(e),
                Err(e) => tried.push(format!("via {} ({e})", contact.peer_id.short())),
            }
        }
        if tried.is_empty() {
            tried.push("nothing: no address and no contact".into());
        }
        Err(NetError::Unreachable(format!(
            "peer {} not reached from {source}; tried: {}",
            peer.short(),
            tried.join("; ")
        )))
    }
}
