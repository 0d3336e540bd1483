//! The driver of one FEC batch: opens a FEC GET to each member, feeds the stripe
//! [`Assembler`] the datagrams, frames and ticks, and carries out its actions (LOSS and
//! REPAIR frames, groups to the disk stage, credit and counters in the fetch).

use super::router::{Route, Tagged};
use super::{
    open_request, read_frames, BatchProgress, Claim, DiskSender, Event, FecOptions, Opened, Shared,
    MIXED, ROUTE_QUEUE, TICK,
};
use crate::control::write_frame_raw;
use crate::error::{NetError, Result};
use crate::fec_serve::AbortOnDrop;
use i6p_core::fec::{
    encode_repair, shares, Action, Assembler, BatchShape, MemberFate, MemberSpec, Share, Source,
    FRAME_LOSS, FRAME_REPAIR,
};
use i6p_core::transfer::GetRequest;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One provider's part in a batch: its request and stream.
struct Member {
    shared: Arc<Shared>,
    share: Share,
    transfer: u32,
    _route: Option<Route>,
    send: Option<quinn::SendStream>,
    /// False once its request was refused or failed while opening.
    alive: bool,
}

/// One batch of groups, fetched with a FEC GET to each member.
pub(super) struct Batch {
    common: Arc<Shared>,
    options: FecOptions,
    members: Vec<Member>,
    /// The shard size asked for.
    shard_len: usize,
    first: u64,
    count: u64,
    /// Where this batch now ends (another provider may take over its second half), and
    /// how far it has delivered.
    progress: Arc<BatchProgress>,
}

impl Batch {
    pub(super) fn new(
        members: Vec<Arc<Shared>>,
        options: FecOptions,
        shard_len: usize,
        claim: &Claim,
        counts: &[usize],
    ) -> Result<Self> {
        let common = members
            .first()
            .cloned()
            .ok_or_else(|| NetError::Config("a FEC batch needs a provider".into()))?;
        let parts = members.len();
        let split = shares(options.data, parts, counts).ok_or_else(|| {
            NetError::Config(format!(
                "{parts} providers cannot share stripes of {} data shards",
                options.data
            ))
        })?;
        let members = members
            .into_iter()
            .zip(split)
            .map(|(shared, share)| Member {
                shared,
                share,
                transfer: 0,
                _route: None,
                send: None,
                alive: true,
            })
            .collect();
        Ok(Self {
            common,
            options,
            members,
            shard_len,
            first: claim.first,
            count: claim.count,
            progress: claim.progress(),
        })
    }

    fn joint(&self) -> bool {
        self.members.len() > 1
    }

