//! The stream frames of FEC mode: the FEC GET (with each provider's [`Share`] of a stripe's
//! shards), SHAPE, PROOF, STRIPE, END, LOSS and REPAIR, and their payload codecs.

use super::{Redundancy, MAX_SHARD_LEN, MIN_SHARD_LEN};
use crate::error::{CoreError, Result};
use crate::transfer::GetRequest;
use crate::wire::Reader;

// Frame types of the FEC exchange, registered with every other kind in `crate::kinds`.
pub use crate::kinds::{
    FRAME_FEC_END, FRAME_FEC_GET, FRAME_FEC_SHAPE, FRAME_LOSS, FRAME_PROOF, FRAME_REPAIR,
    FRAME_STRIPE,
};

/// Largest stripe (k × shard size): a STRIPE frame must fit a frame's 1 MiB payload.
pub const MAX_STRIPE_BYTES: usize = (1 << 20) - 16;
/// At most this many stripes in one REPAIR.
pub const MAX_REPAIR: usize = 1024;

/// Which shards of each stripe a provider sends: its share when several providers send the
/// same stripes, so that any k shards from any of them rebuild a stripe.
///
/// ```text
/// share = data_first:u8  data_count:u8  parity_first:u8  parity_step:u8
/// ```
///
/// The provider codes each stripe with the m parity shards its redundancy picks for the whole
/// stripe, as it would alone, and sends data shards `data_first .. data_first + data_count`
/// and the parity shards numbered j < m with `j ≡ parity_first (mod parity_step)` (shard
/// index k + j). Shares with one step and different firsts never overlap, and together they
/// send the whole coded stripe; as parity shard j is the same whatever m a stripe is coded
/// with, shards of providers that picked different m still combine. A shard's header carries
/// the k and m its sender coded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// First data shard sent.
    pub data_first: u8,
    /// Data shards sent (at least one).
    pub data_count: u8,
    /// First parity number sent.
    pub parity_first: u8,
    /// Distance between the parity numbers sent (at least one, above `parity_first`).
    pub parity_step: u8,
}

/// Bytes of an encoded [`Share`].
pub const SHARE_LEN: usize = 4;

impl Share {
    /// Every shard of stripes of `data` data shards: one provider alone.
    pub fn whole(data: usize) -> Self {
        Self {
            data_first: 0,
            data_count: data as u8,
            parity_first: 0,
            parity_step: 1,
        }
    }

    /// Share `part` of `parts` of stripes of `data` data shards: a near-equal run of data
    /// shards each, parity numbers interleaved. `None` unless `0 < parts ≤ data` and
    /// `part < parts`.
    pub fn split(data: usize, part: usize, parts: usize) -> Option<Self> {
        if parts == 0 || parts > data {
            return None;
        }
        let (base, extra) = (data / parts, data % parts);
        let counts: Vec<usize> = (0..parts).map(|p| base + usize::from(p < extra)).collect();
        Self::split_by(&counts, part)
    }

    /// Share `part` when part p gets `counts[p]` consecutive data shards (each at least one,
    /// k = their sum), parity numbers interleaved.
    pub fn split_by(counts: &[usize], part: usize) -> Option<Self> {
        let data: usize = counts.iter().sum();
        let count = *counts.get(part)?;
        if counts.contains(&0) || data > 255 {
            return None;
        }
        Some(Self {
            data_first: counts[..part].iter().sum::<usize>() as u8,
            data_count: count as u8,
            parity_first: part as u8,
            parity_step: counts.len() as u8,
        })
    }

    /// The parity shards this share sends of a stripe coded with `m` parity shards.
    pub fn parity_sent(&self, m: usize) -> usize {
        let first = usize::from(self.parity_first);
        match m.checked_sub(first + 1) {
            Some(above) => above / usize::from(self.parity_step).max(1) + 1,
            None => 0,
        }
    }

    /// The shard indices this share sends of a stripe of `data` data and `m` parity shards.
    pub fn indices(&self, data: usize, m: usize) -> impl Iterator<Item = usize> {
        let first = usize::from(self.data_first);
        let (pfirst, step) = (
            usize::from(self.parity_first),
            usize::from(self.parity_step).max(1),
        );
        (first..first + usize::from(self.data_count))
            .chain((0..self.parity_sent(m)).map(move |t| data + pfirst + step * t))
    }

