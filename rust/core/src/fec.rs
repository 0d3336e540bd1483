//! Forward error correction over datagrams: how a blob is cut into stripes of k data + m
//! parity shards, and the SHARD datagram that carries one shard.
//!
//! This is the wire layer of FEC mode; `fec_serve` and `fec_fetch` in the net crate send and
//! receive it. A blob of `size` bytes is cut into stripes of `k × shard_len` bytes (the last one
//! shorter, zero-padded to whole shards); each stripe is coded into `k + m` shards of
//! `shard_len` bytes, any k of which rebuild it. A shard travels alone in one QUIC datagram,
//! so `shard_len` plus the header must fit the path's datagram size.
//!
//! ```text
//! shard = 0x01  transfer:u32  stripe:u64  index:u8  k:u8  m:u8  payload:shard_len bytes
//! ```
//!
//! `transfer` names the fetch (the requester picks it); `k` and `m` are the stripe's shape,
//! which the sender may change between stripes as redundancy adapts: the receiver reports the
//! shards it got and lost ([`LossReport`]), and [`Redundancy`] picks the smallest m that makes
//! losing a stripe (more than m of its k + m shards) rarer than a target probability.

use crate::erasure::ErasureParams;
use crate::error::{CoreError, Result};
use crate::transfer::GetRequest;
use crate::wire::Reader;

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

/// A shard loss estimate that tells random loss from congestion.
///
/// Reports are taken in windows of at least [`SPIKE_WINDOW`] shards. Once three windows have
/// been seen, a window whose loss is more than twice the lower median of the last windows
/// (plus half a percent) is taken for congestion (a queue overflowing drops runs of packets, which parity cannot cover and
/// which more parity would only worsen): it counts at that median. The estimate is a moving
/// average of the windows, each weighted by how many shards it covers. Loss that persists
/// raises the median and so counts in full after a few windows; loss that falls counts at
/// once.
#[derive(Debug, Clone)]
pub struct LossEstimate {
    loss: f64,
    /// Shards received and lost in the window being filled.
    window: (u64, u64),
    /// Loss rates of the last windows, oldest first.
    history: std::collections::VecDeque<f64>,
}

/// Shards a report must cover to move the loss estimate by about 63 % of the way.
const LOSS_WINDOW: f64 = 2000.0;
/// Shards in a window of reports that is judged as random loss or congestion.
pub const SPIKE_WINDOW: u64 = 1000;
/// Windows whose loss rates the baseline is the lower median of.
const HISTORY: usize = 9;
/// Entries the history needs (the starting value and windows) before a window can be taken
/// for congestion.
const MIN_HISTORY: usize = 3;

impl Default for LossEstimate {
    fn default() -> Self {
        Self::starting_at(0.0)
    }
}

impl LossEstimate {
    /// An estimate (and baseline) starting at `loss`.
    pub fn starting_at(loss: f64) -> Self {
        let loss = loss.clamp(0.0, 1.0);
        Self {
            loss,
            window: (0, 0),
            history: std::collections::VecDeque::from([loss]),
        }
    }

    /// The estimated random shard loss rate.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Takes a receiver's report in; true when it completed a window of congestion (loss
    /// well above the baseline).
    pub fn report(&mut self, report: &LossReport) -> bool {
        self.window.0 = self.window.0.saturating_add(report.received);
        self.window.1 = self.window.1.saturating_add(report.lost);
        let seen = self.window.0.saturating_add(self.window.1);
        if seen < SPIKE_WINDOW {
            return false;
        }
        let rate = self.window.1 as f64 / seen as f64;
        self.window = (0, 0);
        let baseline = self.baseline();
        // A baseline of the starting value and two windows or fewer says too little yet.
        let congested = self.history.len() > MIN_HISTORY && rate > 2.0 * baseline + 0.005;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(rate);
        let counted = if congested { baseline } else { rate };
        self.loss = next_rate(self.loss, counted, seen);
        congested
    }

    /// The lower median of the last windows' loss rates.
    pub fn baseline(&self) -> f64 {
        let mut rates: Vec<f64> = self.history.iter().copied().collect();
        rates.sort_by(f64::total_cmp);
        rates
            .get(rates.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0.0)
    }
}

/// Adaptive redundancy: the parity count for stripes of k data shards, from the loss the
/// receiver reports (as a [`LossEstimate`], so congestion does not count), within configured
/// bounds. The parity chosen is the smallest m in `min_parity..=max_parity` for which, with
/// shards lost independently at the estimated rate, a stripe loses more than m of its k + m
/// shards with probability at most `target`.
#[derive(Debug, Clone)]
pub struct Redundancy {
    data: usize,
    min_parity: usize,
    max_parity: usize,
    /// The shape with the most parity, checked when the range was set.
    max: ErasureParams,
    target: f64,
    estimate: LossEstimate,
}

