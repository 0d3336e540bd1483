//! The wire layer of FEC mode's datagrams: how a blob is cut into stripes ([`FecLayout`]),
//! the SHARD datagram that carries one shard, and the LOSS report a receiver sends back.
//!
//! Every decoder here checks its input against the layout before anything is allocated.

use crate::erasure::ErasureParams;
use crate::error::{CoreError, Result};

/// Tag of a SHARD datagram (registered in [`crate::kinds`]).
pub use crate::kinds::DATAGRAM_SHARD as SHARD_TAG;
/// Bytes of a SHARD datagram before its payload.
pub const SHARD_HEADER_LEN: usize = 1 + 4 + 8 + 1 + 1 + 1;
/// Smallest shard payload: shards below this cost more in headers than they carry.
pub const MIN_SHARD_LEN: usize = 256;
/// Largest shard payload (a QUIC datagram is at most 65 527 bytes of payload).
pub const MAX_SHARD_LEN: usize = 65_000;

/// How a blob is striped for FEC: shard size and the blob's size. The shape (k, m) is per
/// stripe, so it is not part of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecLayout {
    size: u64,
    shard_len: usize,
}

impl FecLayout {
    /// A layout for a blob of `size` bytes in shards of `shard_len` bytes that must fit a
    /// datagram of `max_datagram` bytes with their header.
    pub fn new(size: u64, shard_len: usize, max_datagram: usize) -> Result<Self> {
        let bad = |detail: String| CoreError::Malformed {
            what: "fec layout",
            detail,
        };
        if !(MIN_SHARD_LEN..=MAX_SHARD_LEN).contains(&shard_len) {
            return Err(bad(format!(
                "shard size {shard_len} is outside {MIN_SHARD_LEN}..={MAX_SHARD_LEN}"
            )));
        }
        if shard_len + SHARD_HEADER_LEN > max_datagram {
            return Err(bad(format!(
                "a {shard_len}-byte shard does not fit a {max_datagram}-byte datagram \
                 ({SHARD_HEADER_LEN} bytes of header)"
            )));
        }
        Ok(Self { size, shard_len })
    }

    /// Bytes of every shard.
    pub fn shard_len(&self) -> usize {
        self.shard_len
    }

    /// Bytes of data a stripe of shape `params` covers (before the last one).
    pub fn stripe_bytes(&self, params: ErasureParams) -> u64 {
        (params.data() * self.shard_len) as u64
    }

    /// Stripes the blob has with every stripe of shape `params`.
    pub fn stripes(&self, params: ErasureParams) -> u64 {
        self.size.div_ceil(self.stripe_bytes(params))
    }

    /// The byte range of the blob stripe `stripe` covers, or an error past the blob's end.
    pub fn stripe_range(&self, params: ErasureParams, stripe: u64) -> Result<(u64, u64)> {
        let per = self.stripe_bytes(params);
        let start = stripe
            .checked_mul(per)
            .filter(|&s| s < self.size)
            .ok_or_else(|| CoreError::Malformed {
                what: "shard",
                detail: format!("stripe {stripe} is beyond the blob's end"),
            })?;
        // start < size, so this cannot overflow even when the blob ends near 2^64.
        Ok((start, start + per.min(self.size - start)))
    }
}

/// One shard as carried in a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard<'a> {
    /// The fetch it belongs to.
    pub transfer: u32,
    /// Its stripe.
    pub stripe: u64,
    /// Its index in the stripe: data shards first, then parity.
    pub index: u8,
    /// The stripe's shape.
    pub params: ErasureParams,
    /// The shard's bytes.
    pub payload: &'a [u8],
}

