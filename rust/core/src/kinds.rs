//! The registry of every number the wire protocol assigns to a kind of thing: stream kinds
//! (the first byte of a stream), frame types (control and transfer frames share one frame
//! format, and one number space) and datagram tags.
//!
//! Invariant: within each space no two kinds share a number; the tests below check every
//! kind this version knows against the tables [`STREAM_KINDS`], [`FRAME_TYPES`] and
//! [`DATAGRAM_TAGS`], so a new kind must be listed here to compile its tests green. The old
//! names (`transfer::FRAME_GET`, `fec::FRAME_FEC_GET`, ...) are re-exports of these.

/// First byte of every stream an application opens.
pub const STREAM_APP: u8 = 0;
/// First byte of every blob transfer stream (plain GET and FEC GET).
pub const STREAM_BLOBS: u8 = 1;
/// First byte of a relay stream: a circuit request, offer, and then the circuit's packets.
pub const STREAM_RELAY: u8 = 3;

/// First byte of a coordination stream (introductions through a mutual peer).
pub const STREAM_COORD: u8 = 2;

/// Every stream kind, with its name in docs/PROTOCOL.md.
pub const STREAM_KINDS: &[(u8, &str)] = &[
    (STREAM_APP, "APP"),
    (STREAM_BLOBS, "BLOBS"),
    (STREAM_COORD, "COORD"),
    (STREAM_RELAY, "RELAY"),
    (STREAM_DIALBACK, "DIALBACK"),
];

/// First byte of a dial-back stream: "dial me from another port" (see [`crate::dialback`]).
pub const STREAM_DIALBACK: u8 = 4;

/// The control frame types this version knows. Unknown types are skipped by receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Signed handshake message, the first frame in each direction.
    Hello = 0x01,
    /// The address the sender observes for the receiver.
    PeerInfo = 0x02,
    /// Liveness and RTT probe.
    Ping = 0x03,
    /// Answer to a PING, echoing its nonce.
    Pong = 0x04,
    /// Graceful close with a code and a reason.
    Close = 0x05,
}

impl FrameType {
    /// The known type for a wire byte, if any.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::Hello,
            0x02 => Self::PeerInfo,
            0x03 => Self::Ping,
            0x04 => Self::Pong,
            0x05 => Self::Close,
            _ => return None,
        })
    }
}

/// Frame type of a GET request.
pub const FRAME_GET: u8 = 0x10;
/// Frame type of a BLOB answer.
pub const FRAME_BLOB: u8 = 0x11;
/// Frame type of an ERROR answer.
pub const FRAME_ERROR: u8 = 0x12;
/// Frame type of a FEC GET: a GET whose groups come back as shards in datagrams.
pub const FRAME_FEC_GET: u8 = 0x13;
/// Frame type of a PROOF: a group's index and proof, sent reliably ahead of its shards.
pub const FRAME_PROOF: u8 = 0x14;
/// Frame type of a STRIPE: one stripe's data bytes, sent reliably in answer to a REPAIR.
pub const FRAME_STRIPE: u8 = 0x15;
/// Frame type of a FEC END: the provider has sent every stripe of the request as datagrams.
pub const FRAME_FEC_END: u8 = 0x16;
/// Frame type of a LOSS report from the requester.
pub const FRAME_LOSS: u8 = 0x17;
/// Frame type of a REPAIR request: stripes the requester could not rebuild.
pub const FRAME_REPAIR: u8 = 0x18;
/// Frame type of a FEC SHAPE: the shard size the provider chose, its first frame after BLOB.
pub const FRAME_FEC_SHAPE: u8 = 0x19;

