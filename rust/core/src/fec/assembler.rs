//! The requester's FEC stripe assembler: one batch of groups, fetched with a FEC GET to each
//! of one or more providers (its *members*), every one sending its [`Share`] of each stripe.
//!
//! Shards go in with [`Assembler::handle_datagram`], the providers' stream frames (PROOF,
//! STRIPE, END) with [`Assembler::handle_frame`], the passing of time with
//! [`Assembler::handle_tick`] (every [`TICK`]); what to do comes out of
//! [`Assembler::poll_action`]: LOSS reports, REPAIR lists, groups ready for the disk stage,
//! bytes to credit to a provider, and failures.
//!
//! A stripe is rebuilt as soon as any k of its shards are in (Reed-Solomon, in place); its
//! bytes go into the groups it covers, and a group whose stripes and proof are all in is
//! ready. A stripe is given up on once every member still sending has sent shards of stripes
//! [`LAG`] further on (or has said END, or gone quiet while another delivers): it is asked
//! for again with a REPAIR, in turn among the live members, and comes back whole over a
//! stream. What each member's shards did goes back to it in LOSS reports.
//!
//! Invariants: a shard counts once however often it comes (duplicates and replays count for
//! nothing, not even as progress); a shard outside its sender's share, or malformed, costs
//! only itself; a group is handed out at most once; no clock is read and nothing is sent: the
//! driver does both.

use super::tally::{ShardSet, Tally};
use super::{stripe_runs, FecLayout, LossReport, Share, MAX_REPAIR, TICK};
use crate::erasure::{Coder, ErasureParams, Stripe};
use crate::error::Result;
use crate::tree::{group_range, Cv};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Providers that can share one stripe at most (each needs a data shard of its own).
pub const MAX_MEMBERS: usize = 8;
/// Stripes behind the newest one seen after which a stripe still short of k shards is lost.
pub const LAG: u64 = 8;
/// A member that sent no shard for this long (and three round trips) while another did is
/// not waited for before stripes are judged: its shards are counted lost and repaired.
const MEMBER_QUIET: Duration = Duration::from_millis(200);
/// Shards a member must have sent in a batch for its delivery rate to count.
const MIN_RATE_SHARDS: u64 = 64;
/// Group buffers kept for reuse.
const SPARE_GROUPS: usize = 4;

/// What a batch covers and how its stripes are coded.
#[derive(Debug, Clone, Copy)]
pub struct BatchShape {
    /// The blob's size in bytes.
    pub size: u64,
    /// log2 of the group size.
    pub group_log: u8,
    /// The batch's first group, and how many.
    pub first: u64,
    /// Groups in the batch.
    pub count: u64,
    /// Data shards per stripe (k).
    pub data: usize,
    /// The least parity a member codes with.
    pub min_parity: usize,
    /// The most parity a member may code with.
    pub max_parity: usize,
    /// Bytes per shard (the providers' choice).
    pub shard_len: usize,
    /// How long the batch may go without progress before it fails.
    pub stall: Duration,
}

/// One member as the batch starts.
#[derive(Debug, Clone, Copy)]
pub struct MemberSpec {
    /// Its shards of each stripe.
    pub share: Share,
    /// The transfer number its shards carry.
    pub transfer: u32,
    /// Its round-trip time now.
    pub rtt: Duration,
    /// False if its request already failed (it is in the batch, but dead).
    pub alive: bool,
}

/// Where a ready group's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One member alone.
    Member(usize),
    /// Several members' shards (a batch of more than one member): a failure cannot be
    /// pinned on one of them.
    Mixed,
}

/// A group whose bytes and proof are all in, for the disk stage to verify and write.
#[derive(Debug)]
pub struct ReadyGroup {
    /// The group's index in the blob.
    pub index: u64,
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its proof, as the first member to send it sent it.
    pub proof: Vec<Cv>,
    /// Who sent it.
    pub source: Source,
}

/// Why a batch cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing useful came for this long.
    Stalled(Duration),
    /// Stripes need repairing and no member is left to ask.
    NoRepairer,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stalled(d) => write!(f, "provider sent nothing useful for {d:?}"),
            Self::NoRepairer => write!(f, "no provider left to repair from"),
        }
    }
}

