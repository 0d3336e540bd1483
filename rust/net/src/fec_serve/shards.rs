//! The provider's datagram side of FEC mode: coding stripes and handing their shards to
//! quinn, and the test faults that forge shards (each forgery must be dropped by a requester).

use crate::blobs::Faults;
use bytes::{BufMut, Bytes, BytesMut};
use i6p_core::erasure::{Coder, ErasureParams, Stripe};
use i6p_core::fec::{FecRequest, Shard, SHARD_HEADER_LEN};
use std::collections::HashMap;

/// Codes stripes and hands their shards to quinn, reusing its buffers.
pub(super) struct ShardSender<'r> {
    conn: quinn::Connection,
    pub(super) request: &'r FecRequest,
    pub(super) faults: u8,
    /// How long a write may wait for the requester to take data.
    pub(super) timeout: std::time::Duration,
    coders: HashMap<usize, Coder>,
    stripe: Stripe,
    padded: Vec<u8>,
}

impl<'r> ShardSender<'r> {
    pub(super) fn new(
        conn: quinn::Connection,
        request: &'r FecRequest,
        faults: u8,
        timeout: std::time::Duration,
    ) -> Self {
        Self {
            conn,
            request,
            faults,
            timeout,
            coders: HashMap::new(),
            stripe: Stripe::new(),
            padded: Vec::new(),
        }
    }

    /// Codes stripe `index` (its data, the last stripe short) with `parity` parity shards and
    /// sends the request's share of them. Ok(false): datagrams of this size no
    /// longer fit the path; Err: connection gone.
    pub(super) async fn send(
        &mut self,
        index: u64,
        data: &[u8],
        parity: usize,
    ) -> Result<bool, ()> {
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
pub(super) async fn send_junk(
    conn: &quinn::Connection,
    request: &FecRequest,
    send: &mut quinn::SendStream,
) {
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
