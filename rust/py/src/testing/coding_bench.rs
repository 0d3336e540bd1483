//! Engine-against-bare-crate measurements for `benches/bench_coding.py`: the engine's BLAKE3
//! tree against `blake3` alone, and Reed-Solomon through [`Coder`] against
//! `reed-solomon-erasure` alone.
//!
//! Everything runs in Rust with the GIL released, on the same pseudo-random data for both
//! sides, and the side that goes first alternates between rounds (so neither always gets the
//! warmer cache or the quieter machine). Each result is checked against the other side's, after
//! the clock stops. The bare sides get the crates' best use: pre-split shards, no allocation in
//! the timed part; the engine sides include everything the engine does (splitting the flat
//! input, padding, copying).

use i6p_core::erasure::{Coder, ErasureParams, Stripe};
use i6p_core::tree::Outboard;
use i6p_net::storage::hash_file;
use pyo3::exceptions::{PyAssertionError, PyOSError, PyValueError};
use pyo3::prelude::*;
use rayon::prelude::*;
use reed_solomon_erasure::galois_8::ReedSolomon;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

type Figures = HashMap<&'static str, Vec<f64>>;

/// `size` pseudo-random bytes (BLAKE3 in XOF mode, fast and reproducible).
fn random_bytes(size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    blake3::Hasher::new()
        .update(b"i6p coding bench")
        .finalize_xof()
        .fill(&mut data);
    data
}

fn seconds<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64(), out)
}

