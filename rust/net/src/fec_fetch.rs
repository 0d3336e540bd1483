//! The requester side of FEC mode: groups arrive as erasure-coded shards in QUIC datagrams.
//!
//! A FEC worker takes a batch of groups from the fetch's queue (as a plain worker does) and
//! sends one FEC GET for it on a stream of its own. Shards come in through the session's
//! [`Router`], which hands each datagram to the request its transfer number names. A stripe is
//! rebuilt as soon as any k of its shards are in; its bytes go into the groups it covers, and
//! a group whose stripes and proof are all in goes to the disk stage, which verifies it against
//! the root before writing, as in plain mode.
//!
//! A stripe is given up on once shards of stripes [`LAG`] further on have arrived, or once
//! the provider has said END and no shard came for a short quiet time; its stripes are asked
//! for again with a REPAIR, and come back whole over the stream. What was received and lost
//! goes back to the provider in LOSS reports, from which it picks the parity of what it sends
//! next.

use crate::control::write_frame_raw;
use crate::error::{NetError, Result};
use crate::fec_serve::{stripe_runs, AbortOnDrop};
use crate::fetch::{read_answer_raw, Shared, Slot};
use crate::session::Session;
use bytes::Bytes;
use i6p_core::erasure::{Coder, ErasureParams, Stripe};
use i6p_core::fec::{
    decode_shape, decode_stripe, encode_repair, FecLayout, FecRequest, LossReport, Shard,
    FRAME_FEC_END, FRAME_FEC_GET, FRAME_FEC_SHAPE, FRAME_LOSS, FRAME_PROOF, FRAME_REPAIR,
    FRAME_STRIPE, MAX_REPAIR, MAX_SHARD_LEN, MAX_STRIPE_BYTES, MIN_SHARD_LEN, SHARD_TAG,
};
use i6p_core::transfer::{decode_group_header, GetRequest, GROUP_HEADER_LEN, STREAM_KIND_BLOBS};
use i6p_core::tree::{group_range, Cv};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How FEC mode codes a fetch.
#[derive(Debug, Clone, Copy)]
pub struct FecOptions {
    /// Largest bytes per shard; `None`: as large as the provider's datagrams allow, leaving
    /// room in each packet for the stream's proofs and repairs.
    pub shard_len: Option<usize>,
    /// Data shards per stripe (k).
    pub data: usize,
    /// Parity shards per stripe, at least ...
    pub min_parity: usize,
    /// ... and at most.
    pub max_parity: usize,
    /// Probability of losing a stripe (more than m of its shards) to aim for.
    pub target: f64,
}

impl Default for FecOptions {
    fn default() -> Self {
        Self {
            shard_len: None,
            data: 32,
            min_parity: 1,
            max_parity: 8,
            target: 1e-3,
        }
    }
}

impl FecOptions {
    /// Checks the options (the shard size against the path later, when it is known).
    pub fn validate(&self) -> Result<()> {
        let probe = FecRequest {
            transfer: 0,
            shard_len: self.shard_len.unwrap_or(MIN_SHARD_LEN),
            data: self.data,
            min_parity: self.min_parity,
            max_parity: self.max_parity,
            target_ppm: (self.target * 1e6).round() as u32,
            loss_ppm: 0,
            get: GetRequest {
                hash: [0; 32],
                group_log: 18,
                ranges: vec![(0, 1)],
            },
        };
        probe
            .check()
            .map_err(|e| NetError::Config(format!("FEC options: {e}")))
    }
}

/// Stripes behind the newest one seen after which a stripe still short of k shards is lost.
const LAG: u64 = 8;
/// Datagrams queued for one request before further ones are dropped (counted as lost).
const ROUTE_QUEUE: usize = 16384;
/// How often LOSS reports are sent and the quiet time after END is checked.
const TICK: Duration = Duration::from_millis(10);

/// Hands each SHARD datagram of a session to the request it belongs to.
pub(crate) struct Router {
    routes: Mutex<HashMap<u32, mpsc::Sender<Bytes>>>,
    next: AtomicU32,
}

