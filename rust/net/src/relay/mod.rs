//! End-to-end encrypted relaying: when two peers cannot reach each other, a node both are
//! connected to and that opted in (`NodeConfig::relay`) carries a circuit between them, and
//! the two run an inner QUIC connection over it, with the same TLS identity binding and
//! HELLO as a direct session. The relay sees PeerIds and ciphertext only.
//!
//! - [`serve`]: the relay's side: limits, the offer to the target, the byte copy.
//! - [`circuit`]: a circuit's ends: asking, taking an offer, moving packets.
//! - [`socket`]: the virtual UDP socket under each node's relayed endpoint, one synthetic
//!   address in `100::/64` per circuit.
//!
//! The node's side (the lazily made relayed endpoint, `Node::connect_relayed`, the stream
//! handler) is in `node::relayed`.

pub(crate) mod circuit;
pub mod serve;
pub(crate) mod socket;

use i6p_core::PeerId;

/// Hooks that make a relay misbehave, for tests of what the ends do about it. Never set by
/// the normal API (the Python binding sets them only from `i6p._core.testing`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[doc(hidden)]
pub struct RelayTesting {
    /// Flip one bit inside every n-th packet the relay copies.
    pub flip_every: Option<u64>,
    /// Offer every circuit to this peer instead of the one asked for.
    pub misroute_to: Option<PeerId>,
    /// As a target: take circuits offered to this node, then never read them (a stalled
    /// side, for the relay's memory bound).
    pub stall_offers: bool,
}

/// The capability a relaying node announces in its HELLO.
pub const RELAY_CAPABILITY: (&str, &str) = ("relay", "1");
