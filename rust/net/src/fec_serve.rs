//! The provider side of FEC mode: a FEC GET's groups go out as erasure-coded shards in QUIC
//! datagrams, their proofs and any repairs over the request's stream.
//!
//! Order of a request: FEC SHAPE (the shard size this path carries), a PROOF frame per
//! requested group, then the stripes as the send schedule ([`SendSchedule`], in core) hands
//! them out: each coded into k data + m parity shards, one SHARD datagram each, handed to
//! quinn with `send_datagram_wait`, so the connection's congestion controller paces them and
//! nothing is queued beyond its datagram buffer; REPAIRs answered between two stripes with
//! STRIPE frames; FEC END; repairs until the requester finishes its side.
//!
//! This module is the driver: it reads the file, writes frames, sends datagrams and feeds the
//! schedule the requester's frames with the time they came; the schedule decides.

mod shards;

use crate::blobs::{BlobStore, Faults, Serving};
use crate::control::{codes, read_frame, write_frame_raw};
use crate::session::Session;
use i6p_core::fec::{
    decode_repair, encode_shape, encode_stripe_header, stripe_runs, FecRequest, LossReport,
    Redundancy, SendSchedule, Transmit, FRAME_FEC_END, FRAME_FEC_SHAPE, FRAME_LOSS, FRAME_PROOF,
    FRAME_REPAIR, FRAME_STRIPE, MAX_SHARD_LEN, MIN_SHARD_LEN, REPAIR_QUEUE, SHARD_HEADER_LEN,
};
use i6p_core::transfer::encode_group_header;
use shards::{send_junk, ShardSender};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Bytes of stripes read from the file at once (read ahead by one such chunk).
const READ_CHUNK: usize = 1 << 20;
/// Bytes of each packet left to the stream (proofs, repairs) beside a shard: quinn fills
/// packets with datagrams first, so a shard that filled them would starve the stream.
const STREAM_ROOM: usize = 160;
/// QUIC's smallest MTU (quinn's `min_mtu`, which this crate keeps).
const MIN_MTU: usize = 1200;

/// LOSS reports kept for the send loop at most: ten seconds of them; a send loop that falls
/// further behind holds the requester's frames up.
const LOSS_QUEUE: usize = 1024;

/// What the requester sent on the request's stream, read by a task of their own: LOSS
/// reports (stamped with when they came, for the flow window's loop delay) and REPAIR lists
/// (at most [`REPAIR_QUEUE`] waiting, as the schedule takes them). Both close when the
/// requester's side ends.
struct FromRequester {
    losses: mpsc::Receiver<(Instant, LossReport)>,
    losses_open: bool,
    repairs: mpsc::Receiver<Vec<u64>>,
}

impl FromRequester {
    /// Everything waiting, into the schedule (a full repair queue leaves the rest waiting).
    fn take_waiting(&mut self, schedule: &mut SendSchedule) {
        while let Ok((at, report)) = self.losses.try_recv() {
            schedule.handle_loss(at, &report);
        }
        while schedule.has_room() {
            match self.repairs.try_recv() {
                Ok(list) => {
                    schedule.handle_repair(list);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    schedule.handle_requester_done();
                    break;
                }
            }
        }
    }