    /// Whether shard `index` of a stripe of `data` data shards belongs to this share.
    pub fn holds(&self, data: usize, index: usize) -> bool {
        let first = usize::from(self.data_first);
        if index < data {
            return (first..first + usize::from(self.data_count)).contains(&index);
        }
        let j = index - data;
        let step = usize::from(self.parity_step).max(1);
        j >= usize::from(self.parity_first)
            && (j - usize::from(self.parity_first)).is_multiple_of(step)
    }

    fn encode(&self) -> [u8; SHARE_LEN] {
        [
            self.data_first,
            self.data_count,
            self.parity_first,
            self.parity_step,
        ]
    }
}

/// FEC GET: a [`GetRequest`] plus how to code it and which shards to send.
///
/// ```text
/// fec_get = transfer:u32  shard_len:u16  k:u8  min_m:u8  max_m:u8  target_ppm:u32
///           loss_ppm:u32  share  get
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FecRequest {
    /// The fetch's name in its SHARD datagrams (the requester picks it).
    pub transfer: u32,
    /// Bytes of every shard.
    pub shard_len: usize,
    /// Data shards per stripe.
    pub data: usize,
    /// Parity shards per stripe at least ...
    pub min_parity: usize,
    /// ... and at most.
    pub max_parity: usize,
    /// Stripe loss probability to aim for, in millionths.
    pub target_ppm: u32,
    /// The shard loss the requester has seen so far in this fetch, in millionths: where the
    /// provider's estimate starts.
    pub loss_ppm: u32,
    /// The shards of each stripe to send.
    pub share: Share,
    /// Which groups.
    pub get: GetRequest,
}

impl FecRequest {
    /// Encodes the frame payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + 64);
        out.extend_from_slice(&self.transfer.to_be_bytes());
        out.extend_from_slice(&(self.shard_len as u16).to_be_bytes());
        out.push(self.data as u8);
        out.push(self.min_parity as u8);
        out.push(self.max_parity as u8);
        out.extend_from_slice(&self.target_ppm.to_be_bytes());
        out.extend_from_slice(&self.loss_ppm.to_be_bytes());
        out.extend_from_slice(&self.share.encode());
        out.extend_from_slice(&self.get.encode());
        out
    }

    /// Decodes and checks the frame payload: a valid shape range, shard size and target.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "fec get");
        let transfer = r.u32()?;
        let shard_len = usize::from(r.u16()?);
        let data = usize::from(r.u8()?);
        let min_parity = usize::from(r.u8()?);
        let max_parity = usize::from(r.u8()?);
        let target_ppm = r.u32()?;
        let loss_ppm = r.u32()?;
        let share = Share {
            data_first: r.u8()?,
            data_count: r.u8()?,
            parity_first: r.u8()?,
            parity_step: r.u8()?,
        };
        let get = GetRequest::decode(r.rest())?;
        let request = Self {
            transfer,
            shard_len,
            data,
            min_parity,
            max_parity,
            target_ppm,
            loss_ppm,
            share,
            get,
        };
        request.check()?;
        Ok(request)
    }

    /// Checks the coding parameters.
    pub fn check(&self) -> Result<()> {
        check_stripes(
            self.shard_len,
            self.data,
            self.min_parity,
            self.max_parity,
            self.target_ppm,
        )?;
        if self.loss_ppm > 1_000_000 {
            return Err(malformed(format!(
                "loss {} ppm is above 1000000",
                self.loss_ppm
            )));
        }
        let share = self.share;
        let (first, count) = (usize::from(share.data_first), usize::from(share.data_count));
        if count == 0 || first + count > self.data {
            return Err(malformed(format!(
                "data shards {first}..{} are not a run inside 0..{}",
                first + count,
                self.data
            )));
        }
        if share.parity_step == 0 || share.parity_first >= share.parity_step {
            return Err(malformed(format!(
                "parity numbers from {} every {} are not a share",
                share.parity_first, share.parity_step
            )));
        }
        Ok(())
    }

    /// The redundancy this request allows, starting from the loss the requester has seen.
    pub fn redundancy(&self) -> Result<Redundancy> {
        let mut r = Redundancy::new(
            self.data,
            self.min_parity,
            self.max_parity,
            f64::from(self.target_ppm) / 1e6,
        )?;
        r.start_at(f64::from(self.loss_ppm) / 1e6);
        Ok(r)
    }
}

