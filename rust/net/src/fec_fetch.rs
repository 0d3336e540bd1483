//! The requester side of FEC mode: groups arrive as erasure-coded shards in QUIC datagrams.
//!
//! A FEC worker takes a batch of groups from the fetch's queue (as a plain worker does) and
//! sends a FEC GET for it on a stream of its own, to one provider, or with several providers
//! to each of them at once, every one for its [`Share`] of each stripe's shards (a run of
//! data shards and interleaved parity numbers), so that any k shards from any of them rebuild
//! a stripe. Shards come in through each session's [`Router`], which hands each datagram to
//! the request its transfer number names. A stripe is rebuilt as soon as any k of its shards
//! are in; its bytes go into the groups it covers, and a group whose stripes and proof are all
//! in goes to the disk stage, which verifies it against the root before writing, as in plain
//! mode. A group made of several providers' shards that fails verification cannot be pinned
//! on one of them: the fetch stops combining, and its later batches each come from one
//! provider, which names the culprit.
//!
//! A stripe is given up on once every provider still sending has sent shards of stripes
//! [`LAG`] further on (or has said END, or gone quiet, and no shard came for a short time);
//! its stripes are asked for again with a REPAIR to one of the providers, and come back whole
//! over the stream. What each provider's shards did goes back to it in LOSS reports, from
//! which it picks the parity of what it sends next. A provider whose stream fails mid-batch
//! is dropped from the fetch; the others answer its repairs.

use crate::control::write_frame_raw;
use crate::error::{NetError, Result};
use crate::fec_serve::{stripe_runs, AbortOnDrop};
use crate::fetch::{read_answer_raw, Claim, Shared, Slot, MIXED};
use crate::session::Session;
use bytes::Bytes;
use i6p_core::erasure::{Coder, ErasureParams, Stripe};
use i6p_core::fec::{
    decode_shape, decode_stripe, encode_repair, FecLayout, FecRequest, LossReport, Shard, Share,
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
    /// Parity shards per stripe (per provider when several share a stripe), at least ...
    pub min_parity: usize,
    /// ... and at most.
    pub max_parity: usize,
    /// Probability of losing a stripe (more than m of its shards) to aim for.
    pub target: f64,
    /// With several providers, have each send a share of every stripe's shards (any k of
    /// them rebuild it) rather than each serving whole batches of its own. Off by default:
    /// so far it measured slower than separate batches (see the FEC benches).
    pub combine: bool,
}

impl Default for FecOptions {
    fn default() -> Self {
        Self {
            shard_len: None,
            data: 32,
            min_parity: 1,
            max_parity: 8,
            target: 1e-3,
            combine: false,
        }
    }
}

impl FecOptions {
    /// Checks the options (the shard size against the path later, when it is known).
    pub fn validate(&self) -> Result<()> {
        self.request(0, Share::whole(self.data), 0, vec![(0, 1)])
            .check()
            .map_err(|e| NetError::Config(format!("FEC options: {e}")))
    }

    fn request(
        &self,
        transfer: u32,
        share: Share,
        loss_ppm: u32,
        ranges: Vec<(u64, u64)>,
    ) -> FecRequest {
        FecRequest {
            transfer,
            shard_len: self.shard_len.unwrap_or(MIN_SHARD_LEN),
            data: self.data,
            min_parity: self.min_parity,
            max_parity: self.max_parity,
            target_ppm: (self.target * 1e6).round() as u32,
            loss_ppm,
            share,
            get: GetRequest {
                hash: [0; 32],
                group_log: 18,
                ranges,
            },
        }
    }
}

/// Providers that can share one stripe at most (each needs a data shard of its own).
pub(crate) const MAX_MEMBERS: usize = 8;
/// Stripes behind the newest one seen after which a stripe still short of k shards is lost.
const LAG: u64 = 8;
/// Datagrams queued for one batch before further ones are dropped (counted as lost).
const ROUTE_QUEUE: usize = 16384;
/// How often LOSS reports are sent and the quiet time after END is checked.
pub(crate) use i6p_core::fec::TICK;
/// A provider that sent no shard for this long (and three round trips) while another did is
/// not waited for before stripes are judged: its shards are counted lost and repaired.
const MEMBER_QUIET: Duration = Duration::from_millis(200);

/// Shards a provider must have sent in a batch for its delivery rate to count.
const MIN_RATE_SHARDS: u64 = 64;

/// A datagram and the member of its batch it came from.
type Tagged = (usize, Bytes);

/// Hands each SHARD datagram of a session to the request it belongs to.
pub(crate) struct Router {
    routes: Mutex<HashMap<u32, (mpsc::Sender<Tagged>, usize)>>,
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
                if let Some((route, member)) = route {
                    let _ = route.try_send((member, datagram));
                }
            }
        });
        router
    }

    /// A transfer number whose datagrams go to `tx`, tagged with `member`.
    fn register(self: &Arc<Self>, tx: mpsc::Sender<Tagged>, member: usize) -> Route {
        let transfer = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(transfer, (tx, member));
        }
        Route {
            router: self.clone(),
            transfer,
        }
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
pub(crate) fn shard_len(session: &Session, options: &FecOptions) -> Option<usize> {
    session.inner_conn().max_datagram_size()?;
    Some(
        options
            .shard_len
            .unwrap_or(MAX_SHARD_LEN)
            .clamp(MIN_SHARD_LEN, MAX_SHARD_LEN)
            .min(MAX_STRIPE_BYTES / options.data.max(1)),
    )
}

