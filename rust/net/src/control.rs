//! The control stream: framed messages on the first bidirectional stream the dialer opens.
//!
//! Reads check the header's length against the 1 MiB bound before allocating the payload. A
//! malformed, oversized or truncated frame is a protocol error that closes the session.

use crate::error::{NetError, Result};
use i6p_core::frame::{self, FrameHeader, FrameType, FRAME_HEADER_LEN};
use quinn::{ReadExactError, RecvStream, SendStream};

/// Close, reset and refusal codes, named once in the core (re-exported at the old path).
pub use i6p_core::codes;

/// One frame as read from the wire; `kind` may be a type this version does not know.
pub(crate) struct RawFrame {
    pub(crate) kind: u8,
    pub(crate) payload: Vec<u8>,
}

impl RawFrame {
    pub(crate) fn known(&self) -> Option<FrameType> {
        FrameType::from_byte(self.kind)
    }
}

/// Reads the next frame; `Ok(None)` when the peer finished the stream between frames.
pub(crate) async fn read_frame(recv: &mut RecvStream) -> Result<Option<RawFrame>> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(n)) => {
            return Err(NetError::Protocol(format!(
                "truncated frame header ({n} of {FRAME_HEADER_LEN} bytes)"
            )))
        }
        Err(ReadExactError::ReadError(e)) => return Err(read_error(e)),
    }
    let header = FrameHeader::decode(header).map_err(NetError::BadFrame)?;
    // Bounded by MAX_FRAME_PAYLOAD (1 MiB) in FrameHeader::decode.
    let mut payload = vec![0u8; header.len as usize];
    match recv.read_exact(&mut payload).await {
        Ok(()) => Ok(Some(RawFrame {
            kind: header.kind,
            payload,
        })),
        Err(ReadExactError::FinishedEarly(n)) => Err(NetError::Protocol(format!(
            "truncated frame: {n} of {} payload bytes",
            header.len
        ))),
        Err(ReadExactError::ReadError(e)) => Err(read_error(e)),
    }
}

/// Writes one frame.
pub(crate) async fn write_frame(
    send: &mut SendStream,
    kind: FrameType,
    payload: &[u8],
) -> Result<()> {
    let bytes = frame::encode(kind, payload)?;
    send.write_all(&bytes)
        .await
        .map_err(|e| NetError::Stream(format!("control stream write failed: {e}")))
}

/// Writes one frame of any type (transfer frames share the control frame format).
pub(crate) async fn write_frame_raw(send: &mut SendStream, kind: u8, payload: &[u8]) -> Result<()> {
    if payload.len() > i6p_core::MAX_FRAME_PAYLOAD as usize {
        return Err(NetError::Protocol("frame too large to send".into()));
    }
    let mut bytes = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    bytes.push(kind);
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(payload);
    send.write_all(&bytes)
        .await
        .map_err(|e| NetError::Stream(format!("stream write failed: {e}")))
}

fn read_error(e: quinn::ReadError) -> NetError {
    match e {
        quinn::ReadError::ConnectionLost(c) => crate::error::describe_connection_error(&c),
        quinn::ReadError::Reset(code) => {
            NetError::Protocol(format!("control stream reset ({code})"))
        }
        other => NetError::Protocol(format!("control stream: {other}")),
    }
}
