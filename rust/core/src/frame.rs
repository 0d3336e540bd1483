//! Control-stream framing: `type (1 byte) | length (4 bytes, big-endian) | payload`.
//!
//! The header is decoded and its length checked against [`MAX_FRAME_PAYLOAD`] before any
//! payload buffer is allocated.

use crate::error::{CoreError, Result};

/// Bytes in a frame header.
pub const FRAME_HEADER_LEN: usize = 5;

/// The largest payload a control frame may carry (1 MiB).
pub const MAX_FRAME_PAYLOAD: u32 = 1 << 20;

pub use crate::kinds::FrameType;

/// A decoded and bounds-checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The raw type byte (possibly unknown to this version).
    pub kind: u8,
    /// The payload length, already checked to be at most [`MAX_FRAME_PAYLOAD`].
    pub len: u32,
}

impl FrameHeader {
    /// Decodes a header and rejects lengths above the limit.
    pub fn decode(raw: [u8; FRAME_HEADER_LEN]) -> Result<Self> {
        let len = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
        if len > MAX_FRAME_PAYLOAD {
            return Err(CoreError::FrameTooLarge {
                len: u64::from(len),
                limit: u64::from(MAX_FRAME_PAYLOAD),
            });
        }
        Ok(Self { kind: raw[0], len })
    }
}

/// Encodes one frame; fails if the payload exceeds the limit.
pub fn encode(kind: FrameType, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME_PAYLOAD)
        .ok_or(CoreError::FrameTooLarge {
            len: payload.len() as u64,
            limit: u64::from(MAX_FRAME_PAYLOAD),
        })?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.push(kind as u8);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let frame = encode(FrameType::Ping, &[1, 2, 3]).unwrap();
        let header = FrameHeader::decode(frame[..5].try_into().unwrap()).unwrap();
        assert_eq!(header, FrameHeader { kind: 3, len: 3 });
    }

    #[test]
    fn oversized_lengths_are_rejected_before_allocation() {
        let err = FrameHeader::decode([1, 0x80, 0, 0, 0]).unwrap_err();
        assert!(matches!(
            err,
            CoreError::FrameTooLarge {
                len: 0x8000_0000,
                ..
            }
        ));
        assert!(FrameHeader::decode([1, 0, 0x10, 0, 1]).is_err());
        assert!(FrameHeader::decode([1, 0, 0x10, 0, 0]).is_ok());
        assert!(encode(FrameType::Hello, &vec![0; (1 << 20) + 1]).is_err());
    }
}
