//! The relay protocol's messages (stream kind [`STREAM_RELAY`]): a peer asks a relay for a
//! circuit to a target (CIRCUIT), the relay offers it to the target (INCOMING), and each hop
//! answers with CIRCUIT_OK or CIRCUIT_REFUSED. After the OKs the stream carries the inner
//! QUIC connection's packets, each as `length:u16 | packet`, which the relay copies without
//! reading: it sees PeerIds and ciphertext only.
//!
//! Invariant: every decoder checks lengths before allocating; a packet length of zero or over
//! [`MAX_CIRCUIT_PACKET`] is malformed (the framing cannot be resynchronised after it).

use crate::error::Result;
use crate::peer_id::PeerId;
use crate::wire::{put_string, Reader};

pub use crate::kinds::{
    FRAME_CIRCUIT, FRAME_CIRCUIT_OK, FRAME_CIRCUIT_REFUSED, FRAME_INCOMING, STREAM_RELAY,
};

/// The largest inner QUIC packet a circuit carries (the inner connection's fixed MTU).
pub const MAX_CIRCUIT_PACKET: usize = 16 * 1024;
/// Bytes before each packet on a circuit: its length, big-endian.
pub const PACKET_HEADER_LEN: usize = 2;
/// The longest refusal message, in bytes of UTF-8.
pub const MAX_REFUSAL_MESSAGE: usize = 512;

/// CIRCUIT (requester to relay), or INCOMING (relay to target): the other end's PeerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPeer {
    /// CIRCUIT: the target; INCOMING: the requester.
    pub peer: PeerId,
}

impl CircuitPeer {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        self.peer.as_bytes().to_vec()
    }

    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "circuit");
        let peer = PeerId::from_bytes(r.array()?);
        r.finish()?;
        Ok(Self { peer })
    }
}

/// Why a circuit was refused: the first byte of CIRCUIT_REFUSED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RefusalReason {
    /// The node does not relay (it did not opt in).
    NotARelay = 1,
    /// The relay has no live session with the target.
    TargetNotConnected = 2,
    /// The relay is at a circuit limit (for the node, or for this requester).
    RelayLimit = 3,
    /// The target refused the circuit (it takes no relayed sessions now, or is at its limit).
    TargetRefused = 4,
    /// The request makes no sense (the target is the requester or the relay itself).
    BadRequest = 5,
}

impl RefusalReason {
    /// Every reason, in wire order.
    pub const ALL: [Self; 5] = [
        Self::NotARelay,
        Self::TargetNotConnected,
        Self::RelayLimit,
        Self::TargetRefused,
        Self::BadRequest,
    ];

    /// The reason for a wire value; unknown values (a newer relay's) read as `TargetRefused`,
    /// the one that promises nothing about the relay.
    pub fn from_u8(v: u8) -> Self {
        Self::ALL
            .into_iter()
            .find(|r| *r as u8 == v)
            .unwrap_or(Self::TargetRefused)
    }

    /// A short name, as the errors print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotARelay => "not a relay",
            Self::TargetNotConnected => "target not connected to the relay",
            Self::RelayLimit => "relay limit reached",
            Self::TargetRefused => "target refused",
            Self::BadRequest => "bad request",
        }
    }
}

/// CIRCUIT_REFUSED: why, and a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitRefused {
    /// The reason.
    pub reason: RefusalReason,
    /// Human-readable detail, at most [`MAX_REFUSAL_MESSAGE`] bytes.
    pub message: String,
}

impl CircuitRefused {
    /// Encodes the payload; a message over the limit is cut at a character boundary.
    pub fn encode(&self) -> Vec<u8> {
        let message = crate::messages::truncate_utf8(&self.message, MAX_REFUSAL_MESSAGE);
        let mut out = Vec::with_capacity(3 + message.len());
        out.push(self.reason as u8);
        put_string(&mut out, message, 2);
        out
    }

    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "circuit_refused");
        let reason = RefusalReason::from_u8(r.u8()?);
        let message = r.string(2, MAX_REFUSAL_MESSAGE)?;
        r.finish()?;
        Ok(Self { reason, message })
    }
}

/// The header of one packet on a circuit.
pub fn packet_header(len: usize) -> Result<[u8; PACKET_HEADER_LEN]> {
    check_packet_len(len)?;
    Ok((len as u16).to_be_bytes())
}

/// The length a packet header announces, checked against [`MAX_CIRCUIT_PACKET`].
pub fn decode_packet_header(raw: [u8; PACKET_HEADER_LEN]) -> Result<usize> {
    let len = usize::from(u16::from_be_bytes(raw));
    check_packet_len(len)?;
    Ok(len)
}

fn check_packet_len(len: usize) -> Result<()> {
    if len == 0 || len > MAX_CIRCUIT_PACKET {
        return Err(crate::CoreError::Malformed {
            what: "circuit packet",
            detail: format!("length {len} outside 1..={MAX_CIRCUIT_PACKET}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_and_incoming_name_one_peer_exactly() {
        let peer = PeerId::from_public_key(&[3; 32]);
        let m = CircuitPeer { peer };
        assert_eq!(CircuitPeer::decode(&m.encode()).unwrap(), m);
        assert!(CircuitPeer::decode(&[0; 31]).is_err());
        assert!(CircuitPeer::decode(&[0; 33]).is_err());
    }

    #[test]
    fn refusals_round_trip_and_unknown_reasons_promise_nothing() {
        for reason in RefusalReason::ALL {
            let m = CircuitRefused {
                reason,
                message: "why".into(),
            };
            assert_eq!(CircuitRefused::decode(&m.encode()).unwrap(), m);
        }
        let unknown = CircuitRefused::decode(&[99, 0, 0]).unwrap();
        assert_eq!(unknown.reason, RefusalReason::TargetRefused);
        assert!(CircuitRefused::decode(&[1, 0xff, 0xff]).is_err());
        let long = CircuitRefused {
            reason: RefusalReason::BadRequest,
            message: "é".repeat(MAX_REFUSAL_MESSAGE),
        };
        let back = CircuitRefused::decode(&long.encode()).unwrap();
        assert!(back.message.len() <= MAX_REFUSAL_MESSAGE);
    }

    #[test]
    fn packet_lengths_are_bounded_both_ways() {
        assert_eq!(
            decode_packet_header(packet_header(1200).unwrap()).unwrap(),
            1200
        );
        assert!(packet_header(0).is_err());
        assert!(packet_header(MAX_CIRCUIT_PACKET + 1).is_err());
        assert!(decode_packet_header([0, 0]).is_err());
        assert!(decode_packet_header([0xff, 0xff]).is_err());
        let max = packet_header(MAX_CIRCUIT_PACKET).unwrap();
        assert_eq!(decode_packet_header(max).unwrap(), MAX_CIRCUIT_PACKET);
    }
}