impl Router {
    /// Starts routing `conn`'s datagrams until it closes.
    pub(crate) fn start(conn: quinn::Connection) -> Arc<Self> {
        let router = Arc::new(Self {
            routes: Mutex::new(HashMap::new()),
            next: AtomicU32::new(1),
        });
        let weak = Arc::downgrade(&router);
        tokio::spawn(async move {
            while let Ok(datagram) = conn.read_datagram().await {
                let Some(router) = weak.upgrade() else {
                    return;
                };
                if datagram.len() < 5 || datagram[0] != SHARD_TAG {
                    continue;
                }
                let transfer =
                    u32::from_be_bytes([datagram[1], datagram[2], datagram[3], datagram[4]]);
                let route = router
                    .routes
                    .lock()
                    .ok()
                    .and_then(|r| r.get(&transfer).cloned());
                // A shard of a finished request, or one its request cannot keep up with: lost.
                if let Some(route) = route {
                    let _ = route.try_send(datagram);
                }
            }
        });
        router
    }

    fn register(self: &Arc<Self>) -> (Route, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
        let transfer = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(transfer, tx);
        }
        (
            Route {
                router: self.clone(),
                transfer,
            },
            rx,
        )
    }
}

/// A registered transfer number; unregistered when dropped.
struct Route {
    router: Arc<Router>,
    transfer: u32,
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.router.routes.lock() {
            routes.remove(&self.transfer);
        }
    }
}

/// The largest shard size to ask for: the configured one, or any that fits a datagram (the
/// provider picks what its path carries). `None` if the peer takes no datagrams.
fn shard_len(session: &Session, options: &FecOptions) -> Option<usize> {
    session.inner_conn().max_datagram_size()?;
    Some(
        options
            .shard_len
            .unwrap_or(MAX_SHARD_LEN)
            .clamp(MIN_SHARD_LEN, MAX_SHARD_LEN)
            .min(MAX_STRIPE_BYTES / options.data.max(1)),
    )
}

/// A FEC worker: batches of groups from the queue, each fetched with one FEC GET.
pub(crate) async fn worker(shared: Arc<Shared>, tx: mpsc::Sender<Slot>) -> Result<()> {
    let Some(options) = shared.options.fec else {
        return crate::fetch::worker(shared, tx).await;
    };
    loop {
        if shared.gave_up() {
            return Err(shared.integrity_error());
        }
        let next = shared
            .queue
            .lock()
            .map_err(|_| NetError::Io("fetch queue lock poisoned".into()))?
            .pop_front();
        let Some((first, count)) = next else {
            return Ok(());
        };
        let Some(len) = shard_len(&shared.session, &options) else {
            // The peer takes no datagrams (or none large enough): a plain request instead.
            if !crate::fetch::plain_request(&shared, &tx, first, count).await? {
                return Ok(());
            }
            continue;
        };
        let batch = Batch::new(&shared, options, len, first, count)?;
        if !batch.run(&tx).await? {
            return Ok(());
        }
    }
}

/// Where one stripe of a batch stands.
enum StripeState {
    /// Short of k shards: the shards so far (a buffer once the first arrived).
    Pending(Option<Box<Stripe>>, u16),
    /// Rebuilt (or received whole); shards still arriving are counted.
    Rebuilt(u16, u16),
    /// Asked for again over the stream.
    Repairing,
    /// Counted in a loss report (rebuilt, or repaired).
    Settled,
}

/// One group being assembled.
struct GroupAsm {
    slot: Option<Slot>,
    stripes_left: u32,
    proof: Option<Vec<Cv>>,
    sent: bool,
}

/// One FEC GET and everything received for it.
struct Batch<'s> {
    shared: &'s Arc<Shared>,
    options: FecOptions,
    layout: FecLayout,
    params_k: usize,
    first: u64,
    count: u64,
    first_stripe: u64,
    stripes: Vec<StripeState>,
    groups: Vec<GroupAsm>,
    coders: HashMap<(usize, usize), Coder>,
    /// Stripe buffers for reuse (boxed as in [`StripeState::Pending`], so they move as a
    /// pointer between the two).
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Stripe>>,
    newest: u64,
    /// Stripes before this one have been judged (rebuilt or asked for again).
    judged: u64,
    /// One past the newest stripe a shard of which has arrived: the requester's progress,
    /// against which the provider keeps its window.
    seen: u64,
    received: u64,
    lost: u64,
    left: u64,
    repairs: Vec<u64>,
    /// Shards received, shards lost and stripes repaired, for the log.
    totals: (u64, u64, u64),
}

