//! Round trips through every coding path, erasure patterns and the bounds of a stripe.

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