/// What the driver is to do.
#[derive(Debug)]
pub enum Action {
    /// Count `report` in the fetch's loss estimate and, if `send`, send it to `member` as a
    /// LOSS frame (at the batch's end it is only counted).
    Loss {
        /// The member it is about.
        member: usize,
        /// The report.
        report: LossReport,
        /// Whether it goes on the wire.
        send: bool,
    },
    /// Send `member` a REPAIR for `stripes`.
    Repair {
        /// Who is asked.
        member: usize,
        /// At most [`MAX_REPAIR`] stripes.
        stripes: Vec<u64>,
    },
    /// A group for the disk stage.
    Group(ReadyGroup),
    /// `member` delivered `bytes` of the blob.
    Credit {
        /// Who.
        member: usize,
        /// How many.
        bytes: u64,
    },
    /// A stripe was rebuilt from several members' shards.
    Combined,
    /// The batch cannot go on.
    Failed(Failure),
}

/// What a member's failure does to the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberFate {
    /// It was already out.
    Ignored,
    /// It is out; the others go on (its repairs go to them).
    Dropped,
    /// It was alone, or the last one: the batch fails with its error.
    BatchFails,
}

/// Shards received, shards lost and stripes repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Shards received.
    pub received: u64,
    /// Shards lost.
    pub lost: u64,
    /// Stripes asked for again.
    pub repaired: u64,
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
    data: Option<Vec<u8>>,
    stripes_left: u32,
    proof: Option<Vec<Cv>>,
    /// Handed out (or given up, another provider took it over).
    done: bool,
}

/// One provider's part in a batch: what its shards did.
struct Member {
    share: Share,
    transfer: u32,
    rtt: Duration,
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

/// One batch's stripe assembler (see the module's comment).
pub struct Assembler {
    shape: BatchShape,
    members: Vec<Member>,
    layout: FecLayout,
    /// The stripe shape shards are assembled in: k data shards and the most parity any
    /// member may code with.
    wide: ErasureParams,
    coder: Option<Coder>,
    first_stripe: u64,
    stripes: Vec<StripeState>,
    /// Per stripe, per member.
    tallies: Vec<Tally>,
    /// Per stripe: the shards that arrived.
    seen: Vec<ShardSet>,
    /// When the batch last made progress: a new shard of a stripe still short of k, or a
    /// frame that brought a proof or a stripe.
    progressed: Instant,
    started: Instant,
    now: Instant,
    next_tick: Instant,
    groups: Vec<GroupAsm>,
    /// Stripe buffers for reuse (boxed as in [`StripeState::Pending`], so they move as a
    /// pointer between the two).
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Stripe>>,
    buffers: Vec<Vec<u8>>,
    /// Stripes before this one have been judged (rebuilt or asked for again).
    judged: u64,
    left: u64,
    repairs: Vec<u64>,
    next_repairer: usize,
    totals: Totals,
    actions: VecDeque<Action>,
}

impl Assembler {
    /// An assembler for `shape`, its members as they start, at `now` (their requests open).
    pub fn new(shape: BatchShape, members: &[MemberSpec], now: Instant) -> Result<Self> {
        let layout = FecLayout::new(shape.size, shape.shard_len, usize::MAX)?;
        let wide = ErasureParams::new(shape.data, shape.max_parity)?;
        let stripe_bytes = (shape.data * shape.shard_len) as u64;
        let runs = stripe_runs(
            shape.size,
            shape.group_log,
            &[(shape.first, shape.count)],
            stripe_bytes,
        );
        let (first_stripe, last_stripe) = runs.first().copied().unwrap_or((0, 0));
        let n = (last_stripe - first_stripe + 1) as usize;
        let members = members
            .iter()
            .map(|spec| Member {
                share: spec.share,
                transfer: spec.transfer,
                rtt: spec.rtt,
                dead: !spec.alive,
                ended: false,
                last_shard: now,
                newest: None,
                reported: first_stripe,
                parity: shape.min_parity as u16,
                received: 0,
                lost: 0,
                shards: 0,
            })
            .collect::<Vec<_>>();
        let groups = (shape.first..shape.first + shape.count)
            .map(|index| {
                let (start, len) = group_range(shape.size, shape.group_log, index);
                let stripes = (start + len - 1) / stripe_bytes - start / stripe_bytes + 1;
                GroupAsm {
                    data: None,
                    stripes_left: stripes as u32,
                    proof: None,
                    done: false,
                }
            })
            .collect();
        Ok(Self {
            tallies: vec![Tally::default(); n * members.len()],
            members,
            layout,
            wide,
            coder: None,
            first_stripe,
            stripes: (0..n).map(|_| StripeState::Pending(None, 0)).collect(),
            seen: vec![ShardSet::default(); n],
            progressed: now,
            started: now,
            now,
            next_tick: now + TICK,
            groups,
            spare: Vec::new(),
            buffers: Vec::new(),
            judged: first_stripe,
            left: shape.count,
            repairs: Vec::new(),
            next_repairer: 0,
            totals: Totals::default(),
            actions: VecDeque::new(),
            shape,
        })
    }