/// Frame type of a DIALBACK_REQUEST: the address the asker wants to be dialed at.
pub const FRAME_DIALBACK_REQUEST: u8 = 0x20;
/// Frame type of a DIALBACK_RESULT: whether the helper's dial got through.
pub const FRAME_DIALBACK_RESULT: u8 = 0x21;
/// Frame type of a CIRCUIT request (requester to relay): the target's PeerId.
pub const FRAME_CIRCUIT: u8 = 0x30;
/// Frame type of an INCOMING circuit offer (relay to target): the requester's PeerId.
pub const FRAME_INCOMING: u8 = 0x31;
/// Frame type of CIRCUIT_OK: the circuit is taken (target to relay, relay to requester).
pub const FRAME_CIRCUIT_OK: u8 = 0x32;
/// Frame type of CIRCUIT_REFUSED: a reason code and a message.
pub const FRAME_CIRCUIT_REFUSED: u8 = 0x33;
/// Frame type of a CONNECT: asker → coordinator, "introduce me to this peer".
pub const FRAME_COORD_CONNECT: u8 = 0x28;
/// Frame type of an INTRODUCE: coordinator → target, the asker and its candidates.
pub const FRAME_COORD_INTRODUCE: u8 = 0x29;
/// Frame type of an ANSWER: the target's candidates, back through the coordinator.
pub const FRAME_COORD_ANSWER: u8 = 0x2a;
/// Frame type of a REFUSE: the introduction is refused, with a reason.
pub const FRAME_COORD_REFUSE: u8 = 0x2b;
/// Frame type of a SYNC: start an attempt now (forwarded by the coordinator).
pub const FRAME_COORD_SYNC: u8 = 0x2c;
/// Frame type of an RTT probe through the coordinator (echoed by the target).
pub const FRAME_COORD_RTT: u8 = 0x2d;

/// Every frame type, control and transfer, with its name in docs/PROTOCOL.md.
pub const FRAME_TYPES: &[(u8, &str)] = &[
    (FrameType::Hello as u8, "HELLO"),
    (FrameType::PeerInfo as u8, "PEER_INFO"),
    (FrameType::Ping as u8, "PING"),
    (FrameType::Pong as u8, "PONG"),
    (FrameType::Close as u8, "CLOSE"),
    (FRAME_GET, "GET"),
    (FRAME_BLOB, "BLOB"),
    (FRAME_ERROR, "ERROR"),
    (FRAME_FEC_GET, "FEC_GET"),
    (FRAME_PROOF, "PROOF"),
    (FRAME_STRIPE, "STRIPE"),
    (FRAME_FEC_END, "FEC_END"),
    (FRAME_LOSS, "LOSS"),
    (FRAME_REPAIR, "REPAIR"),
    (FRAME_FEC_SHAPE, "FEC_SHAPE"),
    (FRAME_DIALBACK_REQUEST, "DIALBACK_REQUEST"),
    (FRAME_DIALBACK_RESULT, "DIALBACK_RESULT"),
    (FRAME_CIRCUIT, "CIRCUIT"),
    (FRAME_INCOMING, "INCOMING"),
    (FRAME_CIRCUIT_OK, "CIRCUIT_OK"),
    (FRAME_CIRCUIT_REFUSED, "CIRCUIT_REFUSED"),
    (FRAME_COORD_CONNECT, "CONNECT"),
    (FRAME_COORD_INTRODUCE, "INTRODUCE"),
    (FRAME_COORD_ANSWER, "ANSWER"),
    (FRAME_COORD_REFUSE, "REFUSE"),
    (FRAME_COORD_SYNC, "SYNC"),
    (FRAME_COORD_RTT, "RTT"),
];

/// Tag (first byte) of a SHARD datagram.
pub const DATAGRAM_SHARD: u8 = 0x01;

/// Every datagram tag, with its name in docs/PROTOCOL.md.
pub const DATAGRAM_TAGS: &[(u8, &str)] = &[(DATAGRAM_SHARD, "SHARD")];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn assert_unique(space: &str, table: &[(u8, &str)]) {
        let mut seen: HashMap<u8, &str> = HashMap::new();
        for &(number, name) in table {
            if let Some(other) = seen.insert(number, name) {
                panic!("{space}: {name} and {other} share the number {number:#04x}");
            }
        }
    }

    #[test]
    fn no_two_kinds_share_a_number() {
        assert_unique("stream kinds", STREAM_KINDS);
        assert_unique("frame types", FRAME_TYPES);
        assert_unique("datagram tags", DATAGRAM_TAGS);
    }

    #[test]
    fn every_known_control_frame_type_is_in_the_registry() {
        for b in 0..=u8::MAX {
            if let Some(t) = FrameType::from_byte(b) {
                assert_eq!(t as u8, b);
                assert!(
                    FRAME_TYPES.iter().any(|&(n, _)| n == b),
                    "{t:?} is missing from FRAME_TYPES"
                );
            }
        }
    }

    #[test]
    fn a_duplicate_number_is_caught() {
        let clash = [(FRAME_GET, "GET"), (FRAME_GET, "NEW")];
        let caught = std::panic::catch_unwind(|| assert_unique("frames", &clash));
        assert!(caught.is_err());
    }
}
