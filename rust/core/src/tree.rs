//! BLAKE3 verified streaming: chunk groups proven against a blob's root hash.
//!
//! A blob is named by its plain BLAKE3 hash. BLAKE3 is itself a Merkle tree over 1 KiB chunks,
//! so any aligned power-of-two run of chunks (a *chunk group*) has a chaining value, and the
//! sibling chaining values on the path to the root prove that group against the root hash, as
//! in bao. The provider keeps an [`Outboard`]: the chaining values of every 16 KiB leaf and of
//! every subtree above them, enough to prove groups of any size from 16 KiB to 4 MiB. The
//! receiver needs only the root and the size.
//!
//! The shape of the tree follows BLAKE3: a subtree of `len` bytes (more than one group) splits
//! into a left part of `left_subtree_len(len)` bytes (the largest power of two that leaves
//! something on the right) and the rest.

use crate::error::{CoreError, Result};
use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};

/// Bytes in a BLAKE3 chunk.
pub const CHUNK_LEN: u64 = 1024;
/// log2 of the leaf size the provider stores chaining values for (16 KiB).
pub const LEAF_LOG: u8 = 14;
/// log2 of the smallest chunk group (16 KiB).
pub const MIN_GROUP_LOG: u8 = 14;
/// log2 of the largest chunk group (4 MiB).
pub const MAX_GROUP_LOG: u8 = 22;
/// log2 of the default chunk group (256 KiB).
pub const DEFAULT_GROUP_LOG: u8 = 18;
/// The deepest proof possible: a 2^64-byte blob in 16 KiB groups.
pub const MAX_PROOF_LEN: usize = 64 - MIN_GROUP_LOG as usize;

/// A 32-byte chaining value or root hash.
pub type Cv = ChainingValue;

/// Checks a chunk-group size exponent.
pub fn check_group_log(group_log: u8) -> Result<()> {
    if (MIN_GROUP_LOG..=MAX_GROUP_LOG).contains(&group_log) {
        Ok(())
    } else {
        Err(CoreError::Malformed {
            what: "group size",
            detail: format!(
                "2^{group_log} is outside 2^{MIN_GROUP_LOG} (16 KiB) ..= 2^{MAX_GROUP_LOG} (4 MiB)"
            ),
        })
    }
}

/// Number of groups of 2^`group_log` bytes in a blob of `size` bytes (an empty blob has one,
/// empty, group).
pub fn group_count(size: u64, group_log: u8) -> u64 {
    if size == 0 {
        1
    } else {
        size.div_ceil(1 << group_log)
    }
}

/// Byte range `(offset, len)` of group `index`.
pub fn group_range(size: u64, group_log: u8, index: u64) -> (u64, u64) {
    let start = index << group_log;
    (start, size.saturating_sub(start).min(1 << group_log))
}

/// The chaining value of a subtree: `data` starting at `offset` (a multiple of the subtree's
/// power-of-two size), which must not be the whole blob.
pub fn subtree_cv(data: &[u8], offset: u64) -> Cv {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(data);
    hasher.finalize_non_root()
}

/// A step of a proof path: the sibling's byte range and whether it is on the left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    sibling_start: u64,
    sibling_len: u64,
    sibling_is_left: bool,
}

/// The path from the root down to the group starting at `group_start`, top first.
fn path(size: u64, group_log: u8, group_start: u64) -> Vec<Step> {
    let group_len = 1u64 << group_log;
    let (mut start, mut len) = (0u64, size);
    let mut steps = Vec::new();
    while len > group_len {
        let left = hazmat::left_subtree_len(len);
        if group_start < start + left {
            steps.push(Step {
                sibling_start: start + left,
                sibling_len: len - left,
                sibling_is_left: false,
            });
            len = left;
        } else {
            steps.push(Step {
                sibling_start: start,
                sibling_len: left,
                sibling_is_left: true,
            });
            start += left;
            len -= left;
        }
    }
    steps
}