    /// Whether every group has been handed out (or taken over).
    pub fn is_done(&self) -> bool {
        self.left == 0
    }

    /// Whether member `member` is out of the batch.
    pub fn is_dead(&self, member: usize) -> bool {
        self.members.get(member).is_none_or(|m| m.dead)
    }

    /// Stripes the batch covers.
    pub fn stripes(&self) -> usize {
        self.stripes.len()
    }

    /// What the batch received, lost and repaired so far (counted as reports go out).
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The first group not handed out yet (groups are delivered in order as far as this).
    pub fn delivered_through(&self) -> u64 {
        self.shape.first + self.groups.iter().take_while(|g| g.done).count() as u64
    }

    /// Member `member`'s round-trip time now.
    pub fn set_rtt(&mut self, member: usize, rtt: Duration) {
        if let Some(m) = self.members.get_mut(member) {
            m.rtt = rtt;
        }
    }

    /// A group buffer back for reuse.
    pub fn give_buffer(&mut self, buffer: Vec<u8>) {
        if self.buffers.len() < SPARE_GROUPS {
            self.buffers.push(buffer);
        }
    }

    /// When [`Self::handle_tick`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.left > 0).then_some(self.next_tick)
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if self.repairs.is_empty() {
            return None;
        }
        // In turn among the members still sending, else any that is left.
        let n = self.members.len();
        let order = (0..n).map(|d| (self.next_repairer + d) % n);
        let live = |i: &usize| !self.members[*i].dead;
        let Some(member) = order
            .clone()
            .filter(live)
            .find(|&i| !self.quiet(i))
            .or_else(|| order.clone().find(live))
        else {
            self.repairs.clear();
            return Some(Action::Failed(Failure::NoRepairer));
        };
        self.next_repairer = (member + 1) % n;
        let take = self.repairs.len().min(MAX_REPAIR);
        let stripes: Vec<u64> = self.repairs.drain(..take).collect();
        for &stripe in &stripes {
            if let Some(state) = self.stripe_slot(stripe) {
                *state = StripeState::Repairing(member);
            }
        }
        self.totals.repaired += stripes.len() as u64;
        Some(Action::Repair { member, stripes })
    }

    /// Member `member` failed (its stream broke, or it broke the protocol).
    pub fn handle_failure(&mut self, member: usize) -> MemberFate {
        let joint = self.members.len() > 1;
        let Some(m) = self.members.get_mut(member) else {
            return MemberFate::Ignored;
        };
        if m.dead {
            return MemberFate::Ignored;
        }
        if !joint {
            return MemberFate::BatchFails;
        }
        m.dead = true;
        if self.members.iter().all(|m| m.dead) {
            return MemberFate::BatchFails;
        }
        for (n, state) in self.stripes.iter().enumerate() {
            if matches!(state, StripeState::Repairing(r) if *r == member) {
                self.repairs.push(self.first_stripe + n as u64);
            }
        }
        MemberFate::Dropped
    }

    /// Another provider has taken over the batch's groups from `end` on: they are no longer
    /// waited for; their shards still arriving are ignored.
    pub fn handle_batch_end(&mut self, end: u64) {
        let first_dropped = end.saturating_sub(self.shape.first) as usize;
        for group in self.groups.iter_mut().skip(first_dropped) {
            if !group.done {
                group.done = true;
                self.left = self.left.saturating_sub(1);
                if let Some(buffer) = group.data.take() {
                    if self.buffers.len() < SPARE_GROUPS {
                        self.buffers.push(buffer);
                    }
                }
            }
        }
    }