impl<'s> Batch<'s> {
    fn new(
        shared: &'s Arc<Shared>,
        options: FecOptions,
        shard_len: usize,
        first: u64,
        count: u64,
    ) -> Result<Self> {
        let mut batch = Self {
            shared,
            options,
            layout: FecLayout::new(shared.size, shard_len, usize::MAX).map_err(core)?,
            params_k: options.data,
            first,
            count,
            first_stripe: 0,
            stripes: Vec::new(),
            groups: Vec::new(),
            coders: HashMap::new(),
            spare: Vec::new(),
            newest: 0,
            judged: 0,
            seen: 0,
            received: 0,
            lost: 0,
            left: count,
            repairs: Vec::new(),
            totals: (0, 0, 0),
        };
        batch.shape(shard_len)?;
        Ok(batch)
    }

    /// Lays the batch out in shards of `shard_len` bytes (the provider's choice).
    fn shape(&mut self, shard_len: usize) -> Result<()> {
        let (size, log, first, count) = (
            self.shared.size,
            self.shared.group_log,
            self.first,
            self.count,
        );
        self.layout = FecLayout::new(size, shard_len, usize::MAX).map_err(core)?;
        let stripe_bytes = (self.options.data * shard_len) as u64;
        let runs = stripe_runs(size, log, &[(first, count)], stripe_bytes);
        let (first_stripe, last_stripe) = runs.first().copied().unwrap_or((0, 0));
        self.first_stripe = first_stripe;
        self.newest = first_stripe;
        self.judged = first_stripe;
        self.seen = first_stripe;
        let n = (last_stripe - first_stripe + 1) as usize;
        self.stripes = (0..n).map(|_| StripeState::Pending(None, 0)).collect();
        self.groups = (first..first + count)
            .map(|index| {
                let (start, len) = group_range(size, log, index);
                let stripes = (start + len - 1) / stripe_bytes - start / stripe_bytes + 1;
                GroupAsm {
                    slot: None,
                    stripes_left: stripes as u32,
                    proof: None,
                    sent: false,
                }
            })
            .collect();
        Ok(())
    }

