//! The provider side of FEC mode: a FEC GET's groups go out as erasure-coded shards in QUIC
//! datagrams, their proofs and any repairs over the request's stream.
//!
//! Order of a request:
//! 1. a PROOF frame per requested group, on the stream;
//! 2. every stripe covering the groups, coded into k data + m parity shards, one SHARD
//!    datagram each, handed to quinn with `send_datagram_wait`, so the connection's congestion
//!    controller paces them and nothing is queued beyond its datagram buffer; m follows the
//!    requester's LOSS reports;
//! 3. FEC END, then STRIPE frames answering REPAIRs, until the requester finishes its side.
//!
//! REPAIRs that arrive while shards are still going out are answered between two stripes.

use crate::blobs::{Blob, BlobStore, Faults};
use crate::control::{codes, read_frame, write_frame_raw};
use crate::session::Session;
use bytes::{BufMut, Bytes, BytesMut};
use i6p_core::erasure::{Coder, ErasureParams, Stripe};
use i6p_core::fec::{
    decode_repair, encode_shape, encode_stripe_header, FecRequest, LossReport, Redundancy, Shard,
    FRAME_FEC_END, FRAME_FEC_SHAPE, FRAME_LOSS, FRAME_PROOF, FRAME_REPAIR, FRAME_STRIPE,
    MIN_SHARD_LEN, SHARD_HEADER_LEN,
};
use i6p_core::transfer::encode_group_header;
use i6p_core::tree::group_range;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// Bytes of stripes read from the file at once (read ahead by one such chunk).
const READ_CHUNK: usize = 1 << 20;
/// Bytes of each packet left to the stream (proofs, repairs) beside a shard: quinn fills
/// packets with datagrams first, so a shard that filled them would starve the stream.
const STREAM_ROOM: usize = 160;
/// QUIC's smallest MTU (quinn's `min_mtu`, which this crate keeps).
const MIN_MTU: usize = 1200;
/// REPAIR lists waiting to be answered; a requester that sends more waits for room.
const REPAIR_QUEUE: usize = 16;

/// The stripes (first, last inclusive) covering groups `ranges` of `blob`, in order, merged.
pub(crate) fn stripe_runs(
    size: u64,
    group_log: u8,
    ranges: &[(u64, u64)],
    stripe_bytes: u64,
) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &(first, count) in ranges {
        let start = group_range(size, group_log, first).0;
        let (last_start, last_len) = group_range(size, group_log, first + count - 1);
        let end = last_start + last_len;
        if end <= start {
            continue;
        }
        let (a, b) = (start / stripe_bytes, (end - 1) / stripe_bytes);
        match runs.last_mut() {
            Some(run) if a <= run.1 + 1 && a >= run.0 => run.1 = run.1.max(b),
            _ => runs.push((a, b)),
        }
    }
    runs
}