    /// The report interval passed: stripes are judged, LOSS reports go out, and a batch
    /// without progress for its stall timeout fails.
    pub fn handle_tick(&mut self, now: Instant) {
        self.now = now;
        self.next_tick = now + TICK;
        if self.left == 0 {
            return;
        }
        if now.saturating_duration_since(self.progressed) > self.shape.stall {
            self.actions
                .push_back(Action::Failed(Failure::Stalled(self.shape.stall)));
            return;
        }
        let horizon = self.horizon();
        self.judge(horizon);
        self.report();
    }

    /// Every group is in: the stripes not judged yet are counted, and each live member's
    /// last report is counted (not sent). Returns the batch's totals.
    pub fn finish(&mut self) -> Totals {
        self.judge(u64::MAX);
        self.repairs.clear();
        let first = self.first_stripe;
        for (i, m) in self.members.iter_mut().enumerate() {
            let report = LossReport {
                transfer: m.transfer,
                received: m.received,
                lost: m.lost,
                through: m.through(first),
            };
            if !m.dead {
                self.actions.push_back(Action::Loss {
                    member: i,
                    report,
                    send: false,
                });
            }
            self.totals.received += m.received;
            self.totals.lost += m.lost;
            (m.received, m.lost) = (0, 0);
        }
        self.totals
    }

    /// The rate each live member delivered shards at (bytes per second), for those that sent
    /// enough to tell.
    pub fn rates(&self) -> Vec<(usize, f64)> {
        let shard_len = self.layout.shard_len() as f64;
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.dead && m.shards >= MIN_RATE_SHARDS)
            .map(|(i, m)| {
                let took = m.last_shard.saturating_duration_since(self.started);
                (
                    i,
                    m.shards as f64 * shard_len / took.as_secs_f64().max(1e-3),
                )
            })
            .collect()
    }

    fn stripe_slot(&mut self, stripe: u64) -> Option<&mut StripeState> {
        let i = stripe.checked_sub(self.first_stripe)?;
        self.stripes.get_mut(usize::try_from(i).ok()?)
    }

    fn tally(&mut self, stripe: u64, member: usize) -> Option<&mut Tally> {
        let i = usize::try_from(stripe.checked_sub(self.first_stripe)?).ok()?;
        self.tallies.get_mut(i * self.members.len() + member)
    }

    /// Whether member `i` has sent no shard for a while when another has.
    fn quiet(&self, i: usize) -> bool {
        let Some(m) = self.members.get(i) else {
            return true;
        };
        let since = |t: Instant| self.now.saturating_duration_since(t);
        let freshest = self
            .members
            .iter()
            .filter(|m| !m.dead)
            .map(|m| m.last_shard)
            .max();
        self.members.len() > 1
            && since(m.last_shard) > MEMBER_QUIET.max(m.rtt * 3)
            && freshest.is_some_and(|f| since(f) < MEMBER_QUIET)
    }

    /// Stripes before which every stripe can be judged: [`LAG`] behind the newest stripe of
    /// the slowest member still sending (members that ended or went quiet do not hold it up).
    fn horizon(&self) -> u64 {
        let rtt = self.members.first().map_or(Duration::ZERO, |m| m.rtt);
        let quiet_after_end = rtt / 4 + Duration::from_millis(10);
        let mut horizon = u64::MAX;
        for (i, m) in self.members.iter().enumerate().filter(|(_, m)| !m.dead) {
            let done =
                m.ended && self.now.saturating_duration_since(m.last_shard) > quiet_after_end;
            if !done && !self.quiet(i) {
                let newest = m.newest.unwrap_or(self.first_stripe);
                horizon = horizon.min(newest.saturating_sub(LAG));
            }
        }
        horizon
    }

    /// Queues a LOSS report for each live member of what its shards did since the last one.
    fn report(&mut self) {
        let first = self.first_stripe;
        for (i, m) in self.members.iter_mut().enumerate() {
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
            self.totals.received += m.received;
            self.totals.lost += m.lost;
            (m.received, m.lost) = (0, 0);
            self.actions.push_back(Action::Loss {
                member: i,
                report,
                send: true,
            });
        }
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
                other => *state = other,
            }
        }
    }
}

/// What comes in: shards and frames.
mod input;
