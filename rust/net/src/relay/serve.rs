//! The relay's side of a circuit: admission against the relay limits, the offer to the
//! target (INCOMING), then copying bytes between the two streams without reading them.
//!
//! Invariants: a circuit holds a slot (node-wide and per requester) from admission until it
//! ends; each direction holds one chunk of at most [`RELAY_BUFFER`] bytes, and a stalled side only
//! stops the copy (flow control holds the sender back), so a circuit never makes the relay
//! hold more than its buffers plus its streams' receive windows; the byte and duration
//! bounds end the circuit with [`codes::RELAY_LIMIT`] on both streams.

use super::circuit;
use super::RelayTesting;
use crate::control::write_frame_raw;
use crate::error::Result;
use crate::limits::Limits;
use crate::session::Session;
use i6p_core::codes;
use i6p_core::relay::{
    CircuitPeer, CircuitRefused, RefusalReason, FRAME_INCOMING, PACKET_HEADER_LEN, STREAM_RELAY,
};
use i6p_core::PeerId;
use quinn::{RecvStream, SendStream, VarInt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes each direction of a circuit copies at a time (the relay's buffer per direction).
pub const RELAY_BUFFER: usize = 64 * 1024;
/// How long the target may take to answer an INCOMING.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// A relay's circuits: counted against the limits, and their traffic.
pub(crate) struct RelayService {
    limits: Limits,
    testing: RelayTesting,
    open: Mutex<(usize, HashMap<PeerId, usize>)>,
    bytes: AtomicU64,
}

/// A circuit's place in the relay's limits, given back when dropped.
pub(crate) struct CircuitSlot {
    service: Arc<RelayService>,
    requester: PeerId,
}

impl Drop for CircuitSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.service.open.lock() {
            open.0 = open.0.saturating_sub(1);
            if let Some(n) = open.1.get_mut(&self.requester) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.1.remove(&self.requester);
                }
            }
        }
    }
}

impl RelayService {
    pub(crate) fn new(limits: Limits, testing: RelayTesting) -> Arc<Self> {
        Arc::new(Self {
            limits,
            testing,
            open: Mutex::new((0, HashMap::new())),
            bytes: AtomicU64::new(0),
        })
    }

    /// The test hooks (never set outside tests).
    pub(crate) fn testing(&self) -> &RelayTesting {
        &self.testing
    }

    /// A slot for a circuit of `requester`, or the refusal that says which limit is reached.
    pub(crate) fn admit(
        self: &Arc<Self>,
        requester: PeerId,
    ) -> std::result::Result<CircuitSlot, CircuitRefused> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| limit("relay state poisoned"))?;
        if open.0 >= self.limits.max_relay_circuits {
            return Err(limit("the relay carries as many circuits as it allows"));
        }
        let mine = open.1.get(&requester).copied().unwrap_or(0);
        if mine >= self.limits.max_relay_circuits_per_peer {
            return Err(limit(
                "this peer has as many circuits through the relay as it allows",
            ));
        }
        open.0 += 1;
        *open.1.entry(requester).or_insert(0) += 1;
        Ok(CircuitSlot {
            service: self.clone(),
            requester,
        })
    }

    /// (circuits open now, bytes copied by all circuits so far).
    pub(crate) fn stats(&self) -> (usize, u64) {
        let open = self.open.lock().map(|o| o.0).unwrap_or(0);
        (open, self.bytes.load(Ordering::Relaxed))
    }
}

fn limit(why: &str) -> CircuitRefused {
    CircuitRefused {
        reason: RefusalReason::RelayLimit,
        message: why.into(),
    }
}

/// Offers the circuit to the target over `target` (a live session to it), answers the
/// requester, and copies until the circuit ends.
pub(crate) async fn bridge(
    service: Arc<RelayService>,
    slot: CircuitSlot,
    target: Session,
    mut send: SendStream,
    recv: RecvStream,
) {
    let offered = tokio::time::timeout(OFFER_TIMEOUT, offer(&target, slot.requester)).await;
    let (to_target, from_target) = match offered {
        Ok(Ok(streams)) => streams,
        Ok(Err(crate::NetError::RelayRefused { message, .. })) => {
            let refused = CircuitRefused {
                reason: RefusalReason::TargetRefused,
                message,
            };
            return circuit::refuse(&mut send, &refused).await;
        }
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "the target did not answer in time".into(),
            };
            let refused = CircuitRefused {
                reason: RefusalReason::TargetRefused,
                message: why,
            };
            return circuit::refuse(&mut send, &refused).await;
        }
    };
    if circuit::accept(&mut send).await.is_err() {
        return;
    }
    splice(&service, (send, recv), (to_target, from_target)).await;
    drop(slot);
}

