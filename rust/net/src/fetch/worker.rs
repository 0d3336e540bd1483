//! The provider worker: one GET at a time on a stream of its own, its groups read straight
//! into pooled buffers and handed to the disk stage. Which groups it asks for, and when it
//! stops, the scheduler says (through [`Shared::next_claim`]).

use super::queue::DiskSender;
use super::shared::{Claim, Shared, Slot};
use crate::control::write_frame_raw;
use crate::error::{NetError, Result};
use crate::session::Session;
use crate::stream::read_error;
use i6p_core::codes;
use i6p_core::transfer::{
    decode_blob, decode_group_header, GetRequest, TransferError, FRAME_BLOB, FRAME_ERROR,
    GROUP_HEADER_LEN, STREAM_KIND_BLOBS,
};
use i6p_core::tree::{group_range, MAX_PROOF_LEN};
use quinn::VarInt;
use std::sync::Arc;
use std::time::Duration;

/// A stream worker: one request at a time on a stream of its own, its groups read into pooled
/// buffers for the disk stage. Workers run concurrently, so `streams` requests are always in
/// flight. A worker reads its stream to the end before asking again: a request sent ahead
/// on another stream whose data nobody reads yet could fill the connection's flow-control
/// window and starve the stream being read.
pub(crate) async fn worker(shared: Arc<Shared>, tx: DiskSender) -> Result<()> {
    while let Some(claim) = shared.next_claim()? {
        if !plain_request(&shared, &tx, &claim).await? {
            // The disk stage stopped; its own result says why.
            return Ok(());
        }
    }
    Ok(())
}

/// One GET for the groups of `claim`, read into the disk stage. False if the disk stage has
/// stopped.
pub(crate) async fn plain_request(
    shared: &Arc<Shared>,
    tx: &DiskSender,
    claim: &Claim,
) -> Result<bool> {
    let (first, count) = (claim.first, claim.count);
    // One session for the whole request, even if the provider's moves meanwhile.
    let session = shared.session();
    let get = send_get(&session, shared.hash, shared.group_log, first, count);
    let recv = no_stall(shared.options.stall_timeout, get).await?;
    read_request(shared, &session, tx, recv, claim).await
}

/// Reads the answer to one GET and hands its groups to the disk stage. A provider that sends
/// something other than what was asked is recorded as a verification failure, and the rest
/// of the request is left for the next round. False if the disk stage has stopped.
async fn read_request(
    shared: &Arc<Shared>,
    session: &Session,
    tx: &DiskSender,
    mut recv: quinn::RecvStream,
    claim: &Claim,
) -> Result<bool> {
    let (first, count) = (claim.first, claim.count);
    let stall = shared.options.stall_timeout;
    if let Some(detail) = no_stall(stall, read_answer_raw(session, &mut recv, shared.size)).await? {
        shared.fail(first, detail);
        let _ = recv.stop(VarInt::from_u32(codes::NORMAL));
        return Ok(true);
    }
    let progress = claim.progress();
    for index in first..first + count {
        if index >= progress.end() {
            // Another provider took over the rest of this batch.
            let _ = recv.stop(VarInt::from_u32(codes::NORMAL));
            return Ok(true);
        }
        if !shared.session().same(session) {
            // The provider's session moved to a better path: the rest of the batch is asked
            // for there (from this group boundary on: nothing verified is fetched again).
            progress.give_back_from(index);
            let _ = recv.stop(VarInt::from_u32(codes::NORMAL));
            return Ok(true);
        }
        let mut slot = shared.pool.take();
        slot.provider = shared.provider;
        let claimed = no_stall(
            stall,
            read_group_into(shared, session, &mut recv, index, &mut slot),
        )
        .await?;
        if claimed != index {
            shared.fail(
                index,
                format!("expected group {index}, provider sent {claimed}"),
            );
            shared.pool.give(slot);
            let _ = recv.stop(VarInt::from_u32(codes::NORMAL));
            return Ok(true);
        }
        progress.delivered(index, slot.data.len() as u64);
        if tx.send(slot).await.is_err() {
            return Ok(false);
        }
    }
    // Read the end of the stream too: a provider counts the request as served only once it
    // sees it acknowledged to the end, and anything after the last group is a protocol error.
    match no_stall(stall, async {
        recv.read_chunk(1, true)
            .await
            .map_err(|e| read_error(session, e))
    })
    .await?
    {
        None => Ok(true),
        Some(_) => Err(NetError::Protocol(
            "provider sent data after the last group".into(),
        )),
    }
}