/// Verifies one group's data against the blob's root hash, given its proof (sibling chaining
/// values, top first). Nothing about the data is trusted before this returns `Ok`.
pub fn verify_group(
    root: &[u8; 32],
    size: u64,
    group_log: u8,
    index: u64,
    data: &[u8],
    proof: &[Cv],
) -> Result<()> {
    verify_group_cv(root, size, group_log, index, data, proof).map(|_| ())
}

/// [`verify_group`], returning the group's own hash once it is verified (see [`group_cv`]), so
/// that the blob's root can be recomputed later without hashing this group's bytes again
/// ([`root_from_groups`]).
pub fn verify_group_cv(
    root: &[u8; 32],
    size: u64,
    group_log: u8,
    index: u64,
    data: &[u8],
    proof: &[Cv],
) -> Result<Cv> {
    check_group_log(group_log)?;
    if index >= group_count(size, group_log) {
        return Err(CoreError::Malformed {
            what: "group",
            detail: format!("group {index} is beyond the end of a {size}-byte blob"),
        });
    }
    let (start, len) = group_range(size, group_log, index);
    if data.len() as u64 != len {
        return Err(CoreError::Malformed {
            what: "group",
            detail: format!("group {index} has {} bytes, expected {len}", data.len()),
        });
    }
    let steps = path(size, group_log, start);
    if proof.len() != steps.len() {
        return Err(CoreError::Malformed {
            what: "proof",
            detail: format!("{} hashes, expected {}", proof.len(), steps.len()),
        });
    }
    let own = group_cv(size, group_log, index, data);
    if steps.is_empty() {
        return check_root(root, own).map(|()| own);
    }
    let mut cv = own;
    for (depth, (step, sibling)) in steps.iter().zip(proof).enumerate().rev() {
        let (left, right) = if step.sibling_is_left {
            (sibling, &cv)
        } else {
            (&cv, sibling)
        };
        if depth == 0 {
            let computed = *hazmat::merge_subtrees_root(left, right, Mode::Hash).as_bytes();
            return check_root(root, computed).map(|()| own);
        }
        cv = hazmat::merge_subtrees_non_root(left, right, Mode::Hash);
    }
    // `steps` is not empty, so the loop returned at depth 0.
    unreachable!("a proof path ends at the root")
}

/// The hash of group `index` of a blob of `size` bytes, whose bytes are `data`: its chaining
/// value, or the blob's root when the group is the whole blob.
pub fn group_cv(size: u64, group_log: u8, index: u64, data: &[u8]) -> Cv {
    if size <= 1 << group_log {
        *blake3::hash(data).as_bytes()
    } else {
        subtree_cv(data, index << group_log)
    }
}

/// The root of a blob of `size` bytes from its groups' hashes ([`group_cv`]): `known` holds
/// those already at hand (one entry per group, `None` where it is not), the others are hashed
/// from bytes read through `read_exact_at(buf, offset)`, on rayon's threads. Only the groups
/// without a known hash are read. The reader is the caller's: this crate does no I/O.
pub fn root_from_groups<R>(
    size: u64,
    group_log: u8,
    known: &[Option<Cv>],
    read_exact_at: R,
) -> std::io::Result<[u8; 32]>
where
    R: Fn(&mut [u8], u64) -> std::io::Result<()> + Sync,
{
    use rayon::prelude::*;
    let count = group_count(size, group_log);
    if known.len() as u64 != count {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} group hashes for {count} groups", known.len()),
        ));
    }
    let cvs: Vec<Cv> = known
        .par_iter()
        .enumerate()
        .map_init(Vec::new, |buf, (i, cv)| match cv {
            Some(cv) => Ok(*cv),
            None => {
                let (offset, len) = group_range(size, group_log, i as u64);
                buf.resize(len as usize, 0);
                read_exact_at(buf, offset)?;
                Ok(group_cv(size, group_log, i as u64, buf))
            }
        })
        .collect::<std::io::Result<_>>()?;
    let group_len = 1u64 << group_log;
    if size <= group_len {
        return Ok(cvs[0]);
    }
    // Merges the groups of the subtree at `start` of `len` bytes (more than one group).
    fn merge(cvs: &[Cv], group_log: u8, start: u64, len: u64) -> (Cv, Cv) {
        let cv = |start: u64, len: u64| {
            if len <= 1 << group_log {
                cvs[(start >> group_log) as usize]
            } else {
                let (l, r) = merge(cvs, group_log, start, len);
                hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash)
            }
        };
        let left = hazmat::left_subtree_len(len);
        (cv(start, left), cv(start + left, len - left))
    }
    let (l, r) = merge(&cvs, group_log, 0, size);
    Ok(*hazmat::merge_subtrees_root(&l, &r, Mode::Hash).as_bytes())
}

