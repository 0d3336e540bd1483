//! Reed-Solomon erasure coding: a chunk group striped into k data + m parity shards, any k of
//! which rebuild it.
//!
//! The arithmetic is the `reed-solomon-erasure` crate's (GF(2^8), hence at most 256 shards),
//! with its `simd-accel` kernels (about 6x its portable code here; see the workspace
//! Cargo.toml for what they require of the CPU). Around it this module adds what the engine
//! needs:
//!
//! - a [`Stripe`]: the k+m shards of one group in one contiguous buffer, reused from group to
//!   group, so coding allocates nothing once the buffer has grown to the largest stripe;
//! - coding by column blocks: the crate multiplies whole shards one input shard at a time, which
//!   streams all m parity shards through memory k times; coding a few KiB of columns at a time
//!   keeps them in cache (about 2x faster for 10+4 and 32+8 on 64 MiB), and the copy of the flat
//!   input into the stripe happens in the same pass, while those columns are in cache anyway;
//! - `*_parallel` variants that hand ranges of columns to rayon.
//!
//! Invariants: every shard of a stripe has `shard_len` bytes; data shards come first, the last
//! one zero-padded. The stripe does not record the original size (the caller knows it from the
//! blob's metadata); reconstruction checks it against the data the stripe can hold. Shards are
//! not authenticated here: a corrupt shard yields corrupt data, which the caller verifies
//! against the blob's root.

use crate::error::{CoreError, Result};
use rayon::prelude::*;
use reed_solomon_erasure::galois_8::ReedSolomon;

/// Most shards (data + parity) a stripe can have: the size of GF(2^8).
pub const MAX_SHARDS: usize = 256;

/// Bytes of every shard coded at a time (the working set of one block, all shards together,
/// stays in cache). Blocks are a multiple of 64 bytes so the SIMD kernels never fall back to
/// their byte loop except at a shard's end. Measured (bench_coding.py): a 256 KiB budget
/// cost up to 28 % against the bare crate on 64 KiB shards, 2 MiB keeps those at 0.88-1.07x
/// and large stripes at or above the bare crate.
const BLOCK_BUDGET: usize = 2048 * 1024;
const MIN_BLOCK: usize = 4 * 1024;
const MAX_BLOCK: usize = 64 * 1024;

/// The shape of a stripe: how many data and parity shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErasureParams {
    data: usize,
    parity: usize,
}

impl ErasureParams {
    /// Checks `data` ≥ 1, `parity` ≥ 1 and `data + parity` ≤ [`MAX_SHARDS`].
    pub fn new(data: usize, parity: usize) -> Result<Self> {
        if data == 0 || parity == 0 || data.saturating_add(parity) > MAX_SHARDS {
            return Err(CoreError::InvalidErasureParams { data, parity });
        }
        Ok(Self { data, parity })
    }

    /// Number of data shards (k).
    pub fn data(&self) -> usize {
        self.data
    }

    /// Number of parity shards (m): how many shards may be lost.
    pub fn parity(&self) -> usize {
        self.parity
    }

    /// Data plus parity shards.
    pub fn total(&self) -> usize {
        self.data + self.parity
    }

    /// Length of each shard when `size` bytes are coded: `ceil(size / data)`.
    pub fn shard_len(&self, size: usize) -> usize {
        size.div_ceil(self.data)
    }
}

/// The k+m shards of one stripe in one buffer, with a mask of which are present.
#[derive(Debug, Clone)]
pub struct Stripe {
    /// Holds at least `total * shard_len` bytes; grows, never shrinks.
    buf: Vec<u8>,
    params: ErasureParams,
    shard_len: usize,
    present: Vec<bool>,
}

impl Default for Stripe {
    fn default() -> Self {
        Self::new()
    }
}

