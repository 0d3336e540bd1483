//! The node's files: a blob's file hashed into its tree, and the files of a resumable
//! download ([`PartialDownload`]). The formats and the tree logic are the core's
//! (`i6p_core::partial`, `i6p_core::tree`); opening, locking, reading, fsyncing and renaming
//! are done here, so the core stays free of I/O.

mod file_error;
mod partial;

pub use file_error::{split as split_path_error, PathError, UnsafeFile};
pub use partial::{check_destination, PartialDownload};

use i6p_core::tree::{hash_positioned, Outboard};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Hashes a file into its [`Outboard`] with positioned reads, in parallel over 1 MiB blocks
/// (the file is never read whole into memory).
pub fn hash_file(file: &File) -> io::Result<Outboard> {
    let size = file.metadata()?.len();
    hash_positioned(size, |buf, at| file.read_exact_at(buf, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_file_matches_the_in_memory_tree() {
        let path = std::env::temp_dir().join(format!("i6p-hash-file-{}", std::process::id()));
        for size in [0usize, 1, 16 * 1024 + 1, (3 << 20) + 128 * 1024 + 5] {
            let blob: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, &blob).unwrap();
            let ob = hash_file(&File::open(&path).unwrap()).unwrap();
            assert_eq!(ob.root(), *blake3::hash(&blob).as_bytes(), "size {size}");
            assert_eq!(ob.size(), size as u64);
        }
        std::fs::remove_file(&path).unwrap();
    }
}
