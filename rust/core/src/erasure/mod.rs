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

pub mod cpu;

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
        cpu::check()?;
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
mod tests;
