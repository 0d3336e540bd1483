//! Range reads: a few groups of a blob fetched into memory over one stream and verified,
//! without a partial file or a scheduler.

use super::options::STALL_TIMEOUT;
use super::worker::{answer, no_stall, send_get};
use crate::error::{NetError, Result};
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use i6p_core::transfer::{decode_group_header, GROUP_HEADER_LEN};
use i6p_core::tree::{check_group_log, group_count, group_range, verify_group, Cv};

/// Reads the provider's answer to a GET. A refusal or a malformed answer is an error; a BLOB
/// with another size than expected is returned as the detail of a verification failure.
async fn read_answer(recv: &mut crate::stream::RecvStream, size: u64) -> Result<Option<String>> {
    let (kind, payload) = read_frame_from(recv).await?;
    answer(kind, &payload, size)
}

/// Reads one group record, sized for group `index` (whatever index the provider claims):
/// (claimed index, proof, data). Nothing here is verified yet.
async fn read_group(
    recv: &mut crate::stream::RecvStream,
    size: u64,
    group_log: u8,
    index: u64,
) -> Result<(u64, Vec<Cv>, Bytes)> {
    let header = recv.read_exact(GROUP_HEADER_LEN).await?;
    let mut raw = [0u8; GROUP_HEADER_LEN];
    raw.copy_from_slice(&header);
    let (claimed, proof_len) = decode_group_header(raw).map_err(NetError::BadFrame)?;
    // proof_len is bounded by MAX_PROOF_LEN in decode_group_header.
    let proof = recv
        .read_exact(proof_len * 32)
        .await?
        .chunks_exact(32)
        .map(|c| {
            let mut cv = [0u8; 32];
            cv.copy_from_slice(c);
            cv
        })
        .collect();
    let (_, len) = group_range(size, group_log, index);
    let data = recv.read_exact(len as usize).await?;
    Ok((claimed, proof, data))
}

async fn read_frame_from(recv: &mut crate::stream::RecvStream) -> Result<(u8, Bytes)> {
    let header = recv.read_exact(i6p_core::FRAME_HEADER_LEN).await?;
    let mut raw = [0u8; i6p_core::FRAME_HEADER_LEN];
    raw.copy_from_slice(&header);
    let h = i6p_core::FrameHeader::decode(raw).map_err(NetError::BadFrame)?;
    let payload = recv.read_exact(h.len as usize).await?;
    Ok((h.kind, payload))
}

/// Fetches `len` bytes at `offset` of a blob into memory, verifying every group touched.
pub async fn fetch_range(
    session: &Session,
    hash: [u8; 32],
    size: u64,
    offset: u64,
    len: u64,
    group_log: u8,
) -> Result<Bytes> {
    check_group_log(group_log)?;
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(NetError::BadRange(format!(
            "range {offset}+{len} is outside the {size}-byte blob"
        )));
    }
    if len == 0 {
        return Ok(Bytes::new());
    }
    let first = offset >> group_log;
    let last = (offset + len - 1) >> group_log;
    let count = (last - first + 1).min(group_count(size, group_log) - first);
    let recv = send_get(session, hash, group_log, first, count).await?;
    let mut recv = crate::stream::RecvStream::new(recv, session.clone());
    if let Some(detail) = no_stall(STALL_TIMEOUT, read_answer(&mut recv, size)).await? {
        return Err(integrity(session, detail));
    }
    let mut out = BytesMut::with_capacity(len as usize);
    for index in first..first + count {
        let (got, proof, data) =
            no_stall(STALL_TIMEOUT, read_group(&mut recv, size, group_log, index)).await?;
        let (start, glen) = group_range(size, group_log, index);
        if got != index {
            return Err(integrity(
                session,
                format!("expected group {index}, got {got}"),
            ));
        }
        verify_group(&hash, size, group_log, index, &data, &proof)
            .map_err(|e| integrity(session, format!("group {index}: {e}")))?;
        let from = offset.max(start) - start;
        let to = (offset + len).min(start + glen) - start;
        out.extend_from_slice(&data[from as usize..to as usize]);
    }
    Ok(out.freeze())
}

fn integrity(session: &Session, detail: String) -> NetError {
    NetError::Integrity {
        provider: session.remote_peer_id(),
        failures: 1,
        detail,
    }
}