/// FEC SHAPE's payload: the shard size.
pub fn encode_shape(shard_len: usize) -> [u8; 2] {
    (shard_len as u16).to_be_bytes()
}

/// Decodes FEC SHAPE's payload: a shard size within the protocol's bounds.
pub fn decode_shape(payload: &[u8]) -> Result<usize> {
    let mut r = Reader::new(payload, "fec shape");
    let len = usize::from(r.u16()?);
    r.finish()?;
    if !(MIN_SHARD_LEN..=MAX_SHARD_LEN).contains(&len) {
        return Err(CoreError::Malformed {
            what: "fec shape",
            detail: format!("shard size {len} is outside {MIN_SHARD_LEN}..={MAX_SHARD_LEN}"),
        });
    }
    Ok(len)
}

/// REPAIR's payload: stripes to send again over the stream.
pub fn encode_repair(stripes: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 8 * stripes.len());
    out.extend_from_slice(&(stripes.len() as u16).to_be_bytes());
    for s in stripes {
        out.extend_from_slice(&s.to_be_bytes());
    }
    out
}

/// Decodes REPAIR's payload: 1..=[`MAX_REPAIR`] stripes.
pub fn decode_repair(payload: &[u8]) -> Result<Vec<u64>> {
    let mut r = Reader::new(payload, "repair");
    let n = usize::from(r.u16()?);
    if n == 0 || n > MAX_REPAIR {
        return Err(r.malformed(format!("{n} stripes (allowed 1..={MAX_REPAIR})")));
    }
    let stripes = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
    r.finish()?;
    Ok(stripes)
}

/// STRIPE's payload: the stripe number, then its data bytes.
pub fn encode_stripe_header(stripe: u64) -> [u8; 8] {
    stripe.to_be_bytes()
}

/// Decodes STRIPE's payload: (stripe, data).
pub fn decode_stripe(payload: &[u8]) -> Result<(u64, &[u8])> {
    if payload.len() < 8 {
        return Err(CoreError::Truncated("stripe"));
    }
    let (head, data) = payload.split_at(8);
    let mut s = [0u8; 8];
    s.copy_from_slice(head);
    Ok((u64::from_be_bytes(s), data))
}

fn malformed(detail: String) -> CoreError {
    CoreError::Malformed {
        what: "fec get",
        detail,
    }
}