impl Redundancy {
    /// Redundancy for stripes of `data` shards, between `min_parity` and `max_parity` parity
    /// shards, aiming at a stripe loss probability of `target` (0 < target < 1).
    pub fn new(data: usize, min_parity: usize, max_parity: usize, target: f64) -> Result<Self> {
        ErasureParams::new(data, min_parity)?;
        let max = ErasureParams::new(data, max_parity)?;
        if min_parity > max_parity || !(target > 0.0 && target < 1.0) {
            return Err(CoreError::Malformed {
                what: "redundancy",
                detail: format!(
                    "parity {min_parity}..={max_parity} and target {target} are not a valid range"
                ),
            });
        }
        Ok(Self {
            data,
            min_parity,
            max_parity,
            max,
            target,
            estimate: LossEstimate::default(),
        })
    }

    /// Starts the estimate (and its baseline) at `loss`.
    pub fn start_at(&mut self, loss: f64) {
        self.estimate = LossEstimate::starting_at(loss);
    }

    /// Takes a receiver's report into the loss estimate; true when it completed a window of
    /// congestion.
    pub fn report(&mut self, report: &LossReport) -> bool {
        self.estimate.report(report)
    }

    /// The estimated random shard loss rate.
    pub fn loss(&self) -> f64 {
        self.estimate.loss()
    }

    /// The stripe shape to use now.
    pub fn params(&self) -> ErasureParams {
        let loss = self.loss();
        (self.min_parity..self.max_parity)
            .find(|&m| stripe_loss(self.data + m, m, loss) <= self.target)
            .and_then(|m| ErasureParams::new(self.data, m).ok())
            .unwrap_or(self.max)
    }
}

/// The moving average `loss` after `seen` shards lost at `rate`.
fn next_rate(loss: f64, rate: f64, seen: u64) -> f64 {
    let weight = 1.0 - (-(seen as f64) / LOSS_WINDOW).exp();
    loss + weight * (rate - loss)
}

/// P(more than `m` of `n` shards lost) when each is lost independently with probability `p`.
pub fn stripe_loss(n: usize, m: usize, p: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return if m < n { 1.0 } else { 0.0 };
    }
    // Sum the binomial terms for 0..=m losses in log space, then take the complement.
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_choose = 0.0; // ln C(n, 0)
    let mut kept = 0.0;
    for i in 0..=m.min(n) {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        kept += (log_choose + i as f64 * lp + (n - i) as f64 * lq).exp();
    }
    (1.0 - kept).max(0.0)
}