impl<'a> Shard<'a> {
    /// Appends the datagram bytes of this shard to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(SHARD_HEADER_LEN + self.payload.len());
        out.push(SHARD_TAG);
        out.extend_from_slice(&self.transfer.to_be_bytes());
        out.extend_from_slice(&self.stripe.to_be_bytes());
        out.push(self.index);
        // k and m are at most 255 each: k + m ≤ 256 and both ≥ 1.
        out.push(self.params.data() as u8);
        out.push(self.params.parity() as u8);
        out.extend_from_slice(self.payload);
    }

    /// Reads a SHARD datagram and checks it against `layout`: a known tag, a valid shape, an
    /// index inside it, a stripe inside the blob and a payload of exactly one shard.
    pub fn decode(datagram: &'a [u8], layout: &FecLayout) -> Result<Self> {
        let bad = |detail: String| CoreError::Malformed {
            what: "shard",
            detail,
        };
        if datagram.len() < SHARD_HEADER_LEN {
            return Err(CoreError::Truncated("shard"));
        }
        let (header, payload) = datagram.split_at(SHARD_HEADER_LEN);
        if header[0] != SHARD_TAG {
            return Err(bad(format!("unknown datagram tag {:#04x}", header[0])));
        }
        let transfer = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut stripe = [0u8; 8];
        stripe.copy_from_slice(&header[5..13]);
        let stripe = u64::from_be_bytes(stripe);
        let (index, k, m) = (header[13], usize::from(header[14]), usize::from(header[15]));
        let params = ErasureParams::new(k, m)
            .map_err(|_| bad(format!("shape {k}+{m} is not a valid stripe")))?;
        if usize::from(index) >= k + m {
            return Err(bad(format!("index {index} outside a {k}+{m} stripe")));
        }
        if payload.len() != layout.shard_len {
            return Err(bad(format!(
                "{} bytes where a shard has {}",
                payload.len(),
                layout.shard_len
            )));
        }
        layout.stripe_range(params, stripe)?;
        Ok(Self {
            transfer,
            stripe,
            index,
            params,
            payload,
        })
    }
}

/// What a receiver saw since its last report: shards received and shards lost (expected for
/// stripes it has given up waiting for, but never seen), and how far it has got.
///
/// ```text
/// loss_report = transfer:u32  received:u64  lost:u64  through:u64
/// ```
///
/// `through` is one past the newest stripe of which a shard has arrived: the sender keeps at
/// most a window of stripes beyond it in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossReport {
    /// The fetch it is about.
    pub transfer: u32,
    /// Shards received in the window.
    pub received: u64,
    /// Shards lost in the window.
    pub lost: u64,
    /// One past the newest stripe a shard of which has arrived.
    pub through: u64,
}

/// Bytes of an encoded [`LossReport`].
pub const LOSS_REPORT_LEN: usize = 4 + 8 + 8 + 8;

impl LossReport {
    /// The report's bytes.
    pub fn encode(&self) -> [u8; LOSS_REPORT_LEN] {
        let mut out = [0u8; LOSS_REPORT_LEN];
        out[..4].copy_from_slice(&self.transfer.to_be_bytes());
        out[4..12].copy_from_slice(&self.received.to_be_bytes());
        out[12..20].copy_from_slice(&self.lost.to_be_bytes());
        out[20..].copy_from_slice(&self.through.to_be_bytes());
        out
    }