/// Checks the stripe parameters of a FEC GET on their own: the shard size, the stripe size,
/// the parity range and the target stripe loss (in millionths). A requester checks its
/// options with it before it knows the blob; a provider checks every request with it.
pub fn check_stripes(
    shard_len: usize,
    data: usize,
    min_parity: usize,
    max_parity: usize,
    target_ppm: u32,
) -> Result<()> {
    if !(MIN_SHARD_LEN..=MAX_SHARD_LEN).contains(&shard_len) {
        return Err(malformed(format!(
            "shard size {shard_len} is outside {MIN_SHARD_LEN}..={MAX_SHARD_LEN}"
        )));
    }
    if data.saturating_mul(shard_len) > MAX_STRIPE_BYTES {
        return Err(malformed(format!(
            "stripes of {data} x {shard_len} bytes exceed {MAX_STRIPE_BYTES}"
        )));
    }
    if !(1..1_000_000).contains(&target_ppm) {
        return Err(malformed(format!(
            "target {target_ppm} ppm is not in 1..1000000"
        )));
    }
    // The stripe's shape range on its own.
    Redundancy::new(data, min_parity, max_parity, f64::from(target_ppm) / 1e6)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fec_requests_and_repairs_round_trip_and_are_bounded() {
        let request = FecRequest {
            transfer: 9,
            shard_len: 1200,
            data: 32,
            min_parity: 1,
            max_parity: 16,
            target_ppm: 1000,
            loss_ppm: 30_000,
            share: Share::whole(32),
            get: GetRequest {
                hash: [5; 32],
                group_log: 18,
                ranges: vec![(0, 64)],
            },
        };
        assert_eq!(FecRequest::decode(&request.encode()).unwrap(), request);
        let bad = |change: &dyn Fn(&mut FecRequest)| {
            let mut r = request.clone();
            change(&mut r);
            FecRequest::decode(&r.encode()).is_err()
        };
        assert!(bad(&|r| r.shard_len = 100));
        assert!(bad(&|r| r.data = 0));
        assert!(bad(&|r| r.min_parity = 0));
        assert!(bad(&|r| r.min_parity = 17));
        assert!(bad(&|r| r.max_parity = 250));
        assert!(bad(&|r| r.target_ppm = 0));
        assert!(bad(&|r| r.target_ppm = 1_000_000));
        assert!(bad(&|r| r.loss_ppm = 1_000_001));
        assert!((request.redundancy().unwrap().loss() - 0.03).abs() < 1e-9);
        // Shares: a run of data shards inside k, a parity first below its step, and parity
        // numbers that fit a stripe.
        let split = FecRequest {
            share: Share::split(32, 1, 3).unwrap(),
            ..request.clone()
        };
        assert_eq!(FecRequest::decode(&split.encode()).unwrap(), split);
        let share = |r: &mut FecRequest, s: [u8; 4]| {
            r.share = Share {
                data_first: s[0],
                data_count: s[1],
                parity_first: s[2],
                parity_step: s[3],
            }
        };
        assert!(bad(&|r| share(r, [0, 0, 0, 1])));
        assert!(bad(&|r| share(r, [30, 3, 0, 1])));
        assert!(bad(&|r| share(r, [0, 32, 0, 0])));
        assert!(bad(&|r| share(r, [0, 32, 2, 2])));
        assert!(bad(&|r| share(r, [0, 32, 5, 3])));
        assert!(bad(&|r| {
            r.shard_len = 60_000;
            r.data = 20;
        }));
        let bytes = request.encode();
        for n in 0..bytes.len() {
            assert!(FecRequest::decode(&bytes[..n]).is_err());
        }
        assert_eq!(
            decode_repair(&encode_repair(&[3, 1 << 40])).unwrap(),
            vec![3, 1 << 40]
        );
        assert!(decode_repair(&encode_repair(&[])).is_err());
        assert!(decode_repair(&encode_repair(&vec![1; MAX_REPAIR + 1])).is_err());
        let mut trailing = encode_repair(&[1]);
        trailing.push(0);
        assert!(decode_repair(&trailing).is_err());
        let mut frame = encode_stripe_header(7).to_vec();
        frame.extend_from_slice(b"abc");
        assert_eq!(decode_stripe(&frame).unwrap(), (7, &b"abc"[..]));
        assert!(decode_stripe(&frame[..7]).is_err());
    }

    #[test]
    fn shares_split_every_shard_once() {
        for (k, parts) in [(32, 1), (32, 2), (32, 3), (10, 4), (5, 5)] {
            let shares: Vec<Share> = (0..parts)
                .map(|p| Share::split(k, p, parts).unwrap())
                .collect();
            for index in 0..k + 20 {
                let holders = shares.iter().filter(|s| s.holds(k, index)).count();
                assert_eq!(holders, 1, "{k}/{parts}: shard {index}");
            }
            // Together the shares send every shard of a stripe coded with m parity, once.
            for m in 1..=20 {
                let mut sent: Vec<usize> = shares.iter().flat_map(|s| s.indices(k, m)).collect();
                sent.sort_unstable();
                assert_eq!(sent, (0..k + m).collect::<Vec<_>>(), "{k}/{parts}, m = {m}");
                for s in &shares {
                    assert!(s.indices(k, m).all(|i| s.holds(k, i)));
                    assert_eq!(
                        s.indices(k, m).count(),
                        usize::from(s.data_count) + s.parity_sent(m)
                    );
                }
            }
        }
        assert_eq!(Share::split(32, 0, 1), Some(Share::whole(32)));
        let uneven: Vec<Share> = (0..3)
            .map(|p| Share::split_by(&[20, 3, 9], p).unwrap())
            .collect();
        let mut sent: Vec<usize> = uneven.iter().flat_map(|s| s.indices(32, 7)).collect();
        sent.sort_unstable();
        assert_eq!(sent, (0..39).collect::<Vec<_>>());
        assert!(Share::split_by(&[20, 0, 12], 0).is_none());
        assert!(Share::split_by(&[20, 12], 2).is_none());
        assert!(Share::split(4, 0, 5).is_none());
        assert!(Share::split(4, 2, 2).is_none());
        assert!(Share::split(4, 0, 0).is_none());
        let s = Share::split(32, 1, 3).unwrap();
        assert_eq!(s.parity_sent(1), 0, "parity 0 only: not its number");
        assert_eq!(
            (s.parity_sent(2), s.parity_sent(4), s.parity_sent(5)),
            (1, 1, 2)
        );
    }
}