/// How often a FEC requester sends LOSS reports and checks the quiet time after END; the
/// provider allows this much slack when it judges the delay its reports show. Both ends
/// use it, so it lives here rather than in either.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(10);

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
        let bad = |detail: String| CoreError::Malformed {
            what: "fec get",
            detail,
        };
        if !(MIN_SHARD_LEN..=MAX_SHARD_LEN).contains(&self.shard_len) {
            return Err(bad(format!(
                "shard size {} is outside {MIN_SHARD_LEN}..={MAX_SHARD_LEN}",
                self.shard_len
            )));
        }
        if self.data * self.shard_len > MAX_STRIPE_BYTES {
            return Err(bad(format!(
                "stripes of {} x {} bytes exceed {MAX_STRIPE_BYTES}",
                self.data, self.shard_len
            )));
        }
        if !(1..1_000_000).contains(&self.target_ppm) {
            return Err(bad(format!(
                "target {} ppm is not in 1..1000000",
                self.target_ppm
            )));
        }
        if self.loss_ppm > 1_000_000 {
            return Err(bad(format!("loss {} ppm is above 1000000", self.loss_ppm)));
        }
        // The stripe's shape range on its own, then the share inside it.
        Redundancy::new(
            self.data,
            self.min_parity,
            self.max_parity,
            f64::from(self.target_ppm) / 1e6,
        )?;
        let share = self.share;
        let (first, count) = (usize::from(share.data_first), usize::from(share.data_count));
        if count == 0 || first + count > self.data {
            return Err(bad(format!(
                "data shards {first}..{} are not a run inside 0..{}",
                first + count,
                self.data
            )));
        }
        if share.parity_step == 0 || share.parity_first >= share.parity_step {
            return Err(bad(format!(
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

    #[test]
    fn congestion_spikes_do_not_raise_the_parity() {
        let report = |received, lost| LossReport {
            transfer: 1,
            received,
            lost,
            through: 0,
        };
        let mut r = Redundancy::new(32, 1, 8, 1e-3).unwrap();
        r.start_at(0.03);
        for _ in 0..20 {
            assert!(!r.report(&report(970, 30)), "steady 3 % is random loss");
        }
        // The first windows of an estimate starting from nothing are not congestion.
        let mut blank = Redundancy::new(32, 1, 8, 1e-3).unwrap();
        for _ in 0..5 {
            assert!(!blank.report(&report(970, 30)));
        }
        let (loss, m) = (r.loss(), r.params().parity());
        assert!((loss - 0.03).abs() < 0.005, "{loss}");
        // A queue overflowing: a window losing 20 %, then 3 % again.
        assert!(r.report(&report(800, 200)), "a spike is congestion");
        assert!((r.loss() - 0.03).abs() < 0.005, "counted at the baseline");
        assert_eq!(r.params().parity(), m);
        assert!(!r.report(&report(970, 30)));
        // Loss that stays high is real: after a few windows it counts in full.
        let mut congested = 0;
        for _ in 0..10 {
            congested += usize::from(r.report(&report(800, 200)));
        }
        assert!((1..=5).contains(&congested), "{congested}");
        assert!(r.loss() > 0.15 && r.params().parity() > m);
        // A request that starts from a measured loss does not take it for congestion.
        let mut fresh = Redundancy::new(32, 1, 8, 1e-3).unwrap();
        fresh.start_at(0.1);
        assert!(!fresh.report(&report(900, 100)));
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        // n = 4, m = 1, p = 0.5: P(X > 1) = 1 - (1 + 4) / 16.
        assert!((stripe_loss(4, 1, 0.5) - 11.0 / 16.0).abs() < 1e-12);
        assert_eq!(stripe_loss(14, 4, 0.0), 0.0);
        assert_eq!(stripe_loss(14, 4, 1.0), 1.0);
        assert_eq!(stripe_loss(4, 4, 1.0), 0.0);
        for (n, m, p) in [(14, 4, 0.03), (40, 8, 0.1), (256, 56, 0.2)] {
            let tail = stripe_loss(n, m, p);
            assert!((0.0..=1.0).contains(&tail));
            assert!(
                stripe_loss(n, m + 1, p) <= tail,
                "more parity never loses more"
            );
            assert!(
                stripe_loss(n, m, p * 1.5) >= tail,
                "more loss never loses less"
            );
        }
    }

    #[test]
    fn redundancy_follows_the_reported_loss_within_bounds() {
        let mut r = Redundancy::new(10, 1, 20, 1e-3).unwrap();
        assert_eq!(r.params().parity(), 1, "no loss seen: the minimum");
        let report = |received, lost| LossReport {
            transfer: 1,
            received,
            lost,
            through: 0,
        };
        let mut last = 1;
        for lost in [10, 30, 100] {
            for _ in 0..20 {
                r.report(&report(1000 - lost, lost));
            }
            let m = r.params().parity();
            assert!(m >= last, "parity grows with loss: {m} < {last}");
            assert!(stripe_loss(10 + m, m, r.loss()) <= 1e-3);
            if m > 1 {
                assert!(
                    stripe_loss(10 + m - 1, m - 1, r.loss()) > 1e-3,
                    "{m} is the least"
                );
            }
            last = m;
        }
        assert!(last > 1);
        for _ in 0..50 {
            r.report(&report(1000, 0));
        }
        assert!(r.params().parity() < last, "parity falls when loss falls");
        // A report of nothing changes nothing; reports count once they fill a window.
        let before = r.loss();
        r.report(&report(0, 0));
        assert_eq!(r.loss(), before);
        r.report(&report(0, 5));
        assert_eq!(r.loss(), before);
        r.report(&report(995, 0));
        assert!(r.loss() > before && r.loss() < before + 0.01);
        // The maximum caps it even when the target cannot be met.
        let mut capped = Redundancy::new(10, 1, 4, 1e-6).unwrap();
        for _ in 0..20 {
            capped.report(&report(500, 500));
        }
        assert_eq!(capped.params().parity(), 4);
        assert!(Redundancy::new(10, 5, 4, 1e-3).is_err());
        assert!(Redundancy::new(10, 1, 4, 0.0).is_err());
        assert!(Redundancy::new(10, 0, 4, 1e-3).is_err());
        assert!(
            Redundancy::new(250, 1, 10, 1e-3).is_err(),
            "250 + 10 > 256 shards"
        );
    }
}