    /// Reads a report; it must be exactly [`LOSS_REPORT_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bytes: &[u8; LOSS_REPORT_LEN] = bytes.try_into().map_err(|_| CoreError::Malformed {
            what: "loss report",
            detail: format!("{} bytes where a report has {LOSS_REPORT_LEN}", bytes.len()),
        })?;
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Ok(Self {
            transfer: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            received: u64_at(4),
            lost: u64_at(12),
            through: u64_at(20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> FecLayout {
        FecLayout::new(1_000_000, 1200, 1400).unwrap()
    }

    fn shard(params: ErasureParams, stripe: u64, index: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Shard {
            transfer: 7,
            stripe,
            index,
            params,
            payload,
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn shards_round_trip_for_every_index() {
        let params = ErasureParams::new(10, 4).unwrap();
        let payload = vec![0xab; 1200];
        let last = layout().stripes(params) - 1;
        for index in 0..14u8 {
            let bytes = shard(params, last, index, &payload);
            let got = Shard::decode(&bytes, &layout()).unwrap();
            assert_eq!((got.transfer, got.stripe, got.index), (7, last, index));
            assert_eq!(got.params, params);
            assert_eq!(got.payload, &payload[..]);
        }
    }

    #[test]
    fn the_last_stripe_of_a_blob_ending_near_two_to_the_64_has_a_range() {
        let params = ErasureParams::new(1, 1).unwrap();
        let layout = FecLayout::new(u64::MAX, 256, 1200).unwrap();
        let last = layout.stripes(params) - 1;
        assert_eq!(
            layout.stripe_range(params, last).unwrap(),
            (last * 256, u64::MAX)
        );
    }

    #[test]
    fn bad_shards_are_errors_not_panics() {
        let params = ErasureParams::new(10, 4).unwrap();
        let good = shard(params, 0, 0, &[1; 1200]);
        let stripes = layout().stripes(params);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (shard(params, 0, 14, &[1; 1200]), "index 14"),
            (shard(params, 0, 255, &[1; 1200]), "index 255"),
            (shard(params, 0, 0, &[1; 1199]), "1199 bytes"),
            (shard(params, 0, 0, &[1; 1201]), "1201 bytes"),
            (shard(params, stripes, 0, &[1; 1200]), "beyond the blob"),
            (shard(params, u64::MAX, 0, &[1; 1200]), "beyond the blob"),
        ];
        for (bytes, fragment) in cases {
            let e = Shard::decode(&bytes, &layout()).unwrap_err().to_string();
            assert!(e.contains(fragment), "{e} lacks {fragment}");
        }
        let mut zero_k = good.clone();
        zero_k[14] = 0;
        assert!(Shard::decode(&zero_k, &layout()).is_err());
        let mut zero_m = good.clone();
        zero_m[15] = 0;
        assert!(Shard::decode(&zero_m, &layout()).is_err());
        let mut tag = good.clone();
        tag[0] = 0x02;
        assert!(Shard::decode(&tag, &layout()).is_err());
        // Every truncation of a valid datagram, and arbitrary bytes, fail cleanly.
        for n in 0..good.len() {
            assert!(Shard::decode(&good[..n], &layout()).is_err());
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 1300) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (state >> (i % 56)) as u8).collect();
            let _ = Shard::decode(&bytes, &layout());
        }
    }

    #[test]
    fn layouts_are_validated_and_cover_the_blob() {
        assert!(FecLayout::new(10, 100, 1400).is_err(), "below the minimum");
        assert!(
            FecLayout::new(10, 1390, 1400).is_err(),
            "does not fit with its header"
        );
        assert!(
            FecLayout::new(10, 70_000, 80_000).is_err(),
            "above the maximum"
        );
        let layout = FecLayout::new(1_000_001, 1200, 1400).unwrap();
        for (k, m) in [(1, 1), (10, 4), (32, 8), (200, 56)] {
            let params = ErasureParams::new(k, m).unwrap();
            let stripes = layout.stripes(params);
            let mut next = 0;
            for s in 0..stripes {
                let (start, end) = layout.stripe_range(params, s).unwrap();
                assert_eq!(start, next);
                assert!(end > start && end - start <= layout.stripe_bytes(params));
                next = end;
            }
            assert_eq!(next, 1_000_001);
            assert!(layout.stripe_range(params, stripes).is_err());
        }
    }

    #[test]
    fn loss_reports_round_trip_and_reject_wrong_lengths() {
        let r = LossReport {
            transfer: 3,
            received: 1 << 40,
            lost: 17,
            through: 99,
        };
        assert_eq!(LossReport::decode(&r.encode()).unwrap(), r);
        for n in [0, 20, 27, 29, 64] {
            assert!(LossReport::decode(&vec![0; n]).is_err());
        }
    }
}