impl Stripe {
    /// An empty stripe (1+1 shards of 0 bytes); coding into it shapes it.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            params: ErasureParams { data: 1, parity: 1 },
            shard_len: 0,
            present: vec![false; 2],
        }
    }

    /// Shapes the stripe for `params` shards of `shard_len` bytes, all missing. The buffer
    /// grows only when the new shape needs more room; old bytes stay until overwritten.
    ///
    /// `shard_len` read off the network must be checked against the protocol's bound first;
    /// here only arithmetic overflow and a refused allocation are errors (never an abort).
    pub fn reset(&mut self, params: ErasureParams, shard_len: usize) -> Result<()> {
        let len = params
            .total()
            .checked_mul(shard_len)
            .filter(|&len| len <= isize::MAX as usize)
            .ok_or_else(|| too_large(params, shard_len))?;
        if self.buf.len() < len {
            self.buf
                .try_reserve_exact(len - self.buf.len())
                .map_err(|_| too_large(params, shard_len))?;
            self.buf.resize(len, 0);
        }
        self.params = params;
        self.shard_len = shard_len;
        self.present.clear();
        self.present.resize(params.total(), false);
        Ok(())
    }

    /// Shapes the stripe after `shards` (`None` for a missing one) and copies the present ones
    /// in. Every present shard must have the same length.
    pub fn load<S: AsRef<[u8]>>(
        &mut self,
        params: ErasureParams,
        shards: &[Option<S>],
    ) -> Result<()> {
        if shards.len() != params.total() {
            return Err(CoreError::ShardCount {
                got: shards.len(),
                expected: params.total(),
            });
        }
        let mut shard_len = None;
        for (index, shard) in shards.iter().enumerate() {
            if let Some(shard) = shard {
                let len = shard.as_ref().len();
                match shard_len {
                    None => shard_len = Some(len),
                    Some(expected) if expected != len => {
                        return Err(CoreError::ShardSize {
                            index,
                            len,
                            expected,
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        self.reset(params, shard_len.unwrap_or(0))?;
        for (index, shard) in shards.iter().enumerate() {
            if let Some(shard) = shard {
                self.insert(index, shard.as_ref())?;
            }
        }
        Ok(())
    }

    /// The stripe's shape.
    pub fn params(&self) -> ErasureParams {
        self.params
    }

    /// Bytes in each shard.
    pub fn shard_len(&self) -> usize {
        self.shard_len
    }

    /// Copies a received shard into slot `index` and marks it present.
    pub fn insert(&mut self, index: usize, shard: &[u8]) -> Result<()> {
        let expected = self.shard_len;
        if shard.len() != expected {
            return Err(CoreError::ShardSize {
                index,
                len: shard.len(),
                expected,
            });
        }
        let slot = self.slot_mut(index)?;
        slot.copy_from_slice(shard);
        self.present[index] = true;
        Ok(())
    }

    /// Slot `index` to receive a shard into without a copy; [`Stripe::mark_present`] it after.
    pub fn slot_mut(&mut self, index: usize) -> Result<&mut [u8]> {
        let total = self.params.total();
        if index >= total {
            return Err(CoreError::ShardCount {
                got: index + 1,
                expected: total,
            });
        }
        let start = index * self.shard_len;
        Ok(&mut self.buf[start..start + self.shard_len])
    }

    /// Marks slot `index` as holding its shard (out-of-range indices are ignored).
    pub fn mark_present(&mut self, index: usize) {
        if let Some(p) = self.present.get_mut(index) {
            *p = true;
        }
    }

    /// Marks slot `index` as missing (out-of-range indices are ignored).
    pub fn erase(&mut self, index: usize) {
        if let Some(p) = self.present.get_mut(index) {
            *p = false;
        }
    }

    /// Whether slot `index` holds its shard.
    pub fn is_present(&self, index: usize) -> bool {
        self.present.get(index).copied().unwrap_or(false)
    }

    /// How many shards are present.
    pub fn present_count(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }

    /// Shard `index`, if present.
    pub fn shard(&self, index: usize) -> Option<&[u8]> {
        if !self.is_present(index) {
            return None;
        }
        let start = index * self.shard_len;
        Some(&self.buf[start..start + self.shard_len])
    }

    /// Every shard in order, `None` for missing ones.
    pub fn shards(&self) -> impl ExactSizeIterator<Item = Option<&[u8]>> + '_ {
        (0..self.params.total()).map(|i| self.shard(i))
    }

    /// The data shards back to back (padding included), if all are present.
    pub fn data(&self) -> Option<&[u8]> {
        let k = self.params.data;
        self.present[..k]
            .iter()
            .all(|&p| p)
            .then(|| &self.buf[..k * self.shard_len])
    }
}

fn too_large(params: ErasureParams, shard_len: usize) -> CoreError {
    CoreError::Malformed {
        what: "stripe",
        detail: format!(
            "{} shards of {shard_len} bytes cannot be allocated",
            params.total()
        ),
    }
}

fn rs_error(e: reed_solomon_erasure::Error) -> CoreError {
    CoreError::Malformed {
        what: "stripe",
        detail: format!("reed-solomon: {e:?}"),
    }
}

/// A Reed-Solomon coder for one [`ErasureParams`]; build it once and reuse it (it caches the
/// decoding matrices of the erasure patterns it has seen). Shareable between threads.
#[derive(Debug)]
pub struct Coder {
    params: ErasureParams,
    rs: ReedSolomon,
    block: usize,
}

impl Coder {
    /// A coder for `params`.
    pub fn new(params: ErasureParams) -> Result<Self> {
        let rs = ReedSolomon::new(params.data, params.parity).map_err(|_| {
            CoreError::InvalidErasureParams {
                data: params.data,
                parity: params.parity,
            }
        })?;
        let block = (BLOCK_BUDGET / params.total()).clamp(MIN_BLOCK, MAX_BLOCK) & !63;
        Ok(Self { params, rs, block })
    }

    /// The coder's shape.
    pub fn params(&self) -> ErasureParams {
        self.params
    }

    /// Splits `data` into the data shards of `out` (`ceil(len / k)` bytes each, the last one
    /// zero-padded) and computes the parity shards; every shard is then present.
    pub fn encode(&self, data: &[u8], out: &mut Stripe) -> Result<()> {
        let shard_len = self.params.shard_len(data.len());
        out.reset(self.params, shard_len)?;
        if shard_len > 0 {
            let total = self.params.total();
            let mut pieces: [&mut [u8]; MAX_SHARDS] = std::array::from_fn(|_| Default::default());
            for (piece, shard) in pieces.iter_mut().zip(out.buf.chunks_exact_mut(shard_len)) {
                *piece = shard;
            }
            self.encode_columns(data, shard_len, 0, &mut pieces[..total])?;
        }
        out.present.fill(true);
        Ok(())
    }

    /// [`Coder::encode`] with ranges of columns coded on rayon's threads. Besides the stripe's
    /// buffer it allocates only the task lists (a pointer per shard per task); a stripe of one
    /// block is coded on the calling thread.
    pub fn encode_parallel(&self, data: &[u8], out: &mut Stripe) -> Result<()> {
        let shard_len = self.params.shard_len(data.len());
        let Some(width) = self.task_width(shard_len) else {
            return self.encode(data, out);
        };
        out.reset(self.params, shard_len)?;
        let tasks = split_columns(&mut out.buf, shard_len, self.params.total(), width);
        tasks
            .into_par_iter()
            .enumerate()
            .try_for_each(|(t, mut pieces)| {
                self.encode_columns(data, shard_len, t * width, &mut pieces)
            })?;
        out.present.fill(true);
        Ok(())
    }

    /// Rebuilds the missing data shards of `stripe` from any k present shards and returns the
    /// first `size` bytes of data. Parity shards that were missing stay missing.
    pub fn reconstruct<'s>(&self, stripe: &'s mut Stripe, size: u64) -> Result<&'s [u8]> {
        let Some(size) = self.check_reconstruct(stripe, size)? else {
            return Ok(&stripe.buf[..0]);
        };
        if !stripe.present[..self.params.data].iter().all(|&p| p) {
            let (shard_len, total) = (stripe.shard_len, self.params.total());
            let mut pieces: [&mut [u8]; MAX_SHARDS] = std::array::from_fn(|_| Default::default());
            for (piece, shard) in pieces
                .iter_mut()
                .zip(stripe.buf.chunks_exact_mut(shard_len))
            {
                *piece = shard;
            }
            self.reconstruct_columns(&stripe.present, &mut pieces[..total])?;
            stripe.present[..self.params.data].fill(true);
        }
        Ok(&stripe.buf[..size])
    }

    /// [`Coder::reconstruct`] with ranges of columns rebuilt on rayon's threads.
    pub fn reconstruct_parallel<'s>(&self, stripe: &'s mut Stripe, size: u64) -> Result<&'s [u8]> {
        let Some(width) = self.task_width(stripe.shard_len) else {
            return self.reconstruct(stripe, size);
        };
        let Some(size) = self.check_reconstruct(stripe, size)? else {
            return Ok(&stripe.buf[..0]);
        };
        if !stripe.present[..self.params.data].iter().all(|&p| p) {
            let present = &stripe.present;
            let tasks = split_columns(
                &mut stripe.buf,
                stripe.shard_len,
                self.params.total(),
                width,
            );
            tasks
                .into_par_iter()
                .try_for_each(|mut pieces| self.reconstruct_columns(present, &mut pieces))?;
            stripe.present[..self.params.data].fill(true);
        }
        Ok(&stripe.buf[..size])
    }

    /// Checks a stripe before reconstruction; `None` when there is nothing to rebuild (empty
    /// shards), otherwise the size to return.
    fn check_reconstruct(&self, stripe: &Stripe, size: u64) -> Result<Option<usize>> {
        if stripe.params != self.params {
            return Err(CoreError::Malformed {
                what: "stripe",
                detail: format!(
                    "stripe of {}+{} shards given to a {}+{} coder",
                    stripe.params.data, stripe.params.parity, self.params.data, self.params.parity
                ),
            });
        }
        let present = stripe.present_count();
        if present < self.params.data {
            return Err(CoreError::TooFewShards {
                present,
                needed: self.params.data,
            });
        }
        let capacity = (self.params.data * stripe.shard_len) as u64;
        if size > capacity {
            return Err(CoreError::StripeSize { size, capacity });
        }
        // `size` ≤ capacity, which is the length of an allocated buffer.
        Ok((stripe.shard_len > 0).then_some(size as usize))
    }

    /// Width of the column range each rayon task codes, or `None` when one block is all the
    /// work and threads would only add overhead.
    fn task_width(&self, shard_len: usize) -> Option<usize> {
        if shard_len <= self.block {
            return None;
        }
        // A few tasks per thread so a slow thread does not hold up the end.
        let tasks = rayon::current_num_threads() * 4;
        let blocks = shard_len.div_ceil(self.block);
        Some(blocks.div_ceil(tasks).max(1) * self.block)
    }

    /// Codes the columns `pieces` cover (k data then m parity pieces of equal width, starting
    /// at column `col` of shards of `shard_len` bytes), copying the input in block by block.
    fn encode_columns(
        &self,
        data: &[u8],
        shard_len: usize,
        col: usize,
        pieces: &mut [&mut [u8]],
    ) -> Result<()> {
        let (k, m) = (self.params.data, self.params.parity);
        let width = pieces.first().map_or(0, |p| p.len());
        let (inputs, outputs) = pieces.split_at_mut(k);
        let mut start = 0;
        while start < width {
            let end = (start + self.block).min(width);
            let mut ins: [&[u8]; MAX_SHARDS] = [&[]; MAX_SHARDS];
            for (i, (piece, slot)) in inputs.iter_mut().zip(ins.iter_mut()).enumerate() {
                let dst = &mut piece[start..end];
                let from = (i * shard_len + col + start).min(data.len());
                let to = (i * shard_len + col + end).min(data.len());
                dst[..to - from].copy_from_slice(&data[from..to]);
                dst[to - from..].fill(0);
                *slot = dst;
            }
            let mut outs: [&mut [u8]; MAX_SHARDS] = std::array::from_fn(|_| Default::default());
            for (piece, slot) in outputs.iter_mut().zip(outs.iter_mut()) {
                *slot = &mut piece[start..end];
            }
            self.rs
                .encode_sep(&ins[..k], &mut outs[..m])
                .map_err(rs_error)?;
            start = end;
        }
        Ok(())
    }

    /// Rebuilds the missing data columns `pieces` cover (k+m pieces of equal width).
    fn reconstruct_columns(&self, present: &[bool], pieces: &mut [&mut [u8]]) -> Result<()> {
        let total = self.params.total();
        let width = pieces.first().map_or(0, |p| p.len());
        let mut start = 0;
        while start < width {
            let end = (start + self.block).min(width);
            let mut shards: [(&mut [u8], bool); MAX_SHARDS] =
                std::array::from_fn(|_| (Default::default(), false));
            for ((piece, &p), slot) in pieces.iter_mut().zip(present).zip(shards.iter_mut()) {
                *slot = (&mut piece[start..end], p);
            }
            self.rs
                .reconstruct_data(&mut shards[..total])
                .map_err(rs_error)?;
            start = end;
        }
        Ok(())
    }
}