fn check_root(root: &[u8; 32], computed: [u8; 32]) -> Result<()> {
    // Constant time is not needed for public hashes, but costs nothing here.
    if blake3::Hash::from(computed) == blake3::Hash::from(*root) {
        Ok(())
    } else {
        Err(CoreError::HashMismatch("chunk group"))
    }
}

/// The provider's side of verified streaming: chaining values of every 16 KiB leaf and of the
/// subtrees above them, from which a proof for any group size is read off.
#[derive(Debug, Clone)]
pub struct Outboard {
    size: u64,
    root: [u8; 32],
    leaves: Vec<Cv>,
    /// Chaining values of the subtrees bigger than a leaf, in order: a binary tree's inner
    /// nodes match the gaps between its leaves one to one, so the subtree whose left part ends
    /// at leaf `i + 1` is at index `i` (the whole blob's slot holds zeros: its root is `root`).
    /// A subtree's inner nodes are then contiguous, which lets halves be built in parallel.
    nodes: Vec<Cv>,
}

/// Subtrees at least this big are built on rayon's threads by the parallel builders.
const PARALLEL_BUILD_MIN: u64 = 64 << 20;

impl Outboard {
    /// Builds the tree from the chaining values of the 16 KiB leaves (in order) of a blob of
    /// `size` bytes. For a blob of at most one leaf, `leaves` holds nothing and `root_if_small`
    /// is its hash.
    pub fn from_leaves(size: u64, leaves: Vec<Cv>, root_if_small: [u8; 32]) -> Result<Self> {
        Self::from_leaves_with(size, leaves, root_if_small, false)
    }

    /// [`Outboard::from_leaves`], building big subtrees on rayon's threads if `parallel`.
    fn from_leaves_with(
        size: u64,
        leaves: Vec<Cv>,
        root_if_small: [u8; 32],
        parallel: bool,
    ) -> Result<Self> {
        let expected = if size <= 1 << LEAF_LOG {
            0
        } else {
            group_count(size, LEAF_LOG)
        };
        if leaves.len() as u64 != expected {
            return Err(CoreError::Malformed {
                what: "outboard",
                detail: format!(
                    "{} leaves for {size} bytes, expected {expected}",
                    leaves.len()
                ),
            });
        }
        let mut nodes = vec![[0u8; 32]; leaves.len().saturating_sub(1)];
        let mut root = root_if_small;
        if size > 1 << LEAF_LOG {
            let (l, r) = build_halves(&leaves, &mut nodes, size, parallel);
            root = *hazmat::merge_subtrees_root(&l, &r, Mode::Hash).as_bytes();
        }
        Ok(Self {
            size,
            root,
            leaves,
            nodes,
        })
    }

    /// Hashes a whole in-memory blob (tests and small blobs).
    pub fn from_bytes(data: &[u8]) -> Self {
        // A blob of one leaf is hashed directly; a bigger one gets its root from the leaves
        // (hashing it whole as well would double the cost).
        let (leaves, root) = if data.len() as u64 <= 1 << LEAF_LOG {
            (Vec::new(), *blake3::hash(data).as_bytes())
        } else {
            let leaves = data
                .chunks(1 << LEAF_LOG)
                .enumerate()
                .map(|(i, leaf)| subtree_cv(leaf, (i as u64) << LEAF_LOG))
                .collect();
            (leaves, [0; 32])
        };
        // Consistent by construction: the leaf count matches the size.
        match Self::from_leaves(data.len() as u64, leaves, root) {
            Ok(outboard) => outboard,
            Err(_) => unreachable!("leaf count derived from the data"),
        }
    }