/// Serves one FEC GET whose BLOB answer has been sent.
pub(crate) async fn serve_fec(
    store: Arc<BlobStore>,
    session: Session,
    blob: Arc<Blob>,
    request: FecRequest,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let faults = store.faults();
    let peer = session.remote_peer_id();
    let (send_timeout, idle_timeout) =
        (store.limits.send_timeout, store.limits.request_idle_timeout);
    let Ok(redundancy) = request.redundancy() else {
        return;
    };
    // The shard size: at most what was asked for, and what this path's datagrams carry with
    // room left in each packet for the stream.
    let mut request = request;
    let conn = session.inner_conn();
    if let Some(max) = conn.max_datagram_size() {
        // Sized for the smallest MTU QUIC allows, so that the shards still fit when the path's
        // MTU estimate falls back (quinn takes bursts of random loss for a black hole).
        let above_min = usize::from(conn.stats().path.current_mtu).saturating_sub(MIN_MTU);
        let fits = max.saturating_sub(above_min + SHARD_HEADER_LEN + STREAM_ROOM) / 16 * 16;
        request.shard_len = request.shard_len.min(fits).max(MIN_SHARD_LEN);
    }
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
    let redundancy = Arc::new(Mutex::new(redundancy));
    let log = request.get.group_log;
    // 1. Proofs.
    for &(first, count) in &request.get.ranges {
        for index in first..first + count {
            let Ok(mut proof) = blob.outboard.proof(log, index) else {
                return;
            };
            if faults & Faults::WRONG_PROOF != 0 {
                if let Some(cv) = proof.first_mut() {
                    cv[0] ^= 1;
                }
            }
            let frame = encode_group_header(index, &proof);
            let write = write_frame_raw(&mut send, FRAME_PROOF, &frame);
            if !matches!(tokio::time::timeout(send_timeout, write).await, Ok(Ok(()))) {
                let _ = send.reset(quinn::VarInt::from_u32(codes::SEND_TIMEOUT));
                return;
            }
        }
    }
    // The requester's LOSS and REPAIR frames, read by a task of their own.
    let (repair_tx, mut repairs) = tokio::sync::mpsc::channel::<Vec<u64>>(REPAIR_QUEUE);
    let stripe_bytes = (request.data * request.shard_len) as u64;
    let runs = stripe_runs(blob.size(), log, &request.get.ranges, stripe_bytes);
    let first_stripe = runs.first().map_or(0, |r| r.0);
    // When each stripe went out, for the tuner's loop delay.
    let sent_at: SentLog = Arc::new(Mutex::new(Sent {
        log: std::collections::VecDeque::new(),
        end: first_stripe,
    }));
    let reached = session
        .fec_window()
        .load(std::sync::atomic::Ordering::Relaxed);
    let initial = reached.clamp(INITIAL_FLOW, MAX_FLOW);
    let (flow_tx, mut flow) = tokio::sync::watch::channel(Flow {
        through: first_stripe,
        window: (initial / stripe_bytes.max(1)).max(MIN_FLOW_STRIPES),
    });
    let reader = tokio::spawn(read_requests(
        recv,
        request.transfer,
        redundancy.clone(),
        repair_tx,
        FlowTuner {
            stripe_bytes,
            mark: std::time::Instant::now(),
            flow: flow_tx,
            session: session.clone(),
            sent_at: sent_at.clone(),
            min_loop: None,
            recent_loop: None,
            rate: None,
            cautious: None,
            mark_through: first_stripe,
        },
    ));
    let _stop_reader = AbortOnDrop(reader);
    let mut sender = ShardSender {
        conn: session.inner_conn().clone(),
        request: &request,
        faults,
        timeout: send_timeout,
        coders: HashMap::new(),
        stripe: Stripe::new(),
        padded: Vec::new(),
    };
    // 2. Shards, with repairs answered between stripes. Once the requester's side of the
    // stream has ended (it has every group, or gave the request up) the rest is not sent.
    let mut sent = 0u64;
    'stripes: for (first, last) in runs {
        let per_chunk = (READ_CHUNK as u64 / stripe_bytes).max(1);
        let mut next = Some(read_stripes(
            &blob,
            first,
            (last - first + 1).min(per_chunk),
            stripe_bytes,
        ));
        let mut at = first;
        while let Some(reading) = next.take() {
            let Ok(Ok(chunk)) = reading.await else {
                let _ = send.reset(quinn::VarInt::from_u32(3));
                return;
            };
            let chunk_first = at;
            let n = chunk.len().div_ceil(stripe_bytes as usize) as u64;
            at += n;
            if at <= last {
                next = Some(read_stripes(
                    &blob,
                    at,
                    (last - at + 1).min(per_chunk),
                    stripe_bytes,
                ));
            }
            for (i, data) in chunk.chunks(stripe_bytes as usize).enumerate() {
                // At most a window of stripes beyond what the requester has seen; repairs
                // are answered meanwhile (the requester's reports wait behind them).
                let stripe = chunk_first + i as u64;
                // A requester whose reports stop advancing is not waited for past the send
                // timeout (its reports alone, without progress, do not keep the request).
                let deadline = tokio::time::Instant::now() + send_timeout;
                loop {
                    loop {
                        match repairs.try_recv() {
                            Ok(list) => {
                                if !answer_repairs(&mut send, &blob, &sender, &list).await {
                                    return;
                                }
                            }
                            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                                break 'stripes
                            }
                        }
                    }
                    let open = {
                        let f = flow.borrow_and_update();
                        stripe < f.through.saturating_add(f.window)
                    };
                    if open {
                        break;
                    }
                    tokio::select! {
                        changed = flow.changed() => if changed.is_err() { break 'stripes },
                        list = repairs.recv() => {
                            let Some(list) = list else { break 'stripes };
                            if !answer_repairs(&mut send, &blob, &sender, &list).await {
                                return;
                            }
                        }
                        () = tokio::time::sleep_until(deadline) => {
                            tracing::debug!(peer = %peer.short(), "FEC requester stalled; request reset");
                            let _ = send.reset(quinn::VarInt::from_u32(codes::SEND_TIMEOUT));
                            return;
                        }
                    }
                }
                let Ok(parity) = redundancy.lock().map(|r| r.params().parity()) else {
                    return;
                };
                match sender.send(chunk_first + i as u64, data, parity).await {
                    Ok(true) => {
                        sent += 1;
                        if let Ok(mut s) = sent_at.lock() {
                            s.end = s.end.max(stripe + 1);
                            s.log.push_back((stripe, std::time::Instant::now()));
                        }
                    }
                    // The path no longer carries datagrams this large: the stripe goes reliably.
                    Ok(false) => {
                        if let Ok(mut s) = sent_at.lock() {
                            s.end = s.end.max(stripe + 1);
                        }
                        if !answer_repairs(&mut send, &blob, &sender, &[stripe]).await {
                            return;
                        }
                    }
                    Err(()) => return,
                }
            }
        }
    }
    tracing::debug!(
        sent,
        shard_len = request.shard_len,
        loss = redundancy.lock().map(|r| r.loss()).unwrap_or(0.0),
        "FEC shards sent"
    );
    // 3. The end of the datagrams, then repairs until the requester is done.
    let sent = sent.to_be_bytes();
    let end = write_frame_raw(&mut send, FRAME_FEC_END, &sent);
    if !matches!(tokio::time::timeout(send_timeout, end).await, Ok(Ok(()))) {
        return;
    }
    // Repairs until the requester ends its side; one that goes quiet is not waited for.
    loop {
        match tokio::time::timeout(idle_timeout, repairs.recv()).await {
            Ok(Some(list)) => {
                if !answer_repairs(&mut send, &blob, &sender, &list).await {
                    return;
                }
            }
            Ok(None) => break,
            Err(_) => {
                tracing::debug!(peer = %peer.short(), "FEC requester idle; request ended");
                let _ = send.reset(quinn::VarInt::from_u32(codes::SEND_TIMEOUT));
                return;
            }
        }
    }
    let _ = send.finish();
    // Groups are counted as served once the requester has acknowledged everything.
    let stopped = tokio::time::timeout(send_timeout, send.stopped()).await;
    if matches!(stopped, Ok(Ok(None))) {
        for &(first, count) in &request.get.ranges {
            for index in first..first + count {
                store.count_served(peer, &blob, log, index);
            }
        }
    }
}