/// Cuts the first `total` shards of `buf` into column ranges of `width`: one list of `total`
/// pieces per range, for the parallel paths.
fn split_columns(
    buf: &mut [u8],
    shard_len: usize,
    total: usize,
    width: usize,
) -> Vec<Vec<&mut [u8]>> {
    let mut tasks: Vec<Vec<&mut [u8]>> = (0..shard_len.div_ceil(width))
        .map(|_| Vec::with_capacity(total))
        .collect();
    for shard in buf.chunks_exact_mut(shard_len).take(total) {
        for (task, piece) in tasks.iter_mut().zip(shard.chunks_mut(width)) {
            task.push(piece);
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(131) ^ (i >> 7)) as u8 ^ seed)
            .collect()
    }

    fn coder(k: usize, m: usize) -> Coder {
        Coder::new(ErasureParams::new(k, m).unwrap()).unwrap()
    }

    /// Encodes, erases `lost`, rebuilds with both paths, and checks the data comes back.
    fn round_trip(c: &Coder, blob: &[u8], lost: &[usize]) {
        for parallel in [false, true] {
            let mut stripe = Stripe::new();
            if parallel {
                c.encode_parallel(blob, &mut stripe).unwrap();
            } else {
                c.encode(blob, &mut stripe).unwrap();
            }
            let k = c.params().data();
            assert_eq!(stripe.shard_len(), blob.len().div_ceil(k));
            assert_eq!(&stripe.data().unwrap()[..blob.len()], blob);
            assert!(stripe.data().unwrap()[blob.len()..].iter().all(|&b| b == 0));
            for &i in lost {
                stripe.erase(i);
                // What was in the slot must not matter.
                if let Ok(slot) = stripe.slot_mut(i) {
                    slot.fill(0xa5);
                }
            }
            let size = blob.len() as u64;
            let got = if parallel {
                c.reconstruct_parallel(&mut stripe, size).unwrap()
            } else {
                c.reconstruct(&mut stripe, size).unwrap()
            };
            assert_eq!(
                got,
                blob,
                "len {} lost {lost:?} parallel {parallel}",
                blob.len()
            );
        }
    }

    #[test]
    fn parity_shard_j_is_the_same_for_every_m() {
        // FEC mode relies on this: providers coding one stripe with different parity counts
        // send interchangeable parity shards, and a receiver rebuilds with the largest shape.
        let data: Vec<u8> = (0..10 * 1200).map(|i| (i * 7 + 3) as u8).collect();
        let mut wide = Stripe::new();
        Coder::new(ErasureParams::new(10, 40).unwrap())
            .unwrap()
            .encode(&data, &mut wide)
            .unwrap();
        for m in [1, 2, 5, 17, 39] {
            let mut narrow = Stripe::new();
            Coder::new(ErasureParams::new(10, m).unwrap())
                .unwrap()
                .encode(&data, &mut narrow)
                .unwrap();
            for j in 0..10 + m {
                assert_eq!(narrow.shard(j), wide.shard(j), "m = {m}, shard {j}");
            }
        }
        // Data shards 0..4, parity numbers 0..4 (as a narrower coding makes them), 20 and 35:
        // a 10+40 coder rebuilds the data from this mix.
        let mut mixed = Stripe::new();
        mixed
            .reset(ErasureParams::new(10, 40).unwrap(), 1200)
            .unwrap();
        for index in [0, 1, 2, 3, 10, 11, 12, 13, 30, 45] {
            mixed.insert(index, wide.shard(index).unwrap()).unwrap();
        }
        let coder = Coder::new(ErasureParams::new(10, 40).unwrap()).unwrap();
        assert_eq!(
            coder.reconstruct(&mut mixed, data.len() as u64).unwrap(),
            &data[..]
        );
    }

    #[test]
    fn params_are_checked() {
        assert!(ErasureParams::new(1, 1).is_ok());
        assert!(ErasureParams::new(255, 1).is_ok());
        assert!(ErasureParams::new(128, 128).is_ok());
        for (k, m) in [(0, 1), (1, 0), (0, 0), (200, 57), (256, 1), (usize::MAX, 2)] {
            assert_eq!(
                ErasureParams::new(k, m),
                Err(CoreError::InvalidErasureParams { data: k, parity: m })
            );
        }
        let e = ErasureParams::new(0, 3).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid erasure parameters: 0 data + 3 parity"),
            "{e}"
        );
    }

    #[test]
    fn round_trips_at_awkward_sizes() {
        for (k, m) in [(1, 1), (3, 2), (4, 2), (10, 4)] {
            let c = coder(k, m);
            let lost: Vec<usize> = (0..m).collect();
            for len in [0, 1, k - 1, k, k + 1, 2 * k + 1, 63, 97, 1000, 4099, 65_537] {
                round_trip(&c, &data(len, 7), &[]);
                round_trip(&c, &data(len, 9), &lost);
            }
        }
    }

    #[test]
    fn every_erasure_pattern_of_up_to_m_shards_and_m_plus_one_fails() {
        for (k, m) in [(2, 1), (3, 2), (4, 3), (5, 2), (4, 4)] {
            let c = coder(k, m);
            let blob = data(k * 37 + 5, 3);
            let n = k + m;
            for mask in 0u32..(1 << n) {
                let lost: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
                if lost.len() <= m {
                    round_trip(&c, &blob, &lost);
                } else if lost.len() == m + 1 {
                    let mut stripe = Stripe::new();
                    c.encode(&blob, &mut stripe).unwrap();
                    for &i in &lost {
                        stripe.erase(i);
                    }
                    let err = c.reconstruct(&mut stripe, blob.len() as u64).unwrap_err();
                    assert!(
                        matches!(err, CoreError::TooFewShards { .. }),
                        "{lost:?}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn large_shapes_across_many_blocks() {
        for (k, m, len) in [(10, 4, (1 << 20) + 12_345), (32, 8, (3 << 20) + 7)] {
            let c = coder(k, m);
            let blob = data(len, 1);
            round_trip(&c, &blob, &[]);
            round_trip(&c, &blob, &(0..m).collect::<Vec<_>>());
            // Data and parity lost together.
            let mixed: Vec<usize> = (0..m / 2).chain(k..k + m - m / 2).collect();
            round_trip(&c, &blob, &mixed);
            // Only parity lost: nothing to rebuild.
            round_trip(&c, &blob, &(k..k + m).collect::<Vec<_>>());
        }
    }

    #[test]
    fn parity_matches_the_bare_crate() {
        let (k, m) = (6, 3);
        let blob = data(6 * 70_001, 5);
        let mut stripe = Stripe::new();
        let c = coder(k, m);
        c.encode(&blob, &mut stripe).unwrap();
        let mut shards: Vec<Vec<u8>> = blob.chunks(70_001).map(<[u8]>::to_vec).collect();
        shards.extend((0..m).map(|_| vec![0u8; 70_001]));
        ReedSolomon::new(k, m).unwrap().encode(&mut shards).unwrap();
        for (i, shard) in shards.iter().enumerate() {
            assert_eq!(stripe.shard(i).unwrap(), &shard[..], "shard {i}");
        }
        let mut par = Stripe::new();
        c.encode_parallel(&blob, &mut par).unwrap();
        assert!(par.shards().eq(stripe.shards()));
    }

    #[test]
    fn too_few_shards() {
        let c = coder(4, 2);
        let mut stripe = Stripe::new();
        c.encode(&data(1000, 0), &mut stripe).unwrap();
        for i in [0, 2, 5] {
            stripe.erase(i);
        }
        let err = c.reconstruct(&mut stripe, 1000).unwrap_err();
        assert_eq!(
            err,
            CoreError::TooFewShards {
                present: 3,
                needed: 4
            }
        );
        assert_eq!(err.to_string(), "too few shards: 3 present, 4 needed");
        assert!(c.reconstruct_parallel(&mut stripe, 1000).is_err());
        let none: Vec<Option<&[u8]>> = vec![None; 6];
        stripe.load(c.params(), &none).unwrap();
        assert_eq!(
            c.reconstruct(&mut stripe, 0).unwrap_err(),
            CoreError::TooFewShards {
                present: 0,
                needed: 4
            }
        );
    }

    #[test]
    fn inconsistent_shards_are_refused() {
        let params = ErasureParams::new(2, 1).unwrap();
        let mut stripe = Stripe::new();
        let err = stripe
            .load(params, &[Some(&b"abc"[..]), None, Some(&b"ab"[..])])
            .unwrap_err();
        assert_eq!(
            err,
            CoreError::ShardSize {
                index: 2,
                len: 2,
                expected: 3
            }
        );
        assert_eq!(err.to_string(), "shard 2 has 2 bytes, expected 3");
        assert_eq!(
            stripe.load(params, &[Some(b"abc"), None]).unwrap_err(),
            CoreError::ShardCount {
                got: 2,
                expected: 3
            }
        );
        stripe.load(params, &[Some(b"abc"), None, None]).unwrap();
        assert!(stripe.insert(1, b"abcd").is_err());
        assert!(stripe.insert(3, b"abc").is_err());
    }

    #[test]
    fn size_beyond_the_stripe_is_refused() {
        let c = coder(3, 2);
        let mut stripe = Stripe::new();
        c.encode(&data(10, 0), &mut stripe).unwrap();
        assert_eq!(stripe.shard_len(), 4);
        assert_eq!(c.reconstruct(&mut stripe, 12).unwrap().len(), 12);
        stripe.erase(0);
        assert_eq!(
            c.reconstruct(&mut stripe, 13).unwrap_err(),
            CoreError::StripeSize {
                size: 13,
                capacity: 12
            }
        );
        assert!(c.reconstruct(&mut stripe, u64::MAX).is_err());
        let other = coder(2, 3);
        assert!(other.reconstruct(&mut stripe, 10).is_err());
    }

    #[test]
    fn loaded_shards_rebuild() {
        let c = coder(3, 2);
        let blob = data(1001, 4);
        let mut encoded = Stripe::new();
        c.encode(&blob, &mut encoded).unwrap();
        let mut received: Vec<Option<Vec<u8>>> =
            encoded.shards().map(|s| s.map(<[u8]>::to_vec)).collect();
        received[1] = None;
        received[2] = None;
        let mut stripe = Stripe::new();
        stripe.load(c.params(), &received).unwrap();
        assert_eq!(c.reconstruct(&mut stripe, 1001).unwrap(), &blob[..]);
    }

    #[test]
    fn the_buffer_is_reused() {
        let c = coder(10, 4);
        let mut stripe = Stripe::new();
        c.encode(&data(1 << 20, 0), &mut stripe).unwrap();
        let ptr = stripe.buf.as_ptr();
        let cap = stripe.buf.capacity();
        for len in [1 << 20, 1000, 0, (1 << 20) - 1] {
            let blob = data(len, 2);
            c.encode(&blob, &mut stripe).unwrap();
            stripe.erase(3);
            assert_eq!(c.reconstruct(&mut stripe, len as u64).unwrap(), &blob[..]);
            assert_eq!((stripe.buf.as_ptr(), stripe.buf.capacity()), (ptr, cap));
        }
    }

    #[test]
    fn absurd_shapes_are_errors_not_aborts() {
        let mut stripe = Stripe::new();
        let params = ErasureParams::new(200, 56).unwrap();
        assert!(stripe.reset(params, usize::MAX / 2).is_err());
        assert!(stripe.reset(params, 1 << 56).is_err());
    }
}