    /// [`Outboard::from_bytes`] with the leaves hashed on rayon's threads.
    pub fn from_bytes_parallel(data: &[u8]) -> Self {
        use rayon::prelude::*;
        if data.len() as u64 <= 1 << LEAF_LOG {
            return Self::from_bytes(data);
        }
        let leaves = data
            .par_chunks(1 << LEAF_LOG)
            .enumerate()
            .map(|(i, leaf)| subtree_cv(leaf, (i as u64) << LEAF_LOG))
            .collect();
        match Self::from_leaves_with(data.len() as u64, leaves, [0; 32], true) {
            Ok(outboard) => outboard,
            Err(_) => unreachable!("leaf count derived from the data"),
        }
    }

    fn cv(&self, start: u64, len: u64) -> Option<Cv> {
        if len <= 1 << LEAF_LOG {
            self.leaves.get((start >> LEAF_LOG) as usize).copied()
        } else {
            let split = (start + hazmat::left_subtree_len(len)) >> LEAF_LOG;
            self.nodes
                .get(usize::try_from(split).ok()?.checked_sub(1)?)
                .copied()
        }
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The blob's BLAKE3 hash.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// The proof for group `index` of 2^`group_log` bytes: sibling chaining values, top first.
    pub fn proof(&self, group_log: u8, index: u64) -> Result<Vec<Cv>> {
        check_group_log(group_log)?;
        if index >= group_count(self.size, group_log) {
            return Err(CoreError::Malformed {
                what: "group",
                detail: format!(
                    "group {index} is beyond the end of a {}-byte blob",
                    self.size
                ),
            });
        }
        path(self.size, group_log, index << group_log)
            .iter()
            .map(|s| {
                self.cv(s.sibling_start, s.sibling_len)
                    .ok_or(CoreError::Malformed {
                        what: "outboard",
                        detail: "missing subtree".into(),
                    })
            })
            .collect()
    }

    /// Bytes of memory the tree holds (for limits and reporting).
    pub fn memory_bytes(&self) -> usize {
        (self.leaves.len() + self.nodes.len()) * 32
    }
}

/// Chaining values of the two halves of a subtree of `len` bytes (more than one leaf) with
/// these `leaves`, storing every inner node below it in `nodes` (one slot fewer than `leaves`)
/// and leaving the slot of the subtree itself to the caller. Only lengths matter: where the
/// subtree starts in the blob is in the leaves already.
fn build_halves(leaves: &[Cv], nodes: &mut [Cv], len: u64, parallel: bool) -> (Cv, Cv) {
    let left = hazmat::left_subtree_len(len);
    // `left` is a power of two of at least one leaf, so this is a whole number of leaves.
    let split = (left >> LEAF_LOG) as usize;
    let (left_leaves, right_leaves) = leaves.split_at(split);
    let (left_nodes, rest) = nodes.split_at_mut(split - 1);
    let right_nodes = &mut rest[1..];
    if parallel && len >= PARALLEL_BUILD_MIN {
        rayon::join(
            || build(left_leaves, left_nodes, left, parallel),
            || build(right_leaves, right_nodes, len - left, parallel),
        )
    } else {
        (
            build(left_leaves, left_nodes, left, parallel),
            build(right_leaves, right_nodes, len - left, parallel),
        )
    }
}

/// The chaining value of a (non-root) subtree, storing the inner nodes below it and its own.
fn build(leaves: &[Cv], nodes: &mut [Cv], len: u64, parallel: bool) -> Cv {
    if len <= 1 << LEAF_LOG {
        return leaves[0];
    }
    let (l, r) = build_halves(leaves, nodes, len, parallel);
    let cv = hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash);
    nodes[(hazmat::left_subtree_len(len) >> LEAF_LOG) as usize - 1] = cv;
    cv
}