/// A FEC worker for one provider: batches of groups from the queue, each fetched with one
/// FEC GET.
pub(crate) async fn worker(shared: Arc<Shared>, tx: mpsc::Sender<Slot>) -> Result<()> {
    let Some(options) = shared.options.fec else {
        return crate::fetch::worker(shared, tx).await;
    };
    loop {
        if shared.gave_up() {
            return Err(shared.integrity_error());
        }
        let Some(claim) = shared.claim(true)? else {
            return Ok(());
        };
        let Some(len) = shard_len(&shared.session, &options) else {
            // The peer takes no datagrams (or none large enough): a plain request instead.
            if !crate::fetch::plain_request(&shared, &tx, &claim).await? {
                return Ok(());
            }
            continue;
        };
        let batch = Batch::new(vec![shared.clone()], options, len, &claim, &[])?;
        if batch.run(&tx).await?.is_none() {
            return Ok(());
        }
    }
}

/// A FEC worker for several providers at once: each batch goes to all of them still in the
/// fetch, each sending its share of every stripe. A provider's run of data shards follows
/// the rate it delivered its shards at in the batches before, so that a slow one does not
/// hold up every stripe. Ends (leaving the queue to the next round) once combining has been
/// given up; fails when no provider is left.
pub(crate) async fn joint_worker(
    providers: Vec<Arc<Shared>>,
    tx: mpsc::Sender<Slot>,
) -> Result<()> {
    let Some(common) = providers.first().cloned() else {
        return Ok(());
    };
    let Some(options) = common.options.fec else {
        return Ok(());
    };
    // Delivery rates by provider (bytes per second), from the batches so far.
    let mut rates: HashMap<usize, f64> = HashMap::new();
    loop {
        if !common.combining() {
            return Ok(());
        }
        let members: Vec<Arc<Shared>> = providers
            .iter()
            .filter(|p| !p.is_dropped() && !p.gave_up())
            .cloned()
            .collect();
        if members.is_empty() {
            return Err(NetError::Io("no provider left for a FEC batch".into()));
        }
        let len = members
            .iter()
            .map(|p| shard_len(&p.session, &options))
            .min()
            .flatten();
        let Some(len) = len else {
            return Ok(());
        };
        let Some(claim) = common.claim(false)? else {
            return Ok(());
        };
        let known: Vec<f64> = members
            .iter()
            .filter_map(|p| rates.get(&p.provider).copied())
            .collect();
        let typical = known.iter().sum::<f64>() / known.len().max(1) as f64;
        let weights: Vec<f64> = members
            .iter()
            .map(|p| rates.get(&p.provider).copied().unwrap_or(typical).max(1.0))
            .collect();
        let counts = apportion(options.data, &weights);
        let batch = Batch::new(members, options, len, &claim, &counts)?;
        let Some(measured) = batch.run(&tx).await? else {
            return Ok(());
        };
        for (provider, rate) in measured {
            let r = rates.entry(provider).or_insert(rate);
            *r = (*r + rate) / 2.0;
        }
    }
}