/// `fut`, unless it takes `limit` (then the provider is said to have sent nothing).
pub(crate) async fn no_stall<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| NetError::Stream(format!("provider sent nothing for {limit:?}")))?
}

async fn read_exact_raw(
    session: &Session,
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
) -> Result<()> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(n) => NetError::Stream(format!(
            "provider ended the stream {n} bytes into a {}-byte read",
            buf.len()
        )),
        quinn::ReadExactError::ReadError(e) => read_error(session, e),
    })
}

/// Reads one group record into `slot`, sized for group `index` whatever index the provider
/// claims (which is returned). Nothing here is verified yet.
async fn read_group_into(
    shared: &Shared,
    session: &Session,
    recv: &mut quinn::RecvStream,
    index: u64,
    slot: &mut Slot,
) -> Result<u64> {
    let mut header = [0u8; GROUP_HEADER_LEN];
    read_exact_raw(session, recv, &mut header).await?;
    let (claimed, proof_len) = decode_group_header(header).map_err(NetError::BadFrame)?;
    // proof_len is bounded by MAX_PROOF_LEN in decode_group_header.
    let mut proof = [0u8; MAX_PROOF_LEN * 32];
    let proof = &mut proof[..proof_len * 32];
    read_exact_raw(session, recv, proof).await?;
    slot.proof.clear();
    slot.proof.extend(proof.chunks_exact(32).map(|c| {
        let mut cv = [0u8; 32];
        cv.copy_from_slice(c);
        cv
    }));
    let (_, len) = group_range(shared.size, shared.group_log, index);
    // len <= the group size, the buffer's capacity: no reallocation.
    slot.data.resize(len as usize, 0);
    read_exact_raw(session, recv, &mut slot.data).await?;
    slot.index = index;
    Ok(claimed)
}

/// Reads the provider's answer to a GET from a bare stream (see [`answer`]).
pub(crate) async fn read_answer_raw(
    session: &Session,
    recv: &mut quinn::RecvStream,
    size: u64,
) -> Result<Option<String>> {
    let mut header = [0u8; i6p_core::FRAME_HEADER_LEN];
    read_exact_raw(session, recv, &mut header).await?;
    let h = i6p_core::FrameHeader::decode(header).map_err(NetError::BadFrame)?;
    // The frame header bounds the length (MAX_FRAME_PAYLOAD) before this allocation.
    let mut payload = vec![0u8; h.len as usize];
    read_exact_raw(session, recv, &mut payload).await?;
    answer(h.kind, &payload, size)
}

/// Opens a transfer stream and sends a GET for groups `first..first+count`.
pub(super) async fn send_get(
    session: &Session,
    hash: [u8; 32],
    group_log: u8,
    first: u64,
    count: u64,
) -> Result<quinn::RecvStream> {
    let (mut send, recv) = session.open_kind(Some(STREAM_KIND_BLOBS)).await?;
    let get = GetRequest {
        hash,
        group_log,
        ranges: vec![(first, count)],
    };
    write_frame_raw(&mut send, i6p_core::transfer::FRAME_GET, &get.encode()).await?;
    let _ = send.finish();
    Ok(recv)
}

/// The provider's answer to a GET. A refusal or a malformed answer is an error; a BLOB with
/// another size than expected is returned as the detail of a verification failure.
pub(super) fn answer(kind: u8, payload: &[u8], size: u64) -> Result<Option<String>> {
    match kind {
        FRAME_BLOB => {
            let announced = decode_blob(payload).map_err(NetError::BadFrame)?;
            Ok((announced != size).then(|| {
                format!("provider says the blob has {announced} bytes, the ticket {size}")
            }))
        }
        FRAME_ERROR => {
            let err = TransferError::decode(payload).map_err(NetError::BadFrame)?;
            Err(NetError::Refused {
                code: err.code as u16,
                message: err.message,
            })
        }
        other => Err(NetError::Protocol(format!(
            "unexpected transfer frame {other:#04x}"
        ))),
    }
}