/// Opens the relay stream to the target and offers it the circuit.
async fn offer(target: &Session, from: PeerId) -> Result<(SendStream, RecvStream)> {
    let (send, recv) = target.open_protocol_stream(STREAM_RELAY).await?;
    let (mut send, mut recv) = (send.into_inner(), recv.into_inner());
    let incoming = CircuitPeer { peer: from };
    write_frame_raw(&mut send, FRAME_INCOMING, &incoming.encode()).await?;
    circuit::answer(&mut recv).await?;
    Ok((send, recv))
}

/// How one direction of a circuit ended.
enum End {
    /// The sender finished its stream.
    Finished,
    /// The circuit reached its byte bound.
    Limit,
    /// A stream was reset or its session lost.
    Broken,
}

/// Copies both directions until both finish, a bound is reached, or a stream breaks.
async fn splice(service: &RelayService, a: (SendStream, RecvStream), b: (SendStream, RecvStream)) {
    let (mut send_a, mut recv_a) = a;
    let (mut send_b, mut recv_b) = b;
    let budget = AtomicU64::new(service.limits.relay_circuit_bytes.unwrap_or(u64::MAX));
    let duration = service.limits.relay_circuit_duration;
    let flip = service.testing.flip_every;
    let end = {
        let ab = copy(&mut recv_a, &mut send_b, &budget, service, flip);
        let ba = copy(&mut recv_b, &mut send_a, &budget, service, flip);
        let bound = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(ab, ba, bound);
        let (mut ab_done, mut ba_done) = (false, false);
        loop {
            let end = tokio::select! {
                end = &mut ab, if !ab_done => { ab_done = true; end }
                end = &mut ba, if !ba_done => { ba_done = true; end }
                () = &mut bound => End::Limit,
            };
            match end {
                End::Finished if !(ab_done && ba_done) => continue,
                other => break other,
            }
        }
    };
    let code = match end {
        End::Finished => return,
        End::Limit => codes::RELAY_LIMIT,
        End::Broken => codes::NORMAL,
    };
    let code = VarInt::from_u32(code);
    for send in [&mut send_a, &mut send_b] {
        let _ = send.reset(code);
    }
    for recv in [&mut recv_a, &mut recv_b] {
        let _ = recv.stop(code);
    }
}

/// Copies one direction a chunk (at most [`RELAY_BUFFER`] bytes) at a time, taking what it
/// copies from `budget`. Chunks move without a copy: the bytes quinn received are the bytes
/// it sends on (the test hook's damage aside).
async fn copy(
    from: &mut RecvStream,
    to: &mut SendStream,
    budget: &AtomicU64,
    service: &RelayService,
    flip: Option<u64>,
) -> End {
    let mut flipper = flip.map(Flipper::new);
    loop {
        let mut chunk = match from.read_chunk(RELAY_BUFFER, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => {
                let _ = to.finish();
                return End::Finished;
            }
            Err(_) => return End::Broken,
        };
        let want = chunk.len() as u64;
        let taken = budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            left.checked_sub(want)
        });
        if taken.is_err() {
            return End::Limit;
        }
        service.bytes.fetch_add(want, Ordering::Relaxed);
        if let Some(f) = flipper.as_mut() {
            let mut damaged = chunk.to_vec();
            f.apply(&mut damaged);
            chunk = damaged.into();
        }
        if to.write_chunk(chunk).await.is_err() {
            return End::Broken;
        }
    }
}

/// The bit-flipping test hook: follows the circuit's packet framing and flips one bit in the
/// middle of every `every`-th packet, so the damage lands in QUIC ciphertext (never in the
/// framing, which would only break the circuit).
struct Flipper {
    every: u64,
    packets: u64,
    header: [u8; PACKET_HEADER_LEN],
    have: usize,
    remaining: usize,
    flip_at: Option<usize>,
}

impl Flipper {
    fn new(every: u64) -> Self {
        Self {
            every: every.max(1),
            packets: 0,
            header: [0; PACKET_HEADER_LEN],
            have: 0,
            remaining: 0,
            flip_at: None,
        }
    }

    fn apply(&mut self, bytes: &mut [u8]) {
        for b in bytes {
            if self.remaining == 0 {
                self.header[self.have] = *b;
                self.have += 1;
                if self.have == PACKET_HEADER_LEN {
                    self.have = 0;
                    self.remaining = usize::from(u16::from_be_bytes(self.header));
                    self.packets += 1;
                    self.flip_at = self
                        .packets
                        .is_multiple_of(self.every)
                        .then_some(self.remaining / 2);
                }
                continue;
            }
            self.remaining -= 1;
            if self.flip_at == Some(self.remaining) {
                *b ^= 0x10;
            }
        }
    }
}