/// Splits `data` shards over parts in proportion to `weights`, each getting at least one
/// (largest remainders first). Needs `weights.len() <= data`.
fn apportion(data: usize, weights: &[f64]) -> Vec<usize> {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    if n == 0 || total <= 0.0 || data < n {
        return vec![1; n];
    }
    let spare = (data - n) as f64;
    let exact: Vec<f64> = weights.iter().map(|w| spare * w / total).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| 1 + e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra)
    });
    let mut left = data.saturating_sub(counts.iter().sum());
    for &i in order.iter().cycle().take(n * 2) {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

/// Where one stripe of a batch stands.
enum StripeState {
    /// Short of k shards: the shards so far (a buffer once the first arrived), and how many.
    Pending(Option<Box<Stripe>>, u16),
    /// Rebuilt (or received whole); shards still arriving are counted.
    Rebuilt,
    /// Asked for again over the stream, from this member.
    Repairing(usize),
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

/// One provider's part in a batch: its request, stream and what its shards did.
struct Member {
    shared: Arc<Shared>,
    share: Share,
    transfer: u32,
    _route: Option<Route>,
    send: Option<quinn::SendStream>,
    dead: bool,
    ended: bool,
    last_shard: Instant,
    /// The newest stripe a shard of which came from it.
    newest: Option<u64>,
    reported: u64,
    /// The parity count its last shard said its stripes are coded with.
    parity: u16,
    /// Shards received and lost since its last report.
    received: u64,
    lost: u64,
    /// Shards received in all.
    shards: u64,
}

impl Member {
    /// One past the newest stripe it sent a shard of (`first` before any): its progress,
    /// against which it keeps its window.
    fn through(&self, first: u64) -> u64 {
        self.newest.map_or(first, |n| n + 1)
    }

    /// Shards it sends of a stripe coded with `parity` parity shards.
    fn expected(&self, parity: u16) -> u16 {
        u16::from(self.share.data_count) + self.share.parity_sent(usize::from(parity)) as u16
    }
}

/// Shards one member sent for one stripe: arrived (distinct ones), and expected (0: unknown
/// yet).
#[derive(Clone, Copy, Default)]
struct Tally {
    arrived: u16,
    expected: u16,
}

/// Which shards of one stripe have arrived, from any member (their shares are disjoint), so
/// that a duplicate is told from a new shard even after the stripe was rebuilt and its buffer
/// went back for reuse.
#[derive(Clone, Copy, Default)]
struct ShardSet([u64; i6p_core::erasure::MAX_SHARDS / 64]);

impl ShardSet {
    /// Adds shard `index`: true if it was not in yet (false for an index beyond any stripe).
    fn insert(&mut self, index: usize) -> bool {
        let bit = 1u64 << (index % 64);
        let Some(word) = self.0.get_mut(index / 64) else {
            return false;
        };
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}

/// What came from a member's stream.
enum Event {
    Frame(u8, Vec<u8>),
    Ended,
    Failed(NetError),
}

/// What opening a member's request gave.
enum Opened {
    Open(quinn::SendStream, quinn::RecvStream, usize),
    Refused(String),
}

/// One batch of groups, fetched with a FEC GET to each member, and everything received.
struct Batch {
    common: Arc<Shared>,
    options: FecOptions,
    members: Vec<Member>,
    layout: FecLayout,
    /// The stripe shape shards are assembled in: k data shards and the most parity any
    /// member may code with.
    wide: ErasureParams,
    coder: Option<Coder>,
    first: u64,
    count: u64,
    first_stripe: u64,
    stripes: Vec<StripeState>,
    /// Per stripe, per member.
    tallies: Vec<Tally>,
    /// Per stripe: the shards that arrived.
    seen: Vec<ShardSet>,
    /// When the batch last made progress: a new shard of a stripe still short of k, or a
    /// frame that brought a proof or a stripe. Anything else (junk, duplicates, replays) does
    /// not hold off the stall timeout.
    progressed: Instant,
    groups: Vec<GroupAsm>,
    /// Stripe buffers for reuse (boxed as in [`StripeState::Pending`], so they move as a
    /// pointer between the two).
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Stripe>>,
    /// Stripes before this one have been judged (rebuilt or asked for again).
    judged: u64,
    left: u64,
    repairs: Vec<u64>,
    next_repairer: usize,
    /// Bytes the last `place` put into groups.
    placed: u64,
    /// Shards received, shards lost and stripes repaired, for the log.
    totals: (u64, u64, u64),
    /// Where this batch now ends (another provider may take over its second half), and
    /// how far it has delivered.
    progress: Arc<crate::fetch::BatchProgress>,
}

impl Batch {
    fn new(
        members: Vec<Arc<Shared>>,
        options: FecOptions,
        shard_len: usize,
        claim: &Claim,
        counts: &[usize],
    ) -> Result<Self> {
        let (first, count) = (claim.first, claim.count);
        let common = members
            .first()
            .cloned()
            .ok_or_else(|| NetError::Config("a FEC batch needs a provider".into()))?;
        let parts = members.len();
        let now = Instant::now();
        let members = members
            .into_iter()
            .enumerate()
            .map(|(i, shared)| {
                let share = if counts.len() == parts {
                    Share::split_by(counts, i)
                } else {
                    Share::split(options.data, i, parts)
                };
                let share = share.ok_or_else(|| {
                    NetError::Config(format!(
                        "{parts} providers cannot share stripes of {} data shards",
                        options.data
                    ))
                })?;
                Ok(Member {
                    shared,
                    share,
                    transfer: 0,
                    _route: None,
                    send: None,
                    dead: false,
                    ended: false,
                    last_shard: now,
                    newest: None,
                    reported: 0,
                    parity: options.min_parity as u16,
                    received: 0,
                    lost: 0,
                    shards: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wide = ErasureParams::new(options.data, options.max_parity).map_err(core)?;
        let mut batch = Self {
            common,
            options,
            members,
            layout: FecLayout::new(0, shard_len, usize::MAX).map_err(core)?,
            wide,
            coder: None,
            first,
            count,
            first_stripe: 0,
            stripes: Vec::new(),
            tallies: Vec::new(),
            seen: Vec::new(),
            progressed: now,
            groups: Vec::new(),
            spare: Vec::new(),
            judged: 0,
            left: count,
            repairs: Vec::new(),
            next_repairer: 0,
            placed: 0,
            totals: (0, 0, 0),
            progress: claim.progress(),
        };
        batch.shape(shard_len)?;
        Ok(batch)
    }

    /// Lays the batch out in shards of `shard_len` bytes (the providers' choice).
    fn shape(&mut self, shard_len: usize) -> Result<()> {
        let (size, log, first, count) = (
            self.common.size,
            self.common.group_log,
            self.first,
            self.count,
        );
        self.layout = FecLayout::new(size, shard_len, usize::MAX).map_err(core)?;
        let stripe_bytes = (self.options.data * shard_len) as u64;
        let runs = stripe_runs(size, log, &[(first, count)], stripe_bytes);
        let (first_stripe, last_stripe) = runs.first().copied().unwrap_or((0, 0));
        self.first_stripe = first_stripe;
        self.judged = first_stripe;
        for m in &mut self.members {
            m.reported = first_stripe;
        }
        let n = (last_stripe - first_stripe + 1) as usize;
        self.stripes = (0..n).map(|_| StripeState::Pending(None, 0)).collect();
        self.tallies = vec![Tally::default(); n * self.members.len()];
        self.seen = vec![ShardSet::default(); n];
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

    /// Whether this batch combines several providers' shards.
    fn joint(&self) -> bool {
        self.members.len() > 1
    }

    /// Opens every member's request at once; the streams to read, by member. `None`: the
    /// batch cannot go on as laid out (every member refused, or they chose different shard
    /// sizes) and its groups were put back or left for the next round.
    async fn open(
        &mut self,
        datagrams: &mpsc::Sender<Tagged>,
    ) -> Result<Option<Vec<(usize, quinn::RecvStream)>>> {
        let mut opening = tokio::task::JoinSet::new();
        for (i, member) in self.members.iter_mut().enumerate() {
            let session = member.shared.session.clone();
            let route = session.datagram_router().register(datagrams.clone(), i);
            member.transfer = route.transfer;
            member._route = Some(route);
            let mut request = self.options.request(
                member.transfer,
                member.share,
                self.common.fec_loss_ppm(),
                vec![(self.first, self.count)],
            );
            request.shard_len = self.layout.shard_len();
            request.get.hash = self.common.hash;
            request.get.group_log = self.common.group_log;
            let (size, stall) = (self.common.size, self.common.options.stall_timeout);
            opening.spawn(async move { (i, open_request(session, request, size, stall).await) });
        }
        let mut chosen: Option<usize> = None;
        let mut agreed = true;
        let mut streams = Vec::new();
        let mut last_error = None;
        while let Some(joined) = opening.join_next().await {
            let (i, result) =
                joined.map_err(|e| NetError::Io(format!("FEC request task failed: {e}")))?;
            match result {
                Ok(Opened::Open(send, recv, len)) => {
                    agreed &= chosen.is_none_or(|c| c == len);
                    chosen = Some(chosen.map_or(len, |c| c.min(len)));
                    if let Some(m) = self.members.get_mut(i) {
                        m.send = Some(send);
                    }
                    streams.push((i, recv));
                }
                Ok(Opened::Refused(detail)) => {
                    if let Some(m) = self.members.get_mut(i) {
                        m.shared.fail(self.first, detail);
                        m.dead = true;
                    }
                }
                Err(e) if !self.joint() => return Err(e),
                Err(e) => {
                    if let Some(m) = self.members.get_mut(i) {
                        m.dead = true;
                        m.shared.drop_with(e.clone());
                    }
                    last_error = Some(e);
                }
            }
        }
        let Some(shard_len) = chosen else {
            // Nobody is serving this batch: refusals are counted and the next round asks
            // again; with every member gone, the batch fails.
            return match last_error {
                Some(e) if self.members.iter().all(|m| m.shared.is_dropped()) => Err(e),
                _ => Ok(None),
            };
        };
        if !agreed {
            // Shards of different sizes cannot be combined: from now on each provider
            // serves batches of its own, starting with this one.
            tracing::debug!("providers chose different shard sizes: not combining");
            self.common.stop_combining();
            self.common.put_back(self.first, self.count);
            return Ok(None);
        }
        if shard_len != self.layout.shard_len() {
            self.shape(shard_len)?;
        }
        Ok(Some(streams))
    }

    /// Fetches the batch's groups; the rate each provider delivered shards at (bytes per
    /// second, by its place in the fetch), or `None` if the disk stage has stopped.
    async fn run(mut self, tx: &mpsc::Sender<Slot>) -> Result<Option<Vec<(usize, f64)>>> {
        let (datagrams_tx, mut datagrams) = mpsc::channel(ROUTE_QUEUE);
        let Some(streams) = self.open(&datagrams_tx).await? else {
            return Ok(Some(Vec::new()));
        };
        drop(datagrams_tx);
        // Stream frames are read by tasks of their own: reading is not cancel-safe.
        let (frames_tx, mut frames) = mpsc::channel(64);
        let mut readers = Vec::new();
        for (i, recv) in streams {
            readers.push(AbortOnDrop(tokio::spawn(read_frames(
                i,
                recv,
                frames_tx.clone(),
            ))));
        }
        drop(frames_tx);
        let now = Instant::now();
        for m in &mut self.members {
            m.last_shard = now;
        }
        self.progressed = now;
        let stall = self.common.options.stall_timeout;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while self.left > 0 {
            tokio::select! {
                datagram = datagrams.recv() => {
                    let Some((member, datagram)) = datagram else { break };
                    if self.members.get(member).is_none_or(|m| m.dead) {
                        continue;
                    }
                    if !self.on_shard(member, &datagram, tx).await? {
                        return Ok(None);
                    }
                }
                event = frames.recv() => {
                    let Some((member, event)) = event else {
                        return Err(NetError::Stream(
                            "every provider ended a FEC request before every group".into()));
                    };
                    if self.members.get(member).is_none_or(|m| m.dead) {
                        continue;
                    }
                    match event {
                        Event::Frame(FRAME_FEC_END, _) => {
                            if let Some(m) = self.members.get_mut(member) {
                                m.ended = true;
                            }
                        }
                        Event::Frame(kind, payload) => {
                            match self.on_frame(member, kind, &payload, tx).await {
                                Ok(true) => {}
                                Ok(false) => return Ok(None),
                                Err(e) => self.kill(member, e)?,
                            }
                        }
                        Event::Ended => self.kill(member, NetError::Stream(
                            "provider ended a FEC request before every group".into()))?,
                        Event::Failed(e) => self.kill(member, e)?,
                    }
                }
                _ = tick.tick() => {
                    self.drop_taken_over();
                    if self.left == 0 {
                        break;
                    }
                    if self.progressed.elapsed() > stall {
                        return Err(NetError::Stream(format!(
                            "provider sent nothing useful for {stall:?}")));
                    }
                    // Dropped by the fetch meanwhile (it stopped sending while others did).
                    for i in 0..self.members.len() {
                        let m = &self.members[i];
                        if !m.dead && m.shared.is_dropped() {
                            self.kill(i, NetError::Stream("dropped from the fetch".into()))?;
                        }
                    }
                    let horizon = self.horizon();
                    self.judge(horizon);
                    self.report().await?;
                }
            }
            self.send_repairs().await?;
        }
        // Every group is in, so every stripe was rebuilt or repaired: what the stripes not
        // judged yet received and lost counts too (it goes to no provider any more).
        self.judge(u64::MAX);
        self.repairs.clear();
        let first = self.first_stripe;
        for m in &mut self.members {
            let report = LossReport {
                transfer: m.transfer,
                received: m.received,
                lost: m.lost,
                through: m.through(first),
            };
            if !m.dead {
                self.common.fec_report(&report);
            }
            self.totals.0 += m.received;
            self.totals.1 += m.lost;
            (m.received, m.lost) = (0, 0);
        }
        tracing::debug!(
            first = self.first,
            count = self.count,
            providers = self.members.len(),
            stripes = self.stripes.len(),
            received = self.totals.0,
            lost = self.totals.1,
            repairs = self.totals.2,
            "FEC batch done"
        );
        // Every group is in: say so, and read the providers' ends of their streams. If
        // another provider took over the end of the batch, its stripes are not wanted: the
        // request is cancelled instead.
        let cut_short = self.progress.end() < self.first + self.count;
        for m in &mut self.members {
            if let Some(mut send) = m.send.take() {
                if cut_short {
                    let _ = send.reset(quinn::VarInt::from_u32(0));
                } else {
                    let _ = send.finish();
                }
            }
        }
        if !cut_short {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while frames.recv().await.is_some() {}
            })
            .await;
        }
        drop(readers);
        let shard_len = self.layout.shard_len() as f64;
        Ok(Some(
            self.members
                .iter()
                .filter(|m| !m.dead && m.shards >= MIN_RATE_SHARDS)
                .map(|m| {
                    let took = m.last_shard.duration_since(now).as_secs_f64().max(1e-3);
                    (m.shared.provider, m.shards as f64 * shard_len / took)
                })
                .collect(),
        ))
    }

    /// Takes member `i` out of the batch after `e`. Alone, its error is the batch's; with
    /// others left, it is dropped from the fetch and its repairs go to the others.
    fn kill(&mut self, i: usize, e: NetError) -> Result<()> {
        let joint = self.joint();
        let Some(m) = self.members.get_mut(i) else {
            return Ok(());
        };
        if m.dead {
            return Ok(());
        }
        if !joint {
            return Err(e);
        }
        tracing::debug!(provider = %m.shared.session.remote_peer_id().short(), error = %e,
            "provider dropped from a FEC batch");
        m.dead = true;
        m.send = None;
        m.shared.drop_with(e.clone());
        if self.members.iter().all(|m| m.dead) {
            return Err(e);
        }
        for (n, state) in self.stripes.iter_mut().enumerate() {
            if matches!(state, StripeState::Repairing(r) if *r == i) {
                self.repairs.push(self.first_stripe + n as u64);
            }
        }
        Ok(())
    }

    /// Whether member `i` has sent no shard for a while when another has.
    fn quiet(&self, i: usize) -> bool {
        let Some(m) = self.members.get(i) else {
            return true;
        };
        let freshest = self
            .members
            .iter()
            .filter(|m| !m.dead)
            .map(|m| m.last_shard)
            .max();
        let rtt = m.shared.session.inner_conn().rtt();
        self.joint()
            && m.last_shard.elapsed() > MEMBER_QUIET.max(rtt * 3)
            && freshest.is_some_and(|f| f.elapsed() < MEMBER_QUIET)
    }

    /// Stripes before which every stripe can be judged: `LAG` behind the newest stripe of
    /// the slowest member still sending (members that ended or went quiet do not hold it up).
    fn horizon(&self) -> u64 {
        let quiet_after_end =
            self.common.session.inner_conn().rtt() / 4 + Duration::from_millis(10);
        let mut horizon = u64::MAX;
        for (i, m) in self.members.iter().enumerate().filter(|(_, m)| !m.dead) {
            let done = m.ended && m.last_shard.elapsed() > quiet_after_end;
            // Quiet while another member delivers: not worth waiting for.
            if !done && !self.quiet(i) {
                let newest = m.newest.unwrap_or(self.first_stripe);
                horizon = horizon.min(newest.saturating_sub(LAG));
            }
        }
        horizon
    }

    /// Sends each live member a LOSS report of what its shards did since the last one.
    async fn report(&mut self) -> Result<()> {
        let first = self.first_stripe;
        for i in 0..self.members.len() {
            let m = &mut self.members[i];
            let through = m.through(first);
            if m.dead || (m.received + m.lost == 0 && through <= m.reported) {
                continue;
            }
            m.reported = through;
            let report = LossReport {
                transfer: m.transfer,
                received: m.received,
                lost: m.lost,
                through,
            };
            self.common.fec_report(&report);
            self.totals.0 += m.received;
            self.totals.1 += m.lost;
            (m.received, m.lost) = (0, 0);
            let written = match m.send.as_mut() {
                Some(send) => write_frame_raw(send, FRAME_LOSS, &report.encode()).await,
                None => Ok(()),
            };
            if let Err(e) = written {
                self.kill(i, e)?;
            }
        }
        Ok(())
    }

    /// Asks live members for the stripes given up on, in turn.
    async fn send_repairs(&mut self) -> Result<()> {
        while !self.repairs.is_empty() {
            // In turn among the members still sending, else any that is left.
            let n = self.members.len();
            let order = (0..n).map(|d| (self.next_repairer + d) % n);
            let live = |i: &usize| !self.members[*i].dead;
            let Some(i) = order
                .clone()
                .filter(live)
                .find(|&i| !self.quiet(i))
                .or_else(|| order.clone().find(live))
            else {
                return Err(NetError::Stream("no provider left to repair from".into()));
            };
            self.next_repairer = (i + 1) % n;
            let take = self.repairs.len().min(MAX_REPAIR);
            let list: Vec<u64> = self.repairs.drain(..take).collect();
            for &stripe in &list {
                if let Some(state) = self.stripe_slot(stripe) {
                    *state = StripeState::Repairing(i);
                }
            }
            self.totals.2 += list.len() as u64;
            self.common.fec_repaired(list.len() as u64);
            let written = match self.members[i].send.as_mut() {
                Some(send) => write_frame_raw(send, FRAME_REPAIR, &encode_repair(&list)).await,
                None => Ok(()),
            };
            if let Err(e) = written {
                // Its stripes go back on the list for the others.
                self.kill(i, e)?;
            }
        }
        Ok(())
    }

    fn stripe_slot(&mut self, stripe: u64) -> Option<&mut StripeState> {
        let i = stripe.checked_sub(self.first_stripe)?;
        self.stripes.get_mut(usize::try_from(i).ok()?)
    }

    fn seen_slot(&mut self, stripe: u64) -> Option<&mut ShardSet> {
        let i = stripe.checked_sub(self.first_stripe)?;
        self.seen.get_mut(usize::try_from(i).ok()?)
    }

    fn tally(&mut self, stripe: u64, member: usize) -> Option<&mut Tally> {
        let i = usize::try_from(stripe.checked_sub(self.first_stripe)?).ok()?;
        self.tallies.get_mut(i * self.members.len() + member)
    }

    async fn on_shard(
        &mut self,
        member: usize,
        datagram: &[u8],
        tx: &mpsc::Sender<Slot>,
    ) -> Result<bool> {
        let Some(m) = self.members.get(member) else {
            return Ok(true);
        };
        let k = self.options.data;
        // A malformed shard, or one outside its sender's share, costs only itself: it is
        // dropped (and so counted as lost).
        let shard = match Shard::decode(datagram, &self.layout) {
            Ok(s)
                if s.transfer == m.transfer
                    && s.params.data() == k
                    && s.params.parity() <= self.options.max_parity
                    && m.share.holds(k, usize::from(s.index)) =>
            {
                s
            }
            Ok(_) | Err(_) => {
                tracing::debug!("dropped a malformed or misdirected shard");
                return Ok(true);
            }
        };
        let parity = shard.params.parity() as u16;
        let expected = m.expected(parity);
        let (stripe_no, index) = (shard.stripe, usize::from(shard.index));
        let (wide, shard_len) = (self.wide, self.layout.shard_len());
        // A shard seen before (a duplicate, or a replay of an old one) counts for nothing:
        // not as received, not as the member's activity, not as the fetch's progress.
        let fresh = self
            .seen_slot(stripe_no)
            .is_some_and(|seen| seen.insert(index));
        if !fresh {
            return Ok(true);
        }
        let mut spare = self.spare.pop();
        let mut complete = false;
        let mut counted = false;
        if let Some(state) = self.stripe_slot(stripe_no) {
            match state {
                StripeState::Pending(buf, arrived) => {
                    let stripe = buf.get_or_insert_with(|| {
                        let mut s = spare.take().unwrap_or_default();
                        let _ = s.reset(wide, shard_len);
                        s
                    });
                    if !stripe.is_present(index) {
                        stripe.insert(index, shard.payload).map_err(core)?;
                        *arrived = arrived.saturating_add(1);
                        counted = true;
                        complete = usize::from(*arrived) >= k;
                        self.progressed = Instant::now();
                    }
                }
                StripeState::Rebuilt => counted = true,
                StripeState::Repairing(_) | StripeState::Settled => {}
            }
        }
        if let Some(s) = spare {
            self.spare.push(s);
        }
        if counted {
            if let Some(t) = self.tally(stripe_no, member) {
                t.arrived = t.arrived.saturating_add(1);
                t.expected = t.expected.max(expected);
            }
        }
        let m = &mut self.members[member];
        m.shards += 1;
        m.parity = parity;
        m.last_shard = Instant::now();
        let advanced = m.newest.is_none_or(|n| stripe_no > n);
        if advanced {
            m.newest = Some(stripe_no);
        }
        if complete && !self.rebuild(stripe_no, tx).await? {
            return Ok(false);
        }
        if advanced {
            let horizon = self.horizon();
            self.judge(horizon);
        }
        Ok(true)
    }

    /// Rebuilds a stripe that has k shards, passes its bytes to its groups and credits each
    /// member with its part of them.
    async fn rebuild(&mut self, stripe_no: u64, tx: &mpsc::Sender<Slot>) -> Result<bool> {
        let Some(StripeState::Pending(Some(mut stripe), arrived)) = self
            .stripe_slot(stripe_no)
            .map(|s| std::mem::replace(s, StripeState::Rebuilt))
        else {
            return Ok(true);
        };
        let (start, end) = self
            .layout
            .stripe_range(self.wide, stripe_no)
            .map_err(core)?;
        if self.coder.is_none() {
            self.coder = Some(Coder::new(self.wide).map_err(core)?);
        }
        let result = match &self.coder {
            Some(coder) => coder
                .reconstruct(&mut stripe, end - start)
                .map(|d| d.to_vec()),
            None => return Ok(true),
        };
        self.spare.push(stripe);
        let data = result.map_err(core)?;
        let placed = self.place(start, &data, tx).await?;
        // The stripe's tallies: how many of its shards each member sent.
        let n = self.members.len();
        let row = (stripe_no - self.first_stripe) as usize * n;
        let tallies = self.tallies.get(row..row + n).unwrap_or(&[]);
        if tallies.iter().filter(|t| t.arrived > 0).count() > 1 {
            self.common.fec_combined();
        }
        for (m, t) in self.members.iter().zip(tallies) {
            let part = self.placed * u64::from(t.arrived) / u64::from(arrived.max(1));
            m.shared.fetched.fetch_add(part, Ordering::Relaxed);
        }
        Ok(placed)
    }

    /// Copies a stripe's bytes (blob offset `start`) into the batch's groups, and hands every
    /// group that is complete to the disk stage; `placed` is set to the bytes copied.
    async fn place(&mut self, start: u64, data: &[u8], tx: &mpsc::Sender<Slot>) -> Result<bool> {
        self.placed = 0;
        let end = start + data.len() as u64;
        let log = self.common.group_log;
        let first_group = (start >> log).max(self.first);
        let last_group = ((end - 1) >> log).min(self.first + self.count - 1);
        let provider = if self.joint() {
            MIXED
        } else {
            self.common.provider
        };
        for index in first_group..=last_group {
            let (gstart, glen) = group_range(self.common.size, log, index);
            let gend = gstart + glen;
            let (from, to) = (start.max(gstart), end.min(gend));
            if from >= to {
                continue;
            }
            let pool = &self.common.pool;
            let Some(group) = self.groups.get_mut((index - self.first) as usize) else {
                continue;
            };
            if group.sent {
                continue;
            }
            let slot = group.slot.get_or_insert_with(|| {
                let mut slot = pool.take();
                slot.provider = provider;
                slot.index = index;
                slot.data.resize(glen as usize, 0);
                slot
            });
            slot.data[(from - gstart) as usize..(to - gstart) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            self.placed += to - from;
            group.stripes_left = group.stripes_left.saturating_sub(1);
            if !self.try_send(index, tx).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Gives up the groups another provider has taken over (those from the batch's end on):
    /// they are no longer waited for; their shards still arriving are ignored.
    fn drop_taken_over(&mut self) {
        let end = self.progress.end();
        let first_dropped = end.saturating_sub(self.first) as usize;
        for group in self.groups.iter_mut().skip(first_dropped) {
            if !group.sent {
                group.sent = true;
                self.left = self.left.saturating_sub(1);
                if let Some(slot) = group.slot.take() {
                    self.common.pool.give(slot);
                }
            }
        }
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
        let sent = tx.send(slot).await.is_ok();
        // Groups before the first one not sent are delivered, for a provider taking over.
        let delivered = self.groups.iter().take_while(|g| g.sent).count() as u64;
        self.progress.delivered_to(self.first + delivered);
        Ok(sent)
    }

    /// Judges every stripe before `until`: one still short of k shards is asked for again;
    /// what each member's shards did is counted for its next LOSS report.
    fn judge(&mut self, until: u64) {
        let last = self.first_stripe + self.stripes.len() as u64;
        let until = until.min(last);
        while self.judged < until {
            let stripe_no = self.judged;
            self.judged += 1;
            for i in 0..self.members.len() {
                let Some(t) = self.tally(stripe_no, i).copied() else {
                    continue;
                };
                let m = &mut self.members[i];
                if m.dead {
                    continue;
                }
                // A stripe of which nothing of its arrived: assume its last parity count.
                let expected = if t.expected == 0 {
                    m.expected(m.parity)
                } else {
                    t.expected
                };
                m.received += u64::from(t.arrived);
                m.lost += u64::from(expected.saturating_sub(t.arrived));
            }
            let Some(state) = self.stripe_slot(stripe_no) else {
                continue;
            };
            match std::mem::replace(state, StripeState::Settled) {
                StripeState::Pending(buf, _) => {
                    if let Some(b) = buf {
                        self.spare.push(b);
                    }
                    self.repairs.push(stripe_no);
                }
                StripeState::Rebuilt => {}
                other => {
                    if let Some(state) = self.stripe_slot(stripe_no) {
                        *state = other;
                    }
                }
            }
        }
    }

    /// A PROOF or STRIPE frame from member `member`'s stream.
    async fn on_frame(
        &mut self,
        member: usize,
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
                // Every member sends the proofs: the first one in is used (the disk stage
                // verifies it with the data).
                if group.sent || group.proof.is_some() {
                    return Ok(true);
                }
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
                self.progressed = Instant::now();
                self.try_send(index, tx).await
            }
            FRAME_STRIPE => {
                let (stripe_no, data) =
                    decode_stripe(payload).map_err(|e| NetError::Protocol(e.to_string()))?;
                let (start, end) = self
                    .layout
                    .stripe_range(self.wide, stripe_no)
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
                    Some(state @ (StripeState::Repairing(_) | StripeState::Pending(..))) => {
                        if let StripeState::Pending(Some(b), _) =
                            std::mem::replace(state, StripeState::Settled)
                        {
                            self.spare.push(b);
                        }
                    }
                    // Rebuilt from late shards meanwhile, or never asked for: nothing to do.
                    _ => return Ok(true),
                }
                self.progressed = Instant::now();
                let placed = self.place(start, data, tx).await?;
                if let Some(m) = self.members.get(member) {
                    m.shared.fetched.fetch_add(self.placed, Ordering::Relaxed);
                }
                Ok(placed)
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

/// Sends one FEC GET and reads the answer up to the provider's chosen shard size.
async fn open_request(
    session: Session,
    request: FecRequest,
    size: u64,
    stall: Duration,
) -> Result<Opened> {
    let (mut send, mut recv) = session.open_kind(Some(STREAM_KIND_BLOBS)).await?;
    write_frame_raw(&mut send, FRAME_FEC_GET, &request.encode()).await?;
    if let Some(detail) = read_answer_raw(&session, &mut recv, size).await? {
        let _ = recv.stop(quinn::VarInt::from_u32(0));
        return Ok(Opened::Refused(detail));
    }
    // The provider picks the shard size: at most ours, and what its datagrams carry.
    let shape = crate::fetch::no_stall(stall, async {
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
    Ok(Opened::Open(send, recv, shard_len))
}

/// Reads frames off member `member`'s stream until it ends.
async fn read_frames(
    member: usize,
    mut recv: quinn::RecvStream,
    out: mpsc::Sender<(usize, Event)>,
) {
    loop {
        let event = match crate::control::read_frame(&mut recv).await {
            Ok(Some(frame)) => Event::Frame(frame.kind, frame.payload),
            Ok(None) => Event::Ended,
            Err(e) => Event::Failed(e),
        };
        let stop = !matches!(event, Event::Frame(..));
        if out.send((member, event)).await.is_err() || stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{apportion, ShardSet};
    use i6p_core::erasure::MAX_SHARDS;

    #[test]
    fn a_shard_counts_once_however_often_it_comes() {
        let mut seen = ShardSet::default();
        let mut arrived = 0u16;
        // Every index of the widest stripe, each 300 times: more datagrams than a u16 holds.
        for _ in 0..300 {
            for index in 0..MAX_SHARDS {
                if seen.insert(index) {
                    arrived = arrived.saturating_add(1);
                }
            }
        }
        assert_eq!(usize::from(arrived), MAX_SHARDS);
        assert!(!seen.insert(MAX_SHARDS), "no stripe has a shard there");
        assert!(!seen.insert(usize::MAX));
    }

    #[test]
    fn shares_follow_the_weights_and_everyone_gets_one() {
        assert_eq!(apportion(32, &[1.0, 1.0]), vec![16, 16]);
        assert_eq!(apportion(32, &[3.0, 1.0]), vec![24, 8]);
        assert_eq!(apportion(32, &[1e9, 1.0, 1.0]), vec![30, 1, 1]);
        assert_eq!(apportion(3, &[5.0, 1.0, 1.0]), vec![1, 1, 1]);
        for weights in [&[0.3, 0.3, 0.4][..], &[7.0, 11.0, 13.0, 1.0], &[1.0; 8]] {
            let counts = apportion(32, weights);
            assert_eq!(counts.iter().sum::<usize>(), 32, "{weights:?}");
            assert!(counts.iter().all(|&c| c >= 1));
        }
    }
}