    /// Waits for the next frame, or until `deadline`, and takes it in.
    async fn wait(&mut self, schedule: &mut SendSchedule, deadline: Option<Instant>) {
        let deadline = deadline.map(tokio::time::Instant::from_std);
        tokio::select! {
            loss = self.losses.recv(), if self.losses_open => match loss {
                Some((at, report)) => schedule.handle_loss(at, &report),
                None => self.losses_open = false,
            },
            list = self.repairs.recv(), if schedule.has_room() => match list {
                Some(list) => {
                    schedule.handle_repair(list);
                }
                None => schedule.handle_requester_done(),
            },
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Serves one FEC GET whose BLOB answer has been sent.
pub(crate) async fn serve_fec(
    store: Arc<BlobStore>,
    session: Session,
    blob: Arc<Serving>,
    request: FecRequest,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let faults = store.faults();
    let Ok(redundancy) = request.redundancy() else {
        return;
    };
    let mut request = request;
    let conn = session.inner_conn();
    request.shard_len = fit_shard_len(conn, request.shard_len);
    if write_frame_raw(&mut send, FRAME_FEC_SHAPE, &encode_shape(request.shard_len))
        .await
        .is_err()
    {
        return;
    }
    if faults & Faults::JUNK_ONLY != 0 {
        send_junk(conn, &request, &mut send).await;
        return;
    }
    if !send_proofs(&store, &blob, &request, &mut send).await {
        return;
    }
    let (schedule, source) = plan(&store, &session, &blob, &request, redundancy);
    // The requester's LOSS and REPAIR frames, read by a task of their own.
    let (losses_tx, losses) = mpsc::channel(LOSS_QUEUE);
    let (repairs_tx, repairs) = mpsc::channel(REPAIR_QUEUE);
    let reader = tokio::spawn(read_requests(recv, request.transfer, losses_tx, repairs_tx));
    let events = FromRequester {
        losses,
        losses_open: true,
        repairs,
    };
    let _stop_reader = AbortOnDrop(reader);
    let sender = ShardSender::new(conn.clone(), &request, faults, store.limits.send_timeout);
    let sending = (source, sender);
    if !drive(&session, &blob, schedule, events, sending, &mut send).await {
        return;
    }
    let _ = send.finish();
    // Groups are counted as served once the requester has acknowledged everything.
    let stopped = tokio::time::timeout(store.limits.send_timeout, send.stopped()).await;
    if matches!(stopped, Ok(Ok(None))) {
        let peer = session.remote_peer_id();
        for &(first, count) in &request.get.ranges {
            for index in first..first + count {
                store.count_served(peer, &blob, request.get.group_log, index);
            }
        }
    }
}

/// The send schedule of `request` and the reader of its stripes.
fn plan(
    store: &BlobStore,
    session: &Session,
    blob: &Arc<Serving>,
    request: &FecRequest,
    redundancy: Redundancy,
) -> (SendSchedule, StripeSource) {
    let stripe_bytes = (request.data * request.shard_len) as u64;
    let (size, log) = (blob.size(), request.get.group_log);
    let runs = stripe_runs(size, log, &request.get.ranges, stripe_bytes);
    let last = runs.last().map_or(0, |r| r.1);
    let source = StripeSource::new(blob.clone(), stripe_bytes, last);
    // The window starts where the session's last request left it.
    let reached = session.fec_window().load(Ordering::Relaxed);
    let timeouts = (store.limits.send_timeout, store.limits.request_idle_timeout);
    let now = Instant::now();
    let schedule = SendSchedule::new(runs, stripe_bytes, redundancy, reached, timeouts, now);
    (schedule, source)
}

/// The shard size: at most `asked`, and what this path's datagrams carry with room left in
/// each packet for the stream.
fn fit_shard_len(conn: &quinn::Connection, asked: usize) -> usize {
    let Some(max) = conn.max_datagram_size() else {
        return asked;
    };
    shard_len_for(asked, max, conn.stats().path.current_mtu)
}

/// The shard size for a path whose datagrams carry `max_datagram` bytes at an MTU of
/// `current_mtu`. Once discovery has taken the path past an Ethernet frame, shards follow it
/// (a jumbo LAN, loopback: fewer, larger packets). On an ordinary path they are sized for the
/// smallest MTU QUIC allows, so that they still fit when the MTU estimate falls back: quinn
/// may take bursts of random loss, FEC's own territory, for a black hole. A large path that
/// falls back mid-request sends its remaining stripes over the stream (see `drive`); the next
/// request sizes its shards afresh. Always within the FEC limits of `core`.
fn shard_len_for(asked: usize, max_datagram: usize, current_mtu: u16) -> usize {
    let current_mtu = usize::from(current_mtu);
    let above_min = if current_mtu > usize::from(crate::mtu::DEFAULT_PAYLOAD) {
        0
    } else {
        current_mtu.saturating_sub(MIN_MTU)
    };
    let fits = max_datagram.saturating_sub(above_min + SHARD_HEADER_LEN + STREAM_ROOM) / 16 * 16;
    asked.min(fits).clamp(MIN_SHARD_LEN, MAX_SHARD_LEN)
}

/// A PROOF frame per requested group; false if the stream failed or timed out.
async fn send_proofs(
    store: &BlobStore,
    blob: &Serving,
    request: &FecRequest,
    send: &mut quinn::SendStream,
) -> bool {
    let log = request.get.group_log;
    for &(first, count) in &request.get.ranges {
        for index in first..first + count {
            let Ok(mut proof) = blob.outboard.proof(log, index) else {
                return false;
            };
            if store.faults() & Faults::WRONG_PROOF != 0 {
                if let Some(cv) = proof.first_mut() {
                    cv[0] ^= 1;
                }
            }
            let frame = encode_group_header(index, &proof);
            let write = write_frame_raw(send, FRAME_PROOF, &frame);
            if !matches!(
                tokio::time::timeout(store.limits.send_timeout, write).await,
                Ok(Ok(()))
            ) {
                let _ = send.reset(quinn::VarInt::from_u32(codes::SEND_TIMEOUT));
                return false;
            }
        }
    }
    true
}

/// Runs the schedule to its end: true when the requester is done and the stream can be
/// finished, false when the request ended otherwise (reset, timed out, connection gone).
async fn drive(
    session: &Session,
    blob: &Arc<Serving>,
    mut schedule: SendSchedule,
    mut events: FromRequester,
    (mut source, mut sender): (StripeSource, ShardSender<'_>),
    send: &mut quinn::SendStream,
) -> bool {
    loop {
        events.take_waiting(&mut schedule);
        if let Some(bytes) = schedule.take_reached() {
            session.fec_window().store(bytes, Ordering::Relaxed);
        }
        let Some(transmit) = schedule.poll_transmit(Instant::now()) else {
            let deadline = schedule.poll_timeout();
            events.wait(&mut schedule, deadline).await;
            continue;
        };
        match transmit {
            Transmit::Repair(list) => {
                if !answer_repairs(send, blob, &sender, &list).await {
                    return false;
                }
            }
            Transmit::Stripe { stripe, parity } => {
                let sent = send_stripe(&mut source, &mut sender, stripe, parity, send).await;
                let Some(datagrams) = sent else {
                    return false;
                };
                schedule.handle_sent(Instant::now(), stripe, datagrams);
                // The path no longer carries datagrams this large: the stripe goes reliably.
                if !datagrams && !answer_repairs(send, blob, &sender, &[stripe]).await {
                    return false;
                }
            }
            Transmit::End { sent } => {
                tracing::debug!(
                    sent,
                    shard_len = sender.request.shard_len,
                    loss = schedule.loss(),
                    "FEC shards sent"
                );
                let sent = sent.to_be_bytes();
                let end = write_frame_raw(send, FRAME_FEC_END, &sent);
                if !matches!(tokio::time::timeout(sender.timeout, end).await, Ok(Ok(()))) {
                    return false;
                }
            }
            Transmit::Finish => return true,
            Transmit::TimedOut => {
                tracing::debug!(peer = %session.remote_peer_id().short(),
                    "FEC requester stalled or idle; request reset");
                let _ = send.reset(quinn::VarInt::from_u32(codes::SEND_TIMEOUT));
                return false;
            }
        }
    }
}

/// Sends stripe `stripe` as datagrams: Some(true) if they went, Some(false) if the path no
/// longer carries datagrams this large (the stripe must go over the stream), `None` if the
/// request is over (the file cannot be read, or the connection is gone).
async fn send_stripe(
    source: &mut StripeSource,
    sender: &mut ShardSender<'_>,
    stripe: u64,
    parity: usize,
    send: &mut quinn::SendStream,
) -> Option<bool> {
    let Some(data) = source.stripe(stripe).await else {
        let _ = send.reset(quinn::VarInt::from_u32(3));
        return None;
    };
    sender.send(stripe, data, parity).await.ok()
}

/// The blob's stripes in order, read in chunks of [`READ_CHUNK`] on a blocking thread, the
/// next chunk read ahead while the current one is sent.
struct StripeSource {
    blob: Arc<Serving>,
    stripe_bytes: u64,
    /// The last stripe the request covers: nothing is read beyond it.
    last: u64,
    /// The chunk at hand: its first stripe and bytes.
    current: (u64, Vec<u8>),
    ahead: Option<(u64, tokio::task::JoinHandle<std::io::Result<Vec<u8>>>)>,
}

impl StripeSource {
    fn new(blob: Arc<Serving>, stripe_bytes: u64, last: u64) -> Self {
        Self {
            blob,
            stripe_bytes,
            last,
            current: (0, Vec::new()),
            ahead: None,
        }
    }

    /// Stripe `stripe`'s bytes (the last one short); `None` if the file cannot be read.
    async fn stripe(&mut self, stripe: u64) -> Option<&[u8]> {
        let per_chunk = (READ_CHUNK as u64 / self.stripe_bytes.max(1)).max(1);
        let held = |(first, data): &(u64, Vec<u8>)| {
            stripe >= *first && (stripe - first) * self.stripe_bytes < data.len() as u64
        };
        if !held(&self.current) {
            let reading = match self.ahead.take() {
                Some((first, reading)) if first == stripe => reading,
                _ => {
                    let count = per_chunk.min(self.last.saturating_sub(stripe) + 1);
                    read_stripes(&self.blob, stripe, count, self.stripe_bytes)
                }
            };
            let Ok(Ok(data)) = reading.await else {
                return None;
            };
            self.current = (stripe, data);
            let next = stripe + per_chunk;
            if next <= self.last {
                let count = per_chunk.min(self.last - next + 1);
                let reading = read_stripes(&self.blob, next, count, self.stripe_bytes);
                self.ahead = Some((next, reading));
            }
        }
        let (first, data) = &self.current;
        let start = ((stripe - first) * self.stripe_bytes) as usize;
        let end = (start + self.stripe_bytes as usize).min(data.len());
        data.get(start..end)
    }
}

/// Reads `count` stripes from `first` on a blocking thread (the last one may be short).
fn read_stripes(
    blob: &Arc<Serving>,
    first: u64,
    count: u64,
    stripe_bytes: u64,
) -> tokio::task::JoinHandle<std::io::Result<Vec<u8>>> {
    let blob = blob.clone();
    tokio::task::spawn_blocking(move || {
        let start = first * stripe_bytes;
        let end = (start + count * stripe_bytes).min(blob.size());
        let mut buf = vec![0u8; end.saturating_sub(start) as usize];
        blob.read_exact_at(&mut buf, start)?;
        Ok(buf)
    })
}

/// Reads the requester's frames: LOSS reports, stamped with when they came, and REPAIR lists.
/// Anything else, a malformed frame or a report of another transfer ends the reading, which
/// ends the request's stripes.
async fn read_requests(
    mut recv: quinn::RecvStream,
    transfer: u32,
    losses: mpsc::Sender<(Instant, LossReport)>,
    repairs: mpsc::Sender<Vec<u64>>,
) {
    while let Ok(Some(frame)) = read_frame(&mut recv).await {
        let sent = match frame.kind {
            FRAME_LOSS => match LossReport::decode(&frame.payload) {
                Ok(report) if report.transfer == transfer => {
                    losses.send((Instant::now(), report)).await.is_ok()
                }
                _ => return,
            },
            FRAME_REPAIR => match decode_repair(&frame.payload) {
                Ok(list) => repairs.send(list).await.is_ok(),
                Err(_) => return,
            },
            _ => return,
        };
        if !sent {
            return;
        }
    }
}

/// Sends the data of `stripes` as STRIPE frames. False if the stream is gone, or the
/// requester took none of a frame for the send timeout.
async fn answer_repairs(
    send: &mut quinn::SendStream,
    blob: &Arc<Serving>,
    sender: &ShardSender<'_>,
    stripes: &[u64],
) -> bool {
    let (request, faults) = (sender.request, sender.faults);
    let stripe_bytes = (request.data * request.shard_len) as u64;
    for &stripe in stripes {
        let start = stripe.saturating_mul(stripe_bytes);
        if start >= blob.size() {
            // Not a stripe of this blob: the requester is confused; stop answering.
            let _ = send.reset(quinn::VarInt::from_u32(4));
            return false;
        }
        let Ok(Ok(mut data)) = read_stripes(blob, stripe, 1, stripe_bytes).await else {
            return false;
        };
        if faults & Faults::FLIPPED_DATA != 0 {
            if let Some(b) = data.first_mut() {
                *b ^= 1;
            }
        }
        let mut payload = Vec::with_capacity(8 + data.len());
        payload.extend_from_slice(&encode_stripe_header(stripe));
        payload.extend_from_slice(&data);
        let write = write_frame_raw(send, FRAME_STRIPE, &payload);
        if !matches!(
            tokio::time::timeout(sender.timeout, write).await,
            Ok(Ok(()))
        ) {
            let _ = send.reset(quinn::VarInt::from_u32(codes::SEND_TIMEOUT));
            return false;
        }
    }
    true
}

/// Aborts a task when dropped (the FEC request's frame reader, on either side).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// quinn's datagram room at a given MTU (its packet overhead on a short header).
    fn room(mtu: u16) -> usize {
        usize::from(mtu) - 42
    }

    #[test]
    fn shards_follow_large_paths_and_stay_small_on_ordinary_ones() {
        // Ordinary path: sized for 1,200 whatever the discovered MTU up to 1,452.
        let small = shard_len_for(MAX_SHARD_LEN, room(1452), 1452);
        assert_eq!(small, shard_len_for(MAX_SHARD_LEN, room(1200), 1200));
        assert!(small + SHARD_HEADER_LEN <= room(1200), "{small}");
        // A jumbo LAN and loopback: shards as large as the datagram, less the stream's room.
        let jumbo = shard_len_for(MAX_SHARD_LEN, room(8952), 8952);
        assert!(jumbo > 8000 && jumbo + SHARD_HEADER_LEN + STREAM_ROOM <= room(8952));
        let lo = shard_len_for(MAX_SHARD_LEN, room(65_488), 65_488);
        assert!(lo > 60_000 && lo <= MAX_SHARD_LEN, "{lo}");
        // Never above what was asked, never outside core's bounds, 16-byte aligned.
        assert_eq!(shard_len_for(4096, room(8952), 8952), 4096);
        assert_eq!(shard_len_for(4096, 100, 1200), MIN_SHARD_LEN);
        assert_eq!(jumbo % 16, 0);
    }
}
