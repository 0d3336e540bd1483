//! One end of a circuit, at the requester or the target: asking for it (CIRCUIT, then the
//! relay's answer), taking an offer (INCOMING), and then moving the inner connection's
//! packets between the circuit's stream and the node's virtual socket.
//!
//! Invariant: a circuit's end ends the relayed session over it at once, with the reason the
//! stream gave (the relay's [`codes::RELAY_LIMIT`] reset says the relay's bound ended it).

use super::socket::Circuits;
use crate::control::{read_frame, write_frame_raw};
use crate::error::{NetError, Result};
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use i6p_core::codes;
use i6p_core::relay::{
    decode_packet_header, packet_header, CircuitPeer, CircuitRefused, FRAME_CIRCUIT,
    FRAME_CIRCUIT_OK, FRAME_CIRCUIT_REFUSED, PACKET_HEADER_LEN,
};
use i6p_core::PeerId;
use quinn::{ReadError, ReadExactError, RecvStream, SendStream, VarInt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Packets written to the stream in one write, at most.
const WRITE_BATCH: usize = 64;
/// How long a closed relayed session keeps its circuit, so its CONNECTION_CLOSE gets out.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Asks the relay at the other end of `send`/`recv` for a circuit to `target`, and reads
/// its answer.
pub(crate) async fn request(
    send: &mut SendStream,
    recv: &mut RecvStream,
    target: PeerId,
) -> Result<()> {
    let circuit = CircuitPeer { peer: target };
    write_frame_raw(send, FRAME_CIRCUIT, &circuit.encode()).await?;
    answer(recv).await
}

/// Reads a hop's answer: Ok for CIRCUIT_OK, [`NetError::RelayRefused`] for CIRCUIT_REFUSED.
pub(crate) async fn answer(recv: &mut RecvStream) -> Result<()> {
    let frame = read_frame(recv)
        .await?
        .ok_or_else(|| NetError::Protocol("the relay stream ended before an answer".into()))?;
    match frame.kind {
        FRAME_CIRCUIT_OK if frame.payload.is_empty() => Ok(()),
        FRAME_CIRCUIT_REFUSED => {
            let refused = CircuitRefused::decode(&frame.payload).map_err(NetError::BadFrame)?;
            Err(NetError::RelayRefused {
                reason: refused.reason,
                message: refused.message,
            })
        }
        other => Err(NetError::Protocol(format!(
            "unexpected frame {other:#04x} answering a circuit request"
        ))),
    }
}

/// Sends CIRCUIT_REFUSED and ends the stream.
pub(crate) async fn refuse(send: &mut SendStream, refused: &CircuitRefused) {
    let _ = write_frame_raw(send, FRAME_CIRCUIT_REFUSED, &refused.encode()).await;
    let _ = send.finish();
}

/// Sends CIRCUIT_OK.
pub(crate) async fn accept(send: &mut SendStream) -> Result<()> {
    write_frame_raw(send, FRAME_CIRCUIT_OK, &[]).await
}

/// Runs the circuit at `addr` over `send`/`recv` until either side ends it; then ends the
/// relayed session over it (see the module's invariant).
///
/// `hold` keeps the session with the relay open while the circuit runs, even once the
/// application dropped its last handle on that session: the relayed session rides on it.
pub(crate) fn run(
    circuits: Arc<Circuits>,
    addr: SocketAddr,
    out: mpsc::Receiver<Bytes>,
    (send, recv): (SendStream, RecvStream),
    hold: crate::session::TransferHold,
) {
    tokio::spawn(write_packets(out, send));
    tokio::spawn(async move {
        let _hold = hold;
        let end = read_packets(&circuits, addr, recv).await;
        tracing::debug!(%addr, error = %end, "relay circuit ended");
        if let Some(session) = circuits.remove(addr) {
            let code = match &end {
                NetError::ConnectionLost { code, .. } => u32::try_from(*code).unwrap_or(0),
                _ => codes::NORMAL,
            };
            session.fail(end, code);
        }
    });
}

/// Ties the relayed session to its circuit: the session's end frees the circuit (after a
/// moment, so the CONNECTION_CLOSE travels), the circuit's end ends the session.
pub(crate) fn attach(circuits: &Arc<Circuits>, addr: SocketAddr, session: &Session) {
    circuits.attach(addr, session);
    let (circuits, session) = (circuits.clone(), session.clone());
    tokio::spawn(async move {
        let _ = session.closed().await;
        drop(session);
        tokio::time::sleep(CLOSE_GRACE).await;
        circuits.remove(addr);
    });
}

/// Writes the endpoint's packets for this circuit, framed, batching what is queued.
async fn write_packets(mut out: mpsc::Receiver<Bytes>, mut send: SendStream) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut buf = BytesMut::new();
    while out.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        buf.clear();
        for packet in batch.drain(..) {
            // The socket only queues packets within the bound.
            let Ok(header) = packet_header(packet.len()) else {
                continue;
            };
            buf.extend_from_slice(&header);
            buf.extend_from_slice(&packet);
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// Reads framed packets and hands them to the endpoint until the stream ends; returns why it
/// ended, as the relayed session's error.
async fn read_packets(circuits: &Circuits, addr: SocketAddr, mut recv: RecvStream) -> NetError {
    loop {
        let mut header = [0u8; PACKET_HEADER_LEN];
        if let Err(e) = recv.read_exact(&mut header).await {
            return circuit_ended(e);
        }
        let len = match decode_packet_header(header) {
            Ok(len) => len,
            Err(e) => {
                let _ = recv.stop(VarInt::from_u32(codes::PROTOCOL_ERROR));
                return NetError::BadFrame(e);
            }
        };
        // Bounded by MAX_CIRCUIT_PACKET in decode_packet_header.
        let mut packet = vec![0u8; len];
        if let Err(e) = recv.read_exact(&mut packet).await {
            return circuit_ended(e);
        }
        if !circuits.deliver(addr, packet.into()).await {
            return NetError::NodeClosed;
        }
    }
}

/// The relayed session's error for a circuit stream that ended with `e`.
fn circuit_ended(e: ReadExactError) -> NetError {
    let lost = |code: u32, reason: String| NetError::ConnectionLost {
        code: u64::from(code),
        reason,
        by_peer: true,
    };
    match e {
        ReadExactError::ReadError(ReadError::Reset(code))
            if code.into_inner() == u64::from(codes::RELAY_LIMIT) =>
        {
            lost(
                codes::RELAY_LIMIT,
                "the relay ended the circuit at its limit (bytes or duration per circuit)".into(),
            )
        }
        ReadExactError::ReadError(ReadError::Reset(code)) => lost(
            codes::NORMAL,
            format!("the relay circuit was reset (code {code})"),
        ),
        ReadExactError::FinishedEarly(_) => lost(codes::NORMAL, "the relay circuit ended".into()),
        ReadExactError::ReadError(e) => lost(
            codes::NORMAL,
            format!("the session carrying the relay circuit ended: {e}"),
        ),
    }
}