/// Hashes `size` bytes read through `read_exact_at(buf, offset)` (a file's positioned reads,
/// say) into their [`Outboard`], in parallel over 1 MiB blocks; the bytes are never held
/// whole in memory. The reader is the caller's: this crate does no I/O.
///
/// Each task reads its block 128 KiB at a time into a buffer it keeps: the buffer stays in
/// cache while its leaves are hashed, so reading through the page cache costs about what
/// hashing a memory map does (a fresh, zeroed 1 MiB buffer per block was measurably slower).
pub fn hash_positioned<R>(size: u64, read_exact_at: R) -> std::io::Result<Outboard>
where
    R: Fn(&mut [u8], u64) -> std::io::Result<()> + Sync,
{
    use rayon::prelude::*;
    const BLOCK: u64 = 1 << 20;
    const READ: usize = 128 << 10;
    if size <= 1 << LEAF_LOG {
        let mut buf = vec![0u8; size as usize];
        read_exact_at(&mut buf, 0)?;
        return Ok(Outboard::from_bytes(&buf));
    }
    let blocks = size.div_ceil(BLOCK);
    let per_block: Vec<Vec<Cv>> = (0..blocks)
        .into_par_iter()
        .map_init(
            || vec![0u8; READ],
            |buf, b| {
                let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(size));
                let mut cvs = Vec::with_capacity((BLOCK >> LEAF_LOG) as usize);
                let mut at = start;
                while at < end {
                    let piece = &mut buf[..(end - at).min(READ as u64) as usize];
                    read_exact_at(piece, at)?;
                    cvs.extend(
                        piece
                            .chunks(1 << LEAF_LOG)
                            .enumerate()
                            .map(|(i, leaf)| subtree_cv(leaf, at + ((i as u64) << LEAF_LOG))),
                    );
                    at += piece.len() as u64;
                }
                Ok(cvs)
            },
        )
        .collect::<std::io::Result<_>>()?;
    let leaves = per_block.into_iter().flatten().collect();
    Outboard::from_leaves_with(size, leaves, [0; 32], true)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn every_group_of_every_size_verifies() {
        let sizes = [
            0usize,
            1,
            1024,
            16 * 1024 - 1,
            16 * 1024,
            16 * 1024 + 1,
            256 * 1024 - 1,
            256 * 1024,
            256 * 1024 + 1,
            3 * 256 * 1024 + 77,
            1 << 21,
        ];
        for size in sizes {
            let blob = data(size);
            let ob = Outboard::from_bytes(&blob);
            assert_eq!(ob.root(), *blake3::hash(&blob).as_bytes(), "size {size}");
            let par = Outboard::from_bytes_parallel(&blob);
            assert_eq!(
                (par.root(), &par.leaves, &par.nodes),
                (ob.root(), &ob.leaves, &ob.nodes)
            );
            for group_log in [14u8, 15, 18, 20, 22] {
                for index in 0..group_count(size as u64, group_log) {
                    let (start, len) = group_range(size as u64, group_log, index);
                    let piece = &blob[start as usize..(start + len) as usize];
                    let proof = ob.proof(group_log, index).unwrap();
                    verify_group(&ob.root(), size as u64, group_log, index, piece, &proof)
                        .unwrap_or_else(|e| {
                            panic!("size {size} log {group_log} group {index}: {e}")
                        });
                }
            }
        }
    }

    #[test]
    fn positioned_hashing_matches_the_in_memory_tree() {
        let sizes = [
            0usize,
            1,
            16 * 1024,
            16 * 1024 + 1,
            (1 << 20) + 17,
            (3 << 20) + 128 * 1024 + 5,
        ];
        for size in sizes {
            let blob = data(size);
            let read_at = |buf: &mut [u8], at: u64| {
                let at = at as usize;
                buf.copy_from_slice(&blob[at..at + buf.len()]);
                Ok(())
            };
            let ob = hash_positioned(size as u64, read_at).unwrap();
            let expected = Outboard::from_bytes(&blob);
            assert_eq!(ob.root(), *blake3::hash(&blob).as_bytes(), "size {size}");
            assert_eq!(ob.leaves, expected.leaves, "size {size}");
            assert_eq!(ob.nodes, expected.nodes, "size {size}");
        }
        let failing = |_: &mut [u8], _: u64| Err(std::io::Error::other("bad sector"));
        assert!(hash_positioned(5 << 20, failing).is_err());
    }

    #[test]
    fn the_root_from_group_hashes_reads_only_the_groups_not_known() {
        let sizes = [
            0usize,
            1,
            16 * 1024,
            16 * 1024 + 1,
            5 * 16 * 1024 + 3,
            1 << 20,
        ];
        for size in sizes {
            let blob = data(size);
            let ob = Outboard::from_bytes(&blob);
            for group_log in [14u8, 15, 18] {
                let count = group_count(size as u64, group_log);
                // Every other group's hash comes from its verification, the rest from reads.
                let known: Vec<Option<Cv>> = (0..count)
                    .map(|i| {
                        let (start, len) = group_range(size as u64, group_log, i);
                        let piece = &blob[start as usize..(start + len) as usize];
                        let proof = ob.proof(group_log, i).unwrap();
                        let cv =
                            verify_group_cv(&ob.root(), size as u64, group_log, i, piece, &proof);
                        (i % 2 == 1).then(|| cv.unwrap())
                    })
                    .collect();
                let read = std::sync::atomic::AtomicU64::new(0);
                let read_at = |buf: &mut [u8], at: u64| {
                    read.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    let at = at as usize;
                    buf.copy_from_slice(&blob[at..at + buf.len()]);
                    Ok(())
                };
                let root = root_from_groups(size as u64, group_log, &known, read_at).unwrap();
                assert_eq!(root, ob.root(), "size {size} log {group_log}");
                let unknown: u64 = (0..count)
                    .filter(|i| known[*i as usize].is_none())
                    .map(|i| group_range(size as u64, group_log, i).1)
                    .sum();
                assert_eq!(read.into_inner(), unknown, "size {size} log {group_log}");
                // A byte changed in a group that is read changes the root.
                if size > 0 {
                    let mut bad = blob.clone();
                    bad[0] ^= 1;
                    let read_bad = |buf: &mut [u8], at: u64| {
                        let at = at as usize;
                        buf.copy_from_slice(&bad[at..at + buf.len()]);
                        Ok(())
                    };
                    let root = root_from_groups(size as u64, group_log, &known, read_bad);
                    assert_ne!(root.unwrap(), ob.root(), "size {size} log {group_log}");
                }
            }
        }
        assert!(root_from_groups(1 << 20, 14, &[None], |_, _| Ok(())).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let blob = data(5 * 16 * 1024 + 3);
        let ob = Outboard::from_bytes(&blob);
        let size = blob.len() as u64;
        let (start, len) = group_range(size, 14, 2);
        let piece = blob[start as usize..(start + len) as usize].to_vec();
        let proof = ob.proof(14, 2).unwrap();
        let root = ob.root();
        assert!(verify_group(&root, size, 14, 2, &piece, &proof).is_ok());
        let mut flipped = piece.clone();
        flipped[100] ^= 1;
        assert!(verify_group(&root, size, 14, 2, &flipped, &proof).is_err());
        let mut bad_proof = proof.clone();
        bad_proof[0][0] ^= 1;
        assert!(verify_group(&root, size, 14, 2, &piece, &bad_proof).is_err());
        // Right data, wrong position.
        assert!(verify_group(&root, size, 14, 1, &piece, &proof).is_err());
        assert!(verify_group(&root, size, 14, 2, &piece, &proof[1..]).is_err());
        assert!(verify_group(&root, size, 14, 2, &piece[1..], &proof).is_err());
        assert!(verify_group(&root, size, 14, 99, &piece, &proof).is_err());
        // A wrong size changes nothing inside the tree, but the last group catches it.
        let last = group_count(size, 14) - 1;
        let (start, len) = group_range(size, 14, last);
        let tail = &blob[start as usize..(start + len) as usize];
        let tail_proof = ob.proof(14, last).unwrap();
        assert!(verify_group(&root, size, 14, last, tail, &tail_proof).is_ok());
        assert!(verify_group(&root, size + 1, 14, last, tail, &tail_proof).is_err());
        assert!(verify_group(&root, size - 1, 14, last, &tail[1..], &tail_proof).is_err());
        assert!(verify_group(&root, size, 13, 2, &piece, &proof).is_err());
    }
}