    /// Opens every member's request at once; the streams to read, by member, and the shard
    /// size they chose. `None`: the batch cannot go on as laid out (every member refused, or
    /// they chose different shard sizes) and its groups were put back or left for the next
    /// round.
    async fn open(
        &mut self,
        datagrams: &mpsc::Sender<Tagged>,
    ) -> Result<Option<(Vec<(usize, quinn::RecvStream)>, usize)>> {
        let mut opening = tokio::task::JoinSet::new();
        for (i, member) in self.members.iter_mut().enumerate() {
            let session = member.shared.session();
            let route = session.datagram_router().register(datagrams.clone(), i);
            member.transfer = route.transfer;
            member._route = Some(route);
            let get = GetRequest {
                hash: self.common.hash,
                group_log: self.common.group_log,
                ranges: vec![(self.first, self.count)],
            };
            let loss_ppm = self.common.fec_loss_ppm();
            let request =
                self.options
                    .request(get, member.transfer, member.share, loss_ppm, self.shard_len);
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
                        m.alive = false;
                    }
                }
                Err(e) if !self.joint() => return Err(e),
                Err(e) => {
                    if let Some(m) = self.members.get_mut(i) {
                        m.alive = false;
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
        Ok(Some((streams, shard_len)))
    }

    /// Fetches the batch's groups; the rate each provider delivered shards at (bytes per
    /// second, by its place in the fetch), or `None` if the disk stage has stopped.
    pub(super) async fn run(mut self, tx: &DiskSender) -> Result<Option<Vec<(usize, f64)>>> {
        let (datagrams_tx, mut datagrams) = mpsc::channel(ROUTE_QUEUE);
        let Some((streams, shard_len)) = self.open(&datagrams_tx).await? else {
            return Ok(Some(Vec::new()));
        };
        drop(datagrams_tx);
        // Stream frames are read by tasks of their own: reading is not cancel-safe.
        let (frames_tx, mut frames) = mpsc::channel(64);
        let mut readers = Vec::new();
        for (i, recv) in streams {
            let reading = tokio::spawn(read_frames(i, recv, frames_tx.clone()));
            readers.push(AbortOnDrop(reading));
        }
        drop(frames_tx);
        let mut asm = self.assembler(shard_len)?;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !asm.is_done() {
            tokio::select! {
                datagram = datagrams.recv() => {
                    let Some((member, datagram)) = datagram else { break };
                    asm.handle_datagram(Instant::now(), member, &datagram).map_err(NetError::BadFrame)?;
                }
                event = frames.recv() => {
                    let Some((member, event)) = event else {
                        return Err(NetError::Stream(
                            "every provider ended a FEC request before every group".into()));
                    };
                    match event {
                        Event::Frame(kind, payload) => {
                            let handled = asm.handle_frame(Instant::now(), member, kind, &payload);
                            if let Err(e) = handled {
                                self.kill(&mut asm, member, NetError::BadFrame(e))?;
                            }
                        }
                        Event::Ended => self.kill(&mut asm, member, NetError::Stream(
                            "provider ended a FEC request before every group".into()))?,
                        Event::Failed(e) => self.kill(&mut asm, member, e)?,
                    }
                }
                _ = tick.tick() => {
                    asm.handle_batch_end(self.progress.end());
                    if asm.is_done() {
                        break;
                    }
                    self.on_tick(&mut asm)?;
                }
            }
            if !self.perform(&mut asm, tx).await? {
                return Ok(None);
            }
        }
        // Every group is in, so every stripe was rebuilt or repaired: what the stripes not
        // judged yet received and lost counts too (it goes to no provider any more).
        let totals = asm.finish();
        self.perform(&mut asm, tx).await?;
        tracing::debug!(
            first = self.first,
            count = self.count,
            providers = self.members.len(),
            stripes = asm.stripes(),
            received = totals.received,
            lost = totals.lost,
            repairs = totals.repaired,
            "FEC batch done"
        );
        self.close(frames).await;
        drop(readers);
        let rates = asm.rates().into_iter();
        Ok(Some(
            rates
                .map(|(i, rate)| (self.members[i].shared.provider, rate))
                .collect(),
        ))
    }

    /// A report interval passed: members the fetch dropped meanwhile (they stopped sending
    /// while others did) leave the batch, round-trip times are brought up to date, and the
    /// assembler judges and reports.
    fn on_tick(&mut self, asm: &mut Assembler) -> Result<()> {
        for i in 0..self.members.len() {
            if !asm.is_dead(i) && self.members[i].shared.is_dropped() {
                let e = NetError::Stream("dropped from the fetch".into());
                self.kill(asm, i, e)?;
            }
            asm.set_rtt(i, self.members[i].shared.session().inner_conn().rtt());
        }
        asm.handle_tick(Instant::now());
        Ok(())
    }

    /// The batch's assembler, as its requests stand once open.
    fn assembler(&self, shard_len: usize) -> Result<Assembler> {
        let shape = BatchShape {
            size: self.common.size,
            group_log: self.common.group_log,
            first: self.first,
            count: self.count,
            data: self.options.data,
            min_parity: self.options.min_parity,
            max_parity: self.options.max_parity,
            shard_len,
            stall: self.common.options.stall_timeout,
        };
        let specs: Vec<MemberSpec> = self
            .members
            .iter()
            .map(|m| MemberSpec {
                share: m.share,
                transfer: m.transfer,
                rtt: m.shared.session().inner_conn().rtt(),
                alive: m.alive,
            })
            .collect();
        Assembler::new(shape, &specs, Instant::now()).map_err(NetError::BadFrame)
    }

    /// Every group is in: say so, and read the providers' ends of their streams. If another
    /// provider took over the end of the batch, its stripes are not wanted: the requests are
    /// cancelled instead.
    async fn close(&mut self, mut frames: mpsc::Receiver<(usize, Event)>) {
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
    }

    /// Carries out what the assembler asks. False if the disk stage has stopped.
    async fn perform(&mut self, asm: &mut Assembler, tx: &DiskSender) -> Result<bool> {
        while let Some(action) = asm.poll_action() {
            match action {
                Action::Loss {
                    member,
                    report,
                    send,
                } => {
                    self.common.fec_report(&report);
                    if send {
                        let frame = report.encode();
                        self.write(asm, member, FRAME_LOSS, &frame).await?;
                    }
                }
                Action::Repair { member, stripes } => {
                    self.common.fec_repaired(stripes.len() as u64);
                    let frame = encode_repair(&stripes);
                    self.write(asm, member, FRAME_REPAIR, &frame).await?;
                }
                Action::Group(group) => {
                    let mut slot = self.common.pool.take();
                    slot.provider = match group.source {
                        Source::Mixed => MIXED,
                        Source::Member(i) => {
                            self.members.get(i).map_or(MIXED, |m| m.shared.provider)
                        }
                    };
                    slot.index = group.index;
                    slot.proof = group.proof;
                    asm.give_buffer(std::mem::replace(&mut slot.data, group.data));
                    if tx.send(slot).await.is_err() {
                        return Ok(false);
                    }
                    // Groups before the first one not sent are delivered, for a provider
                    // taking over.
                    self.progress.delivered_to(asm.delivered_through());
                }
                Action::Credit { member, bytes } => {
                    if let Some(m) = self.members.get(member) {
                        m.shared.fetched.fetch_add(bytes, Ordering::Relaxed);
                    }
                }
                Action::Combined => self.common.fec_combined(),
                Action::Failed(failure) => return Err(NetError::Stream(failure.to_string())),
            }
        }
        Ok(true)
    }

    /// Writes a frame to member `member`'s stream; a member whose stream fails is killed.
    async fn write(
        &mut self,
        asm: &mut Assembler,
        member: usize,
        kind: u8,
        payload: &[u8],
    ) -> Result<()> {
        let written = match self.members.get_mut(member).and_then(|m| m.send.as_mut()) {
            Some(send) => write_frame_raw(send, kind, payload).await,
            None => Ok(()),
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) => self.kill(asm, member, e),
        }
    }

    /// Takes member `i` out of the batch after `e`. Alone, its error is the batch's; with
    /// others left, it is dropped from the fetch and its repairs go to the others.
    fn kill(&mut self, asm: &mut Assembler, i: usize, e: NetError) -> Result<()> {
        let joint = self.joint();
        let fate = asm.handle_failure(i);
        let Some(m) = self.members.get_mut(i) else {
            return Ok(());
        };
        if fate == MemberFate::Ignored {
            return Ok(());
        }
        if joint {
            tracing::debug!(provider = %m.shared.session().remote_peer_id().short(), error = %e,
                "provider dropped from a FEC batch");
            m.send = None;
            m.shared.drop_with(e.clone());
        }
        match fate {
            MemberFate::BatchFails => Err(e),
            _ => Ok(()),
        }
    }
}
