//! Book-keeping pieces of the stripe assembler: which shards of a stripe arrived
//! ([`ShardSet`]), what one provider sent of a stripe ([`Tally`]), and how several providers
//! split each stripe's data shards ([`apportion`], [`shares`]).

use super::Share;
use crate::erasure::MAX_SHARDS;

/// Which shards of one stripe have arrived, from any provider (their shares are disjoint),
/// so that a duplicate is told from a new shard even after the stripe was rebuilt and its
/// buffer went back for reuse.
#[derive(Clone, Copy, Default)]
pub(crate) struct ShardSet([u64; MAX_SHARDS / 64]);

impl ShardSet {
    /// Adds shard `index`: true if it was not in yet (false for an index beyond any stripe).
    pub(crate) fn insert(&mut self, index: usize) -> bool {
        let bit = 1u64 << (index % 64);
        let Some(word) = self.0.get_mut(index / 64) else {
            return false;
        };
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}

/// Shards one provider sent for one stripe: arrived (distinct ones), and expected (0: unknown
/// yet).
#[derive(Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) arrived: u16,
    pub(crate) expected: u16,
}

/// Splits `data` shards over parts in proportion to `weights`, each getting at least one
/// (largest remainders first). Needs `weights.len() <= data`.
pub fn apportion(data: usize, weights: &[f64]) -> Vec<usize> {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    if n == 0 || total <= 0.0 || data < n {
        return vec![1; n];
    }
    let spare = (data - n) as f64;
    let exact: Vec<f64> = weights.iter().map(|w| spare * w / total).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| 1 + e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra)
    });
    let mut left = data.saturating_sub(counts.iter().sum());
    for &i in order.iter().cycle().take(n * 2) {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

/// The shares of `parts` providers of stripes of `data` data shards: by `counts` data shards
/// each when given one per part, else near-equal. `None` if they cannot share such stripes.
pub fn shares(data: usize, parts: usize, counts: &[usize]) -> Option<Vec<Share>> {
    (0..parts)
        .map(|i| {
            if counts.len() == parts {
                Share::split_by(counts, i)
            } else {
                Share::split(data, i, parts)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_counts_once_however_often_it_comes() {
        let mut seen = ShardSet::default();
        let mut arrived = 0u16;
        // Every index of the widest stripe, each 300 times: more datagrams than a u16 holds.
        for _ in 0..300 {
            for index in 0..MAX_SHARDS {
                if seen.insert(index) {
                    arrived = arrived.saturating_add(1);
                }
            }
        }
        assert_eq!(usize::from(arrived), MAX_SHARDS);
        assert!(!seen.insert(MAX_SHARDS), "no stripe has a shard there");
        assert!(!seen.insert(usize::MAX));
    }

    #[test]
    fn shares_follow_the_weights_and_everyone_gets_one() {
        assert_eq!(apportion(32, &[1.0, 1.0]), vec![16, 16]);
        assert_eq!(apportion(32, &[3.0, 1.0]), vec![24, 8]);
        assert_eq!(apportion(32, &[1e9, 1.0, 1.0]), vec![30, 1, 1]);
        assert_eq!(apportion(3, &[5.0, 1.0, 1.0]), vec![1, 1, 1]);
        for weights in [&[0.3, 0.3, 0.4][..], &[7.0, 11.0, 13.0, 1.0], &[1.0; 8]] {
            let counts = apportion(32, weights);
            assert_eq!(counts.iter().sum::<usize>(), 32, "{weights:?}");
            assert!(counts.iter().all(|&c| c >= 1));
        }
        let split = shares(32, 2, &[24, 8]).unwrap();
        assert_eq!((split[0].data_count, split[1].data_first), (24, 24));
        assert_eq!(
            shares(32, 3, &[]).unwrap()[2],
            Share::split(32, 2, 3).unwrap()
        );
        assert!(shares(2, 3, &[]).is_none());
    }
}