    /// Sends the request and assembles its groups; false if the disk stage has stopped.
    async fn run(mut self, tx: &mpsc::Sender<Slot>) -> Result<bool> {
        let session = self.shared.session.clone();
        let router = session.datagram_router();
        let (route, mut datagrams) = router.register();
        let request = FecRequest {
            transfer: route.transfer,
            shard_len: self.layout.shard_len(),
            data: self.options.data,
            min_parity: self.options.min_parity,
            max_parity: self.options.max_parity,
            target_ppm: (self.options.target * 1e6).round() as u32,
            loss_ppm: self.shared.fec_loss_ppm(),
            get: GetRequest {
                hash: self.shared.hash,
                group_log: self.shared.group_log,
                ranges: vec![(self.first, self.count)],
            },
        };
        let (mut send, mut recv) = session.open_kind(Some(STREAM_KIND_BLOBS)).await?;
        write_frame_raw(&mut send, FRAME_FEC_GET, &request.encode()).await?;
        if let Some(detail) = read_answer_raw(&session, &mut recv, self.shared.size).await? {
            self.shared.fail(self.first, detail);
            let _ = recv.stop(quinn::VarInt::from_u32(0));
            return Ok(true);
        }
        // The provider picks the shard size: at most ours, and what its datagrams carry.
        let shape = crate::fetch::no_stall(async {
            crate::control::read_frame(&mut recv)
                .await?
                .ok_or_else(|| NetError::Stream("provider ended a FEC request at once".into()))
        })
        .await?;
        let shard_len = match shape.kind {
            FRAME_FEC_SHAPE => decode_shape(&shape.payload).map_err(core)?,
            other => {
                return Err(NetError::Protocol(format!(
                    "expected FEC SHAPE, got frame {other:#04x}"
                )))
            }
        };
        if shard_len > request.shard_len {
            return Err(NetError::Protocol(format!(
                "provider chose {shard_len}-byte shards, above the {} asked for",
                request.shard_len
            )));
        }
        if shard_len != self.layout.shard_len() {
            self.shape(shard_len)?;
        }

        // Stream frames are read by a task of their own: reading is not cancel-safe.
        let (frames_tx, mut frames) = mpsc::channel(64);
        let reader = tokio::spawn(read_frames(recv, frames_tx));
        let _reader = AbortOnDrop(reader);
        let mut ended = false;
        let mut reported = self.first_stripe;
        let mut last_shard = Instant::now();
        let mut last_activity = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while self.left > 0 {
            tokio::select! {
                datagram = datagrams.recv() => {
                    let Some(datagram) = datagram else { break };
                    last_shard = Instant::now();
                    last_activity = last_shard;
                    if !self.on_shard(&datagram, route.transfer, tx).await? {
                        return Ok(false);
                    }
                }
                frame = frames.recv() => {
                    last_activity = Instant::now();
                    match frame {
                        Some(Ok((kind, payload))) => {
                            if kind == FRAME_FEC_END {
                                ended = true;
                            } else if !self.on_frame(kind, &payload, tx).await? {
                                return Ok(false);
                            }
                        }
                        Some(Err(e)) => return Err(e),
                        None => return Err(NetError::Stream(
                            "provider ended a FEC request before every group".into())),
                    }
                }
                _ = tick.tick() => {
                    if last_activity.elapsed() > crate::fetch::STALL_TIMEOUT {
                        return Err(NetError::Stream(format!(
                            "provider sent nothing for {:?}", crate::fetch::STALL_TIMEOUT)));
                    }
                    let quiet = session.inner_conn().rtt() / 4 + Duration::from_millis(10);
                    if ended && last_shard.elapsed() > quiet {
                        self.judge(u64::MAX);
                    }
                    if self.received + self.lost > 0 || self.seen > reported {
                        reported = self.seen;
                        let report = LossReport {
                            transfer: route.transfer,
                            received: self.received,
                            lost: self.lost,
                            through: self.seen,
                        };
                        write_frame_raw(&mut send, FRAME_LOSS, &report.encode()).await?;
                        self.shared.fec_report(&report);
                        self.totals.0 += self.received;
                        self.totals.1 += self.lost;
                        (self.received, self.lost) = (0, 0);
                    }
                }
            }
            while !self.repairs.is_empty() {
                let n = self.repairs.len().min(MAX_REPAIR);
                let list: Vec<u64> = self.repairs.drain(..n).collect();
                self.totals.2 += list.len() as u64;
                self.shared.fec_repaired(list.len() as u64);
                write_frame_raw(&mut send, FRAME_REPAIR, &encode_repair(&list)).await?;
            }
        }
        // Every group is in, so every stripe was rebuilt or repaired: what the stripes not
        // judged yet received and lost counts too (it goes to no provider any more).
        self.judge(u64::MAX);
        self.repairs.clear();
        self.shared.fec_report(&LossReport {
            transfer: route.transfer,
            received: self.received,
            lost: self.lost,
            through: self.seen,
        });
        self.totals.0 += self.received;
        self.totals.1 += self.lost;
        tracing::debug!(
            first = self.first,
            count = self.count,
            stripes = self.stripes.len(),
            received = self.totals.0,
            lost = self.totals.1,
            repairs = self.totals.2,
            "FEC request done"
        );
        // Every group is in: say so, and read the provider's end of the stream.
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while frames.recv().await.is_some() {}
        })
        .await;
        Ok(true)
    }

    fn stripe_slot(&mut self, stripe: u64) -> Option<&mut StripeState> {
        let i = stripe.checked_sub(self.first_stripe)?;
        self.stripes.get_mut(usize::try_from(i).ok()?)
    }

    async fn on_shard(
        &mut self,
        datagram: &[u8],
        transfer: u32,
        tx: &mpsc::Sender<Slot>,
    ) -> Result<bool> {
        let shard = match Shard::decode(datagram, &self.layout) {
            Ok(s) if s.transfer == transfer && s.params.data() == self.params_k => s,
            // A malformed shard costs only itself: it is dropped (and so counted as lost).
            Ok(_) | Err(_) => {
                tracing::debug!("dropped a malformed or misdirected shard");
                return Ok(true);
            }
        };
        let (stripe_no, params, index) = (shard.stripe, shard.params, usize::from(shard.index));
        let shard_len = self.layout.shard_len();
        let mut spare = self.spare.pop();
        let Some(state) = self.stripe_slot(stripe_no) else {
            if let Some(s) = spare {
                self.spare.push(s);
            }
            return Ok(true);
        };
        let mut complete = false;
        match state {
            StripeState::Pending(buf, arrived) => {
                let stripe = buf.get_or_insert_with(|| {
                    let mut s = spare.take().unwrap_or_default();
                    let _ = s.reset(params, shard_len);
                    s
                });
                if stripe.params() == params && !stripe.is_present(index) {
                    stripe.insert(index, shard.payload).map_err(core)?;
                    *arrived += 1;
                    complete = usize::from(*arrived) >= params.data();
                }
            }
            StripeState::Rebuilt(arrived, _) => *arrived += 1,
            StripeState::Repairing | StripeState::Settled => {}
        }
        if let Some(s) = spare {
            self.spare.push(s);
        }
        if complete && !self.rebuild(stripe_no, params, tx).await? {
            return Ok(false);
        }
        self.seen = self.seen.max(stripe_no + 1);
        if stripe_no > self.newest {
            self.newest = stripe_no;
            self.judge(stripe_no.saturating_sub(LAG));
        }
        Ok(true)
    }

    /// Rebuilds a stripe that has k shards and passes its bytes to its groups.
    async fn rebuild(
        &mut self,
        stripe_no: u64,
        params: ErasureParams,
        tx: &mpsc::Sender<Slot>,
    ) -> Result<bool> {
        let Some(StripeState::Pending(Some(mut stripe), arrived)) = self
            .stripe_slot(stripe_no)
            .map(|s| std::mem::replace(s, StripeState::Rebuilt(0, 0)))
        else {
            return Ok(true);
        };
        let (start, end) = self.layout.stripe_range(params, stripe_no).map_err(core)?;
        let coder = match self.coders.entry((params.data(), params.parity())) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Coder::new(params).map_err(core)?)
            }
        };
        let result = coder
            .reconstruct(&mut stripe, end - start)
            .map(|d| d.to_vec());
        if let Some(state) = self.stripe_slot(stripe_no) {
            *state = StripeState::Rebuilt(arrived, params.total() as u16);
        }
        self.spare.push(stripe);
        let data = result.map_err(core)?;
        self.place(start, &data, tx).await
    }

    /// Copies a stripe's bytes (blob offset `start`) into the batch's groups, and hands every
    /// group that is complete to the disk stage.
    async fn place(&mut self, start: u64, data: &[u8], tx: &mpsc::Sender<Slot>) -> Result<bool> {
        let end = start + data.len() as u64;
        let log = self.shared.group_log;
        let first_group = (start >> log).max(self.first);
        let last_group = ((end - 1) >> log).min(self.first + self.count - 1);
        for index in first_group..=last_group {
            let (gstart, glen) = group_range(self.shared.size, log, index);
            let gend = gstart + glen;
            let (from, to) = (start.max(gstart), end.min(gend));
            if from >= to {
                continue;
            }
            let (pool, provider) = (&self.shared.pool, self.shared.provider);
            let Some(group) = self.groups.get_mut((index - self.first) as usize) else {
                continue;
            };
            let slot = group.slot.get_or_insert_with(|| {
                let mut slot = pool.take();
                slot.provider = provider;
                slot.index = index;
                slot.data.resize(glen as usize, 0);
                slot
            });
            slot.data[(from - gstart) as usize..(to - gstart) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            group.stripes_left = group.stripes_left.saturating_sub(1);
            if !self.try_send(index, tx).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Hands group `index` to the disk stage if its data and proof are all in.
    async fn try_send(&mut self, index: u64, tx: &mpsc::Sender<Slot>) -> Result<bool> {
        let Some(group) = self.groups.get_mut((index - self.first) as usize) else {
            return Ok(true);
        };
        if group.sent || group.stripes_left > 0 || group.proof.is_none() {
            return Ok(true);
        }
        let (Some(mut slot), Some(proof)) = (group.slot.take(), group.proof.take()) else {
            return Ok(true);
        };
        group.sent = true;
        self.left -= 1;
        slot.proof = proof;
        self.shared
            .fetched
            .fetch_add(slot.data.len() as u64, Ordering::Relaxed);
        Ok(tx.send(slot).await.is_ok())
    }

    /// Judges every stripe before `until`: one still short of k shards is asked for again;
    /// what was received and lost is counted for the next LOSS report.
    fn judge(&mut self, until: u64) {
        let last = self.first_stripe + self.stripes.len() as u64;
        let until = until.min(last);
        while self.judged < until {
            let stripe_no = self.judged;
            self.judged += 1;
            let Some(state) = self.stripe_slot(stripe_no) else {
                continue;
            };
            match std::mem::replace(state, StripeState::Settled) {
                StripeState::Pending(buf, arrived) => {
                    let total = buf.as_ref().map(|b| b.params().total()).unwrap_or(0);
                    if let Some(b) = buf {
                        self.spare.push(b);
                    }
                    self.received += u64::from(arrived);
                    // A stripe of which nothing arrived: its shape is unknown, assume k + 1.
                    let total = if total == 0 { self.params_k + 1 } else { total };
                    self.lost += (total as u64).saturating_sub(u64::from(arrived));
                    if let Some(state) = self.stripe_slot(stripe_no) {
                        *state = StripeState::Repairing;
                    }
                    self.repairs.push(stripe_no);
                }
                StripeState::Rebuilt(arrived, total) => {
                    self.received += u64::from(arrived);
                    self.lost += u64::from(total.saturating_sub(arrived));
                }
                other => {
                    if let Some(state) = self.stripe_slot(stripe_no) {
                        *state = other;
                    }
                }
            }
        }
    }

    /// A PROOF or STRIPE frame from the stream.
    async fn on_frame(
        &mut self,
        kind: u8,
        payload: &[u8],
        tx: &mpsc::Sender<Slot>,
    ) -> Result<bool> {
        match kind {
            FRAME_PROOF => {
                let mut header = [0u8; GROUP_HEADER_LEN];
                let head = payload
                    .get(..GROUP_HEADER_LEN)
                    .ok_or_else(|| NetError::Protocol("truncated PROOF frame".into()))?;
                header.copy_from_slice(head);
                let (index, proof_len) =
                    decode_group_header(header).map_err(|e| NetError::Protocol(e.to_string()))?;
                let proof = &payload[GROUP_HEADER_LEN..];
                if proof.len() != proof_len * 32
                    || index < self.first
                    || index >= self.first + self.count
                {
                    return Err(NetError::Protocol(format!(
                        "PROOF for group {index} outside the request, or of the wrong length"
                    )));
                }
                let group = &mut self.groups[(index - self.first) as usize];
                group.proof = Some(
                    proof
                        .chunks_exact(32)
                        .map(|c| {
                            let mut cv = [0u8; 32];
                            cv.copy_from_slice(c);
                            cv
                        })
                        .collect(),
                );
                self.try_send(index, tx).await
            }
            FRAME_STRIPE => {
                let (stripe_no, data) =
                    decode_stripe(payload).map_err(|e| NetError::Protocol(e.to_string()))?;
                let params = ErasureParams::new(self.params_k, 1).map_err(core)?;
                let (start, end) = self
                    .layout
                    .stripe_range(params, stripe_no)
                    .map_err(|e| NetError::Protocol(e.to_string()))?;
                if data.len() as u64 != end - start {
                    return Err(NetError::Protocol(format!(
                        "STRIPE {stripe_no} has {} bytes, not {}",
                        data.len(),
                        end - start
                    )));
                }
                match self.stripe_slot(stripe_no) {
                    // Asked for, or sent whole because its shards no longer fit a datagram.
                    Some(state @ (StripeState::Repairing | StripeState::Pending(..))) => {
                        *state = StripeState::Settled
                    }
                    // Rebuilt from late shards meanwhile, or never asked for: nothing to do.
                    _ => return Ok(true),
                }
                self.place(start, data, tx).await
            }
            other => Err(NetError::Protocol(format!(
                "unexpected frame {other:#04x} in a FEC request"
            ))),
        }
    }
}

fn core(e: i6p_core::CoreError) -> NetError {
    NetError::Protocol(e.to_string())
}

/// Reads frames off the request's stream until it ends.
async fn read_frames(mut recv: quinn::RecvStream, out: mpsc::Sender<Result<(u8, Vec<u8>)>>) {
    loop {
        let item = match crate::control::read_frame(&mut recv).await {
            Ok(Some(frame)) => Ok((frame.kind, frame.payload)),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let stop = item.is_err();
        if out.send(item).await.is_err() || stop {
            return;
        }
    }
}
