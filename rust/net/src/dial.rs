//! Dialing a peer listed at several addresses (a ticket lists up to 16 per provider).
//!
//! The work is bounded whatever the list holds: at most [`MAX_DIAL_ADDRS`] distinct addresses
//! are tried, in the order given, at most [`MAX_PARALLEL_DIALS`] at once; the next one starts
//! when an attempt fails, or [`DIAL_STAGGER`] after the last start while a slot is free
//! (happy eyeballs). Each attempt sends QUIC Initials for at most the node's handshake
//! timeout, so a list of black holes costs about `addresses / 2 × handshake_timeout`; an
//! address the network refuses (ICMP unreachable, see `probe`) fails in a round trip.
//!
//! One bad address does not deny the peer: an address that is down, a black hole, or another
//! node (an attacker's, or a stale address now used by someone else) that proves a different
//! identity costs one attempt, and the others are still tried. When every attempt fails, the
//! most telling error is returned: a `PeerIdMismatch` over a peer that broke the protocol,
//! over one that did not answer.

use crate::error::{NetError, Result};
use crate::node::Node;
use crate::session::Session;
use i6p_core::PeerId;
use std::net::SocketAddr;
use std::time::Duration;

/// Addresses of one peer tried in one dial, at most (a ticket's limit).
pub const MAX_DIAL_ADDRS: usize = i6p_core::ticket::MAX_TICKET_ADDRS;
/// Attempts to one peer in flight at once.
pub const MAX_PARALLEL_DIALS: usize = 2;
/// Time after starting an attempt before the next address is tried alongside it.
pub const DIAL_STAGGER: Duration = Duration::from_millis(250);

impl Node {
    /// Connects to `peer` at the first of `addrs` to answer as `peer`, a few addresses at a
    /// time (bounds and the error returned: [`crate::dial`]).
    pub async fn connect_any(&self, peer: PeerId, addrs: &[SocketAddr]) -> Result<Session> {
        let session = connect_any(self, peer, addrs, false).await?;
        self.note_app_session(&session);
        Ok(session)
    }

    /// [`Self::connect_any`] for a session that carries transfers only (its HELLO says so);
    /// transfers get theirs through [`Node::transfer_session`].
    pub(crate) async fn dial_for_transfers(
        &self,
        peer: PeerId,
        addrs: &[SocketAddr],
    ) -> Result<Session> {
        connect_any(self, peer, addrs, true).await
    }
}

/// Connects to `peer` at the first of `addrs` to answer as `peer` (see the module's doc).
async fn connect_any(
    node: &Node,
    peer: PeerId,
    addrs: &[SocketAddr],
    transfer_only: bool,
) -> Result<Session> {
    if peer == node.peer_id() && !node.is_closed() {
        return Err(NetError::OwnPeerId(peer));
    }
    let mut seen = std::collections::HashSet::new();
    let mut pending = addrs
        .iter()
        .copied()
        .filter(|a| seen.insert(*a))
        .take(MAX_DIAL_ADDRS)
        .peekable();
    let mut running = tokio::task::JoinSet::new();
    let mut best: Option<NetError> = None;
    let mut last_start = tokio::time::Instant::now();
    // Each turn starts an attempt or ends one: at most 2 × MAX_DIAL_ADDRS turns.
    for _ in 0..2 * MAX_DIAL_ADDRS + 1 {
        let can_start = running.len() < MAX_PARALLEL_DIALS && pending.peek().is_some();
        if can_start && running.is_empty() {
            if let Some(addr) = pending.next() {
                last_start = start(&mut running, node, peer, addr, transfer_only);
            }
            continue;
        }
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                let e = match joined {
                    Ok(Ok(session)) => {
                        // The others are dropped with the set, which closes their connections.
                        return Ok(session);
                    }
                    Ok(Err(NetError::NodeClosed)) => return Err(NetError::NodeClosed),
                    Ok(Err(e)) => e,
                    Err(e) => NetError::Io(format!("dial task failed: {e}")),
                };
                if best.as_ref().is_none_or(|b| telling(&e) > telling(b)) {
                    best = Some(e);
                }
            }
            () = tokio::time::sleep_until(last_start + DIAL_STAGGER), if can_start => {
                if let Some(addr) = pending.next() {
                    last_start = start(&mut running, node, peer, addr, transfer_only);
                }
            }
        }
    }
    Err(best.unwrap_or_else(|| NetError::Handshake("no address to dial".into())))
}

fn start(
    running: &mut tokio::task::JoinSet<Result<Session>>,
    node: &Node,
    peer: PeerId,
    addr: SocketAddr,
    transfer_only: bool,
) -> tokio::time::Instant {
    let node = node.clone();
    running.spawn(async move { node.connect_with(peer, addr, transfer_only).await });
    tokio::time::Instant::now()
}

/// How much an error says about the peer's addresses: someone answering as another
/// identity is the most telling (an attack, or a stale ticket), then a peer that answered
/// but broke the protocol, then silence.
fn telling(e: &NetError) -> u8 {
    match e {
        NetError::PeerIdMismatch { .. } => 3,
        NetError::Protocol(_)
        | NetError::Core(_)
        | NetError::ConnectionLost { .. }
        | NetError::Busy(_) => 2,
        NetError::Handshake(_) | NetError::Unreachable(_) | NetError::Tls(_) => 1,
        _ => 0,
    }
}
