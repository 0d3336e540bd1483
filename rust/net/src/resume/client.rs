//! The dialer's resumption tickets, filed under the PeerId a dial required (see the parent
//! module): a ticket is only ever offered to a dial that requires the peer that issued it.
//! Bounded: [`MAX_PEERS`] peers, least recently used first out, [`TICKETS_PER_PEER`] each.

use super::{parse_dial_name, MAX_PEERS, TICKETS_PER_PEER};
use i6p_core::{PeerId, PublicKey};
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

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