/// Reads `count` stripes from `first` on a blocking thread (the last one may be short).
fn read_stripes(
    blob: &Arc<Blob>,
    first: u64,
    count: u64,
    stripe_bytes: u64,
) -> tokio::task::JoinHandle<std::io::Result<Vec<u8>>> {
    let blob = blob.clone();
    tokio::task::spawn_blocking(move || {
        let start = first * stripe_bytes;
        let end = (start + count * stripe_bytes).min(blob.size());
        let mut buf = vec![0u8; end.saturating_sub(start) as usize];
        blob.file_ref().read_exact_at(&mut buf, start)?;
        Ok(buf)
    })
}

/// Reads the requester's frames: LOSS reports feed the redundancy, REPAIR lists go to the
/// sender. Anything else, or a malformed frame, ends the request.
async fn read_requests(
    mut recv: quinn::RecvStream,
    transfer: u32,
    redundancy: Arc<Mutex<Redundancy>>,
    repairs: tokio::sync::mpsc::Sender<Vec<u64>>,
    mut tuner: FlowTuner,
) {
    while let Ok(Some(frame)) = read_frame(&mut recv).await {
        match frame.kind {
            FRAME_LOSS => match LossReport::decode(&frame.payload) {
                Ok(report) if report.transfer == transfer => {
                    let mut congested = false;
                    if let Ok(mut r) = redundancy.lock() {
                        congested = r.report(&report);
                    }
                    if congested {
                        tuner.on_congestion();
                    }
                    tuner.on_report(report.through);
                }
                _ => return,
            },
            FRAME_REPAIR => match decode_repair(&frame.payload) {
                Ok(list) => {
                    if repairs.send(list).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            _ => return,
        }
    }
}

/// How many stripes a FEC request may have in flight: those from `through` (the first the
/// requester has not seen yet) to `through + window`.
#[derive(Debug, Clone, Copy)]
struct Flow {
    through: u64,
    window: u64,
}

/// A request's window at first, in bytes (a connection carries up to three requests).
const INITIAL_FLOW: u64 = 2 << 20;
/// The window over the bandwidth × loop delay the requester's progress shows, while no queue
/// builds: it doubles each loop while it is the limit.
const FLOW_GAIN: f64 = 2.0;
/// The most the window falls by at once (a measured rate can be low for reasons other than
/// the path, a repair or a stall of the disk, and the window would collapse with it).
const DECREASE: f64 = 0.7;
/// The window's gain once congestion has been seen: enough to find more bandwidth, little
/// enough not to overflow a shallow queue again at once.
const CAUTIOUS_GAIN: f64 = 1.25;
/// Loop delays after the last congestion during which the window grows cautiously.
const CAUTIOUS_LOOPS: u32 = 8;
/// The smallest window, in stripes: above the requester's lag before it judges a stripe (8
/// stripes), so that a stripe lost at the head of the window is judged before it shuts.
const MIN_FLOW_STRIPES: u64 = 16;
/// The largest window of one request, in bytes.
const MAX_FLOW: u64 = 32 << 20;

/// Stripes sent and when, oldest first; the tuner drops those the requester has seen.
struct Sent {
    log: std::collections::VecDeque<(u64, std::time::Instant)>,
    /// One past the last stripe sent: a requester cannot have seen further, so its reports
    /// are capped here (a `through` of `u64::MAX` would open the window for good).
    end: u64,
}

type SentLog = Arc<Mutex<Sent>>;

/// Sizes a request's window from the requester's progress and the loop delay (from a
/// stripe's sending to the report that saw it: a round trip plus the requester's reporting
/// delay). While the loop delay stays within a tenth of the shortest seen (plus a report
/// interval), no queue builds and the window grows to [`FLOW_GAIN`] times the rate at which
/// `through` advances times that shortest delay (doubling every loop while it is the limit).
/// Once the delay grows by more than a quarter, a queue is building: the window falls back to
/// one bandwidth × delay, by at most [`DECREASE`] at once. A window of reports with loss well
/// above the random loss (see `LossEstimate`) is congestion: the window falls the same way
/// and grows by [`CAUTIOUS_GAIN`] only for the next [`CAUTIOUS_LOOPS`] loop delays. Datagrams have no flow control of their
/// own, and BBR (the controller lossy links need) sends more than a shallow queue holds:
/// behind 100 MB/s with 50 ms of queue at 100 ms RTT, a third of the shards were dropped
/// without this window. The session keeps the window for its next request.
struct FlowTuner {
    stripe_bytes: u64,
    /// When the current measurement began, and `through` then.
    mark: std::time::Instant,
    mark_through: u64,
    flow: tokio::sync::watch::Sender<Flow>,
    /// Where the window reached is kept for the session's next request.
    session: Session,
    sent_at: SentLog,
    /// The shortest loop delay seen.
    min_loop: Option<std::time::Duration>,
    /// A moving average of recent loop delays.
    recent_loop: Option<std::time::Duration>,
    /// The rate `through` advanced at over the last measurement, bytes per second.
    rate: Option<f64>,
    /// Until when the window grows by [`CAUTIOUS_GAIN`] only (congestion was seen).
    cautious: Option<std::time::Instant>,
}

impl FlowTuner {
    /// A window of reports showed congestion (loss well above the random loss): the window
    /// falls to one rate × shortest loop delay, the measurement starts over, and from now on
    /// the window grows cautiously.
    fn on_congestion(&mut self) {
        let (Some(rate), Some(loop_delay)) = (self.rate, self.min_loop) else {
            return;
        };
        let mut flow = *self.flow.borrow();
        flow.window = self.cut(flow.window, rate * loop_delay.as_secs_f64());
        let now = std::time::Instant::now();
        self.cautious = Some(now + loop_delay * CAUTIOUS_LOOPS);
        (self.mark, self.mark_through) = (now, flow.through);
        self.flow.send_replace(flow);
    }

    /// The window in stripes for `bytes` of data in flight, within the bounds.
    fn stripes(&self, bytes: f64) -> u64 {
        ((bytes as u64).min(MAX_FLOW) / self.stripe_bytes.max(1)).max(MIN_FLOW_STRIPES)
    }

    /// `window` brought down towards `bdp` bytes, by at most [`DECREASE`].
    fn cut(&self, window: u64, bdp: f64) -> u64 {
        let floor = (window as f64 * DECREASE) as u64;
        window.min(self.stripes(bdp).max(floor))
    }

    fn on_report(&mut self, through: u64) {
        let now = std::time::Instant::now();
        let mut flow = *self.flow.borrow();
        if let Ok(mut sent) = self.sent_at.lock() {
            flow.through = flow.through.max(through.min(sent.end));
            let mut newest = None;
            while sent
                .log
                .front()
                .is_some_and(|(stripe, _)| *stripe < flow.through)
            {
                newest = sent.log.pop_front();
            }
            if let Some((_, sent)) = newest {
                let sample = now.duration_since(sent);
                self.min_loop = Some(self.min_loop.map_or(sample, |m| m.min(sample)));
                self.recent_loop = Some(self.recent_loop.map_or(sample, |r| (r * 3 + sample) / 4));
            }
        }
        let Some(loop_delay) = self.min_loop else {
            self.flow.send_replace(flow);
            return;
        };
        let elapsed = now.duration_since(self.mark);
        if elapsed >= loop_delay.max(std::time::Duration::from_millis(10)) {
            let bytes = flow
                .through
                .saturating_sub(self.mark_through)
                .saturating_mul(self.stripe_bytes);
            let rate = bytes as f64 / elapsed.as_secs_f64();
            let bdp = rate * loop_delay.as_secs_f64();
            let recent = self.recent_loop.unwrap_or(loop_delay);
            let gain = if self.cautious.is_some_and(|until| now < until) {
                CAUTIOUS_GAIN
            } else {
                FLOW_GAIN
            };
            // The loop delay includes up to a report interval of the requester's: a slack of
            // one interval keeps that jitter from reading as a queue.
            let slack = crate::fec_fetch::TICK;
            if recent > loop_delay * 5 / 4 + slack {
                flow.window = self.cut(flow.window, bdp);
            } else if recent <= loop_delay * 11 / 10 + slack {
                flow.window = flow.window.max(self.stripes(gain * bdp));
            }
            self.rate = Some(rate);
            (self.mark, self.mark_through) = (now, flow.through);
            self.session.fec_window().store(
                flow.window * self.stripe_bytes,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.flow.send_replace(flow);
    }
}

/// Sends the data of `stripes` as STRIPE frames. False if the stream is gone, or the
/// requester took none of a frame for the send timeout.
async fn answer_repairs(
    send: &mut quinn::SendStream,
    blob: &Arc<Blob>,
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

/// Codes stripes and hands their shards to quinn, reusing its buffers.
struct ShardSender<'r> {
    conn: quinn::Connection,
    request: &'r FecRequest,
    faults: u8,
    /// How long a write may wait for the requester to take data.
    timeout: std::time::Duration,
    coders: HashMap<usize, Coder>,
    stripe: Stripe,
    padded: Vec<u8>,
}

impl ShardSender<'_> {
    /// Codes stripe `index` (its data, the last stripe short) with `parity` parity shards and
    /// sends the request's share of them. Ok(false): datagrams of this size no
    /// longer fit the path; Err: connection gone.
    async fn send(&mut self, index: u64, data: &[u8], parity: usize) -> Result<bool, ()> {
        let (shard_len, k, share) = (
            self.request.shard_len,
            self.request.data,
            self.request.share,
        );
        if self
            .conn
            .max_datagram_size()
            .is_none_or(|max| max < shard_len + SHARD_HEADER_LEN)
        {
            return Ok(false);
        }
        let params = ErasureParams::new(k, parity).map_err(|_| ())?;
        let stripe_bytes = k * shard_len;
        self.padded.clear();
        self.padded.extend_from_slice(data);
        self.padded.resize(stripe_bytes, 0);
        if self.faults & Faults::FLIPPED_DATA != 0 {
            if let Some(b) = self.padded.first_mut() {
                *b ^= 1;
            }
        }
        let coder = match self.coders.entry(params.parity()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Coder::new(params).map_err(|_| ())?)
            }
        };
        coder
            .encode(&self.padded, &mut self.stripe)
            .map_err(|_| ())?;
        if self.faults & Faults::FORGED_SHARDS != 0 {
            for forged in forgeries(self.request, index, params) {
                if self.conn.send_datagram_wait(forged.into()).await.is_err() {
                    return Err(());
                }
            }
        }
        // The share's shards in one buffer, each datagram a slice of it.
        let datagram = SHARD_HEADER_LEN + shard_len;
        let sent = usize::from(share.data_count) + share.parity_sent(parity);
        let mut buf = BytesMut::with_capacity(sent * datagram);
        let mut encoded = Vec::with_capacity(datagram);
        for i in share.indices(k, parity) {
            let Some(payload) = self.stripe.shard(i) else {
                return Err(());
            };
            encoded.clear();
            Shard {
                transfer: self.request.transfer,
                stripe: index,
                index: i as u8,
                params,
                payload,
            }
            .encode(&mut encoded);
            buf.put_slice(&encoded);
        }
        let mut all: Bytes = buf.freeze();
        while !all.is_empty() {
            let one = all.split_to(datagram);
            match self.conn.send_datagram_wait(one).await {
                Ok(()) => {}
                Err(quinn::SendDatagramError::TooLarge) => return Ok(false),
                Err(_) => return Err(()),
            }
        }
        Ok(true)
    }
}

/// Garbage shards for stripe `stripe` of shape `params` that a requester must drop, each
/// wrong in one way (the [`Faults::FORGED_SHARDS`] fault).
fn forgeries(request: &FecRequest, stripe: u64, params: ErasureParams) -> Vec<Vec<u8>> {
    let garbage = vec![0xa5; request.shard_len];
    let (k, share) = (params.data(), request.share);
    let shard = |transfer, stripe, index: usize, params, payload: &[u8]| {
        let mut out = Vec::new();
        Shard {
            transfer,
            stripe,
            index: index as u8,
            params,
            payload,
        }
        .encode(&mut out);
        out
    };
    let own = usize::from(share.data_first);
    let t = request.transfer;
    let mut forged = vec![
        shard(t, stripe, own, params, &garbage[1..]),
        shard(t, u64::MAX / 2, own, params, &garbage),
        shard(t ^ 0x8000_0000, stripe, own, params, &garbage),
    ];
    // An index beyond the shape: the header is patched after encoding.
    let mut beyond = shard(t, stripe, own, params, &garbage);
    beyond[13] = (params.total()).min(255) as u8;
    forged.push(beyond);
    let mut tag = shard(t, stripe, own, params, &garbage);
    tag[0] = 0x7f;
    forged.push(tag);
    if let Ok(other_k) = ErasureParams::new(k + 1, params.parity()) {
        forged.push(shard(t, stripe, own, other_k, &garbage));
    }
    // A data shard of another provider's share (only when the stripe is shared).
    let next = (own + usize::from(share.data_count)) % k;
    if !share.holds(k, next) {
        forged.push(shard(t, stripe, next, params, &garbage));
    }
    forged
}

/// The [`Faults::JUNK_ONLY`] fault: forged shards every 10 ms until the requester stops the
/// request or the connection ends (at most 10 minutes).
async fn send_junk(conn: &quinn::Connection, request: &FecRequest, send: &mut quinn::SendStream) {
    let Ok(params) = ErasureParams::new(request.data, request.min_parity) else {
        return;
    };
    let junk = forgeries(request, 0, params);
    for _ in 0..60_000 {
        for forged in &junk {
            if conn.send_datagram(forged.clone().into()).is_err() {
                return;
            }
        }
        tokio::select! {
            _ = send.stopped() => return,
            () = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
        }
    }
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
    use super::stripe_runs;

    #[test]
    fn stripe_runs_cover_the_groups_and_merge() {
        // Groups of 1 KiB, stripes of 1500 bytes, a 10 000-byte blob.
        let size = 10_000;
        assert_eq!(stripe_runs(size, 10, &[(0, 10)], 1500), vec![(0, 6)]);
        // Group 1 is bytes 1024..2048: stripes 0 and 1.
        assert_eq!(stripe_runs(size, 10, &[(1, 1)], 1500), vec![(0, 1)]);
        // Adjacent and overlapping runs merge; distant ones do not.
        assert_eq!(stripe_runs(size, 10, &[(0, 1), (1, 1)], 1500), vec![(0, 1)]);
        assert_eq!(
            stripe_runs(size, 10, &[(0, 1), (8, 2)], 1500),
            vec![(0, 0), (5, 6)]
        );
    }
}