/// Runs `bare` and `engine` once each, in an order that alternates with `round`, and records
/// their times under their names.
fn pair<A, B>(
    figures: &mut Figures,
    round: usize,
    (bare_name, bare): (&'static str, impl FnOnce() -> A),
    (engine_name, engine): (&'static str, impl FnOnce() -> B),
) -> (A, B) {
    let (a, b) = if round & 1 == 1 {
        let b = seconds(engine);
        (seconds(bare), b)
    } else {
        let a = seconds(bare);
        (a, seconds(engine))
    };
    figures.entry(bare_name).or_default().push(a.0);
    figures.entry(engine_name).or_default().push(b.0);
    (a.1, b.1)
}

fn check(ok: bool, what: &str) -> PyResult<()> {
    if ok {
        Ok(())
    } else {
        Err(PyAssertionError::new_err(format!("{what}: results differ")))
    }
}

/// Seconds per round for hashing `size` bytes in memory: `bare_hash` (`blake3::hash`) against
/// `engine_outboard` (`Outboard::from_bytes`) on one thread, `bare_update_rayon` against
/// `engine_outboard_par` (`Outboard::from_bytes_parallel`) on rayon's; with a file of the data
/// in `tmpdir` (a tmpfs, so no disk is measured), `bare_mmap` (`Hasher::update_mmap`) against
/// `engine_hash_file_1t` (`hash_file` in a one-thread pool), and `bare_mmap_rayon`
/// (`update_mmap_rayon`) against `engine_hash_file` (`hash_file`). Every root is checked
/// against `blake3::hash`.
#[pyfunction]
#[pyo3(signature = (size, rounds, tmpdir=None))]
pub(crate) fn bench_hash(
    py: Python<'_>,
    size: usize,
    rounds: usize,
    tmpdir: Option<PathBuf>,
) -> PyResult<Figures> {
    py.detach(move || {
        let data = random_bytes(size);
        let expected = blake3::hash(&data);
        let mut figures = Figures::new();
        for round in 0..rounds {
            let (bare, engine) = pair(
                &mut figures,
                round,
                ("bare_hash", || blake3::hash(&data)),
                ("engine_outboard", || Outboard::from_bytes(&data)),
            );
            check(
                bare == expected && engine.root() == *expected.as_bytes(),
                "hash",
            )?;
            let (bare, engine) = pair(
                &mut figures,
                round,
                ("bare_update_rayon", || {
                    blake3::Hasher::new().update_rayon(&data).finalize()
                }),
                ("engine_outboard_par", || {
                    Outboard::from_bytes_parallel(&data)
                }),
            );
            check(
                bare == expected && engine.root() == *expected.as_bytes(),
                "rayon",
            )?;
        }
        if let Some(dir) = tmpdir {
            hash_files(&mut figures, &data, expected, rounds, dir)?;
        }
        Ok(figures)
    })
}

fn hash_files(
    figures: &mut Figures,
    data: &[u8],
    expected: blake3::Hash,
    rounds: usize,
    dir: PathBuf,
) -> PyResult<()> {
    let path = dir.join(format!("i6p-bench-hash-{}", std::process::id()));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    let result = written
        .and_then(|()| std::fs::File::open(&path))
        .map_err(PyOSError::new_err);
    let run = || -> PyResult<()> {
        let file = result?;
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        for round in 0..rounds {
            let (bare, engine) = pair(
                figures,
                round,
                ("bare_mmap", || {
                    blake3::Hasher::new()
                        .update_mmap(&path)
                        .map(|h| h.finalize())
                }),
                ("engine_hash_file_1t", || one.install(|| hash_file(&file))),
            );
            check(
                bare? == expected && engine?.root() == *expected.as_bytes(),
                "file, 1 thread",
            )?;
            let (bare, engine) = pair(
                figures,
                round,
                ("bare_mmap_rayon", || {
                    blake3::Hasher::new()
                        .update_mmap_rayon(&path)
                        .map(|h| h.finalize())
                }),
                ("engine_hash_file", || hash_file(&file)),
            );
            check(
                bare? == expected && engine?.root() == *expected.as_bytes(),
                "file, rayon",
            )?;
        }
        Ok(())
    };
    let outcome = run();
    let _ = std::fs::remove_file(&path);
    outcome
}

/// Seconds per round for Reed-Solomon `k`+`m` over `size` bytes, with `m` data shards lost for
/// reconstruction: the bare crate on pre-split shards (`bare_encode`, `bare_reconstruct`, and
/// `*_par` over one column range per rayon thread) against [`Coder`] from the flat buffer
/// (`engine_encode`, `engine_reconstruct`, `engine_*_par`).
#[pyfunction]
pub(crate) fn bench_erasure(
    py: Python<'_>,
    k: usize,
    m: usize,
    size: usize,
    rounds: usize,
) -> PyResult<Figures> {
    let params = ErasureParams::new(k, m).map_err(|e| PyValueError::new_err(e.to_string()))?;
    if size == 0 {
        return Err(PyValueError::new_err("size must be positive"));
    }
    py.detach(move || {
        let coder = Coder::new(params).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let rs = ReedSolomon::new(k, m).map_err(|e| PyValueError::new_err(format!("{e:?}")))?;
        let data = random_bytes(size);
        let shard_len = size.div_ceil(k);
        let mut shards: Vec<Vec<u8>> = (0..k + m)
            .map(|i| {
                let mut shard = vec![0u8; shard_len];
                let from = (i * shard_len).min(size);
                let to = ((i + 1) * shard_len).min(size);
                shard[..to - from].copy_from_slice(&data[from..to]);
                shard
            })
            .collect();
        let mut stripe = Stripe::new();
        // One untimed pass each: buffers grown, decoding matrices cached, pages touched.
        coder.encode(&data, &mut stripe).map_err(to_err)?;
        rs.encode(&mut shards).map_err(rs_err)?;
        let mut figures = Figures::new();
        encode_rounds(
            &coder,
            &rs,
            &data,
            &mut shards,
            &mut stripe,
            rounds,
            &mut figures,
        )?;
        let received = shards.into_iter().map(|s| (s, true)).collect();
        let coded = Coded {
            coder: &coder,
            rs: &rs,
            data: &data,
        };
        reconstruct_rounds(coded, received, &mut stripe, rounds, &mut figures)?;
        Ok(figures)
    })
}

/// Encoding rounds of [`bench_erasure`]: the bare crate and the engine, one thread and all.
fn encode_rounds(
    coder: &Coder,
    rs: &ReedSolomon,
    data: &[u8],
    shards: &mut [Vec<u8>],
    stripe: &mut Stripe,
    rounds: usize,
    figures: &mut Figures,
) -> PyResult<()> {
    let threads = rayon::current_num_threads();
    for round in 0..rounds {
        let (bare, engine) = pair(
            figures,
            round,
            ("bare_encode", || rs.encode(&mut *shards)),
            ("engine_encode", || coder.encode(data, stripe)),
        );
        bare.map_err(rs_err)?;
        engine.map_err(to_err)?;
        check(same_shards(stripe, shards), "encode")?;
        let (bare, engine) = pair(
            figures,
            round,
            ("bare_encode_par", || {
                bare_encode_par(rs, &mut *shards, threads)
            }),
            ("engine_encode_par", || coder.encode_parallel(data, stripe)),
        );
        bare.map_err(rs_err)?;
        engine.map_err(to_err)?;
        check(same_shards(stripe, shards), "encode_par")?;
    }
    Ok(())
}

/// Whether the engine's stripe holds the same shards as the bare crate's.
fn same_shards(stripe: &Stripe, shards: &[Vec<u8>]) -> bool {
    stripe.shards().zip(shards).all(|(a, b)| a == Some(&b[..]))
}

/// What [`reconstruct_rounds`] codes with: the engine's coder, the bare crate's, the data.
#[derive(Clone, Copy)]
struct Coded<'a> {
    coder: &'a Coder,
    rs: &'a ReedSolomon,
    data: &'a [u8],
}

/// Reconstruction rounds of [`bench_erasure`], with the first `m` data shards lost.
fn reconstruct_rounds(
    coded: Coded<'_>,
    mut received: Vec<(Vec<u8>, bool)>,
    stripe: &mut Stripe,
    rounds: usize,
    figures: &mut Figures,
) -> PyResult<()> {
    let Coded { coder, rs, data } = coded;
    let (k, m, size) = (coder.params().data(), coder.params().parity(), data.len());
    let threads = rayon::current_num_threads();
    for round in 0..rounds {
        for parallel in [false, true] {
            for (i, (shard, present)) in received[..m].iter_mut().enumerate() {
                *present = false;
                shard.fill(0);
                stripe.erase(i);
                stripe.slot_mut(i).map_err(to_err)?.fill(0);
            }
            let names = if parallel {
                ("bare_reconstruct_par", "engine_reconstruct_par")
            } else {
                ("bare_reconstruct", "engine_reconstruct")
            };
            let (bare, engine) = pair(
                figures,
                round,
                (names.0, || {
                    if parallel {
                        bare_reconstruct_par(rs, &mut received, threads)
                    } else {
                        rs.reconstruct_data(&mut received)
                    }
                }),
                (names.1, || {
                    let out = if parallel {
                        coder.reconstruct_parallel(stripe, size as u64)
                    } else {
                        coder.reconstruct(stripe, size as u64)
                    };
                    // The data is compared after the clock stops.
                    out.map(|d| d.len())
                }),
            );
            bare.map_err(rs_err)?;
            let len = engine.map_err(to_err)?;
            check(
                len == size && stripe.data().is_some_and(|d| d[..size] == *data),
                names.1,
            )?;
            let rebuilt = received[..k].iter().flat_map(|(s, _)| s.iter()).take(size);
            check(rebuilt.eq(data.iter()), names.0)?;
            for shard in &mut received[..m] {
                shard.1 = true;
            }
        }
    }
    Ok(())
}

/// Seconds per round for Reed-Solomon `k`+`m` over `size` bytes cut into stripes of
/// `k × shard_len` bytes, as FEC mode codes them (one stripe at a time, one thread):
/// `bare_stripes_encode` / `bare_stripes_reconstruct` (the crate on pre-split shards of
/// every stripe) against `engine_stripes_encode` (`Coder::encode` of each stripe's bytes
/// into one reused [`Stripe`]) and `engine_stripes_reconstruct` (`Coder::reconstruct` of
/// each stripe with its first `m` data shards lost).
#[pyfunction]
pub(crate) fn bench_erasure_stripes(
    py: Python<'_>,
    k: usize,
    m: usize,
    shard_len: usize,
    size: usize,
    rounds: usize,
) -> PyResult<Figures> {
    let params = ErasureParams::new(k, m).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let stripe_bytes = k
        .checked_mul(shard_len)
        .filter(|&b| b > 0 && b <= size)
        .ok_or_else(|| PyValueError::new_err("need 0 < k x shard_len <= size"))?;
    py.detach(move || {
        let coder = Coder::new(params).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let rs = ReedSolomon::new(k, m).map_err(|e| PyValueError::new_err(format!("{e:?}")))?;
        // Whole stripes only, so both sides code exactly the same bytes.
        let count = size / stripe_bytes;
        let data = random_bytes(count * stripe_bytes);
        let mut bare: Vec<Vec<Vec<u8>>> = data
            .chunks_exact(stripe_bytes)
            .map(|stripe| {
                let mut shards: Vec<Vec<u8>> =
                    stripe.chunks_exact(shard_len).map(|c| c.to_vec()).collect();
                shards.resize(k + m, vec![0u8; shard_len]);
                shards
            })
            .collect();
        let mut stripe = Stripe::new();
        let mut engine: Vec<Stripe> = (0..count).map(|_| Stripe::new()).collect();
        let mut figures = Figures::new();
        for round in 0..rounds {
            let (b, e) = pair(
                &mut figures,
                round,
                ("bare_stripes_encode", || {
                    bare.iter_mut().try_for_each(|shards| rs.encode(shards))
                }),
                ("engine_stripes_encode", || {
                    data.chunks_exact(stripe_bytes)
                        .try_for_each(|bytes| coder.encode(bytes, &mut stripe))
                }),
            );
            b.map_err(rs_err)?;
            e.map_err(to_err)?;
            // The last stripe coded by each side agree.
            if let Some(last) = bare.last() {
                check(same_shards(&stripe, last), "stripes encode")?;
            }
        }
        for (bytes, out) in data.chunks_exact(stripe_bytes).zip(engine.iter_mut()) {
            coder.encode(bytes, out).map_err(to_err)?;
        }
        let received = bare
            .into_iter()
            .map(|shards| shards.into_iter().map(|s| (s, true)).collect())
            .collect();
        let coded = Coded {
            coder: &coder,
            rs: &rs,
            data: &data,
        };
        stripes_reconstruct_rounds(coded, received, &mut engine, rounds, &mut figures)?;
        Ok(figures)
    })
}

/// Reconstruction rounds of [`bench_erasure_stripes`]: each stripe with its first `m` data
/// shards lost, rebuilt by the bare crate and by the engine.
fn stripes_reconstruct_rounds(
    coded: Coded<'_>,
    mut received: Vec<Vec<(Vec<u8>, bool)>>,
    engine: &mut [Stripe],
    rounds: usize,
    figures: &mut Figures,
) -> PyResult<()> {
    let Coded { coder, rs, data } = coded;
    let (k, m) = (coder.params().data(), coder.params().parity());
    let stripe_bytes = data.len() / engine.len().max(1);
    for round in 0..rounds {
        for (shards, out) in received.iter_mut().zip(engine.iter_mut()) {
            for (i, (shard, present)) in shards.iter_mut().take(m.min(k)).enumerate() {
                *present = false;
                shard.fill(0);
                out.erase(i);
                out.slot_mut(i).map_err(to_err)?.fill(0);
            }
        }
        let (b, e) = pair(
            figures,
            round,
            ("bare_stripes_reconstruct", || {
                received
                    .iter_mut()
                    .try_for_each(|shards| rs.reconstruct_data(shards))
            }),
            ("engine_stripes_reconstruct", || {
                engine
                    .iter_mut()
                    .try_for_each(|out| coder.reconstruct(out, stripe_bytes as u64).map(|_| ()))
            }),
        );
        b.map_err(rs_err)?;
        e.map_err(to_err)?;
        let rebuilt = engine.iter().all(|s| s.data().is_some())
            && engine
                .iter()
                .zip(data.chunks_exact(stripe_bytes))
                .all(|(s, d)| s.data() == Some(d));
        check(rebuilt, "engine_stripes_reconstruct")?;
        let bare_ok = received
            .iter()
            .zip(data.chunks_exact(stripe_bytes))
            .all(|(shards, d)| shards[..k].iter().flat_map(|(s, _)| s.iter()).eq(d.iter()));
        check(bare_ok, "bare_stripes_reconstruct")?;
    }
    Ok(())
}

/// The bare crate parallelised the plain way: one column range per thread, each coded with
/// `encode_sep`.
fn bare_encode_par(
    rs: &ReedSolomon,
    shards: &mut [Vec<u8>],
    threads: usize,
) -> Result<(), reed_solomon_erasure::Error> {
    let k = rs.data_shard_count();
    let width = shards[0].len().div_ceil(threads).max(1);
    let (data, parity) = shards.split_at_mut(k);
    type Range<'a> = (Vec<&'a [u8]>, Vec<&'a mut [u8]>);
    let mut ranges: Vec<Range<'_>> = Vec::new();
    for (i, piece) in data.iter().enumerate() {
        for (r, chunk) in piece.chunks(width).enumerate() {
            if i == 0 {
                ranges.push((Vec::with_capacity(k), Vec::new()));
            }
            ranges[r].0.push(chunk);
        }
    }
    for piece in parity.iter_mut() {
        for (r, chunk) in piece.chunks_mut(width).enumerate() {
            ranges[r].1.push(chunk);
        }
    }
    ranges
        .into_par_iter()
        .try_for_each(|(ins, mut outs)| rs.encode_sep(&ins, &mut outs))
}

/// Reconstruction parallelised the same way: `reconstruct_data` per column range.
fn bare_reconstruct_par(
    rs: &ReedSolomon,
    shards: &mut [(Vec<u8>, bool)],
    threads: usize,
) -> Result<(), reed_solomon_erasure::Error> {
    let width = shards[0].0.len().div_ceil(threads).max(1);
    let mut ranges: Vec<Vec<(&mut [u8], bool)>> = Vec::new();
    for (i, (piece, present)) in shards.iter_mut().enumerate() {
        for (r, chunk) in piece.chunks_mut(width).enumerate() {
            if i == 0 {
                ranges.push(Vec::new());
            }
            ranges[r].push((chunk, *present));
        }
    }
    ranges
        .into_par_iter()
        .try_for_each(|mut range| rs.reconstruct_data(&mut range))
}

fn to_err(e: i6p_core::CoreError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn rs_err(e: reed_solomon_erasure::Error) -> PyErr {
    PyValueError::new_err(format!("reed-solomon: {e:?}"))
}
