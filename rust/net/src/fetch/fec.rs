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
//! The stripe assembly is the pure machine [`Assembler`](i6p_core::fec::Assembler) in core;
//! this module and its `batch` driver open the requests, feed it datagrams, frames and ticks,
//! and carry out what it asks (LOSS reports, REPAIRs, groups for the disk stage).
//!
//! A stripe is given up on once every provider still sending has sent shards of stripes
//! [`LAG`](i6p_core::fec::LAG) further on (or has said END, or gone quiet, and no shard came
//! for a short time); its stripes are asked for again with a REPAIR to one of the providers, and come back whole
//! over the stream. What each provider's shards did goes back to it in LOSS reports, from
//! which it picks the parity of what it sends next. A provider whose stream fails mid-batch
//! is dropped from the fetch; the others answer its repairs.

use crate::control::write_frame_raw;
use crate::error::{NetError, Result};
use crate::session::Session;
// What the FEC workers use of the fetch: kept in this one place.
use super::{
    no_stall, plain_request, read_answer_raw, worker as plain_worker, BatchProgress, Claim,
    DiskSender, Shared, MIXED,
};
use batch::Batch;
use i6p_core::fec::{
    apportion, check_stripes, decode_shape, FecRequest, Share, FRAME_FEC_GET, FRAME_FEC_SHAPE,
    MAX_SHARD_LEN, MAX_STRIPE_BYTES, MIN_SHARD_LEN, TICK,
};
use i6p_core::transfer::{GetRequest, STREAM_KIND_BLOBS};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

mod batch;
mod router;

pub(crate) use i6p_core::fec::MAX_MEMBERS;
pub(crate) use router::Router;

/// Datagrams queued for one batch before further ones are dropped (counted as lost).
const ROUTE_QUEUE: usize = 16384;

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
        check_stripes(
            self.shard_len.unwrap_or(MIN_SHARD_LEN),
            self.data,
            self.min_parity,
            self.max_parity,
            self.target_ppm(),
        )
        .map_err(|e| NetError::Config(format!("FEC options: {e}")))
    }

    /// The target stripe loss in millionths, as a FEC GET carries it.
    fn target_ppm(&self) -> u32 {
        (self.target * 1e6).round() as u32
    }

    /// The FEC GET of `get` for one provider: its transfer number, its share of each
    /// stripe, the loss seen so far and the shard size of the batch.
    pub(crate) fn request(
        &self,
        get: GetRequest,
        transfer: u32,
        share: Share,
        loss_ppm: u32,
        shard_len: usize,
    ) -> FecRequest {
        FecRequest {
            transfer,
            shard_len,
            data: self.data,
            min_parity: self.min_parity,
            max_parity: self.max_parity,
            target_ppm: self.target_ppm(),
            loss_ppm,
            share,
            get,
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
pub(crate) async fn worker(shared: Arc<Shared>, tx: DiskSender) -> Result<()> {
    let Some(options) = shared.options.fec else {
        return plain_worker(shared, tx).await;
    };
    loop {
        if shared.gave_up() {
            return Err(shared.integrity_error());
        }
        let Some(claim) = shared.claim(true)? else {
            return Ok(());
        };
        let Some(len) = shard_len(&shared.session(), &options) else {
            // The peer takes no datagrams (or none large enough): a plain request instead.
            if !plain_request(&shared, &tx, &claim).await? {
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
pub(crate) async fn joint_worker(providers: Vec<Arc<Shared>>, tx: DiskSender) -> Result<()> {
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
            .map(|p| shard_len(&p.session(), &options))
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
    let shape = no_stall(stall, async {
        crate::control::read_frame(&mut recv)
            .await?
            .ok_or_else(|| NetError::Stream("provider ended a FEC request at once".into()))
    })
    .await?;
    let shard_len = match shape.kind {
        FRAME_FEC_SHAPE => decode_shape(&shape.payload).map_err(NetError::BadFrame)?,
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
