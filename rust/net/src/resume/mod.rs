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
//!
//! Bounded fairly: identities cost an attacker nothing, so tickets are charged to the client's
//! address instead, which it must own to complete a handshake (tickets are issued only after
//! the client's Finished). rustls' `put` does not see the address, so each incoming
//! connection gets its own server config ([`ServerConfigs`]) whose store view knows it. When
//! the store is full, the site (IPv6 /48, IPv4 /24) holding the most tickets gives up one, from
//! its subnet (/64, /32; IPv4-mapped counts as IPv4) holding the most, oldest first. A flood
//! from one subnet, or one site, thus evicts its own tickets and nobody else's.
//!
//! Across restarts: with a state directory the tickets are written to a file (mode 0600) when
//! the node closes, and read back on the next start. The TLS callbacks touch memory only, and
//! single use survives restarts without an fsync per resumption: on start, the file is
//! replaced durably by an empty one *before* any ticket is honoured, so at any moment the file
//! on disk names only tickets nobody took. A node that dies without closing leaves the empty
//! file: after a crash every peer makes one full handshake, and no ticket comes back.
//!
//! rustls 0.23 offers no way to serialize the dialer's tickets (`Tls13ClientSessionValue` has
//! no public encoding), so the dialer's cache lives as long as the process.

mod client;
mod file;
mod server;

pub(crate) use client::PeerSessions;
pub(crate) use file::{decode_tickets, encode_tickets, MAGIC, RECORD_HEAD};
pub(crate) use server::{ServerConfigs, ServerSessions, ServerState};

use i6p_core::PeerId;
use rustls::pki_types::ServerName;

/// Peers whose tickets the dialer keeps; the least recently used one goes first.
pub const MAX_PEERS: usize = 512;
/// Tickets kept per peer (each reconnect uses one; every handshake brings new ones).
const TICKETS_PER_PEER: usize = 4;
/// Tickets a listener keeps at once (shared fairly between client addresses, see above).
pub const MAX_SERVER_ENTRIES: usize = 4096;
/// Bounds on one stored ticket's key and value, checked before anything is allocated.
/// (A value is the resumption secret, parameters and the peer's certificate: a few hundred
/// bytes with our Ed25519 certificates.)
pub(crate) const MAX_KEY: usize = 256;
pub(crate) const MAX_VALUE: usize = 4096;

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
}
