//! Serving a directory as one collection: every regular file becomes a blob, and the
//! listing of them all (see [`i6p_core::collection`]) a blob held in memory, whose hash names
//! the whole tree.
//!
//! The walk never follows a symbolic link (one inside the tree is skipped, with a warning,
//! as are FIFOs, sockets and devices), so what is served is what lies under the directory.
//! A name that a requester would refuse (not UTF-8, a backslash or a control character) fails
//! the whole call, naming the file, rather than serving a tree nobody can fetch.

use super::{Blob, BlobStore};
use bytes::Bytes;
use i6p_core::collection::{self, Entry, MAX_ENTRIES};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory being served: its listing and its files.
pub struct Collection {
    /// The listing, served from memory; its hash and size go in the ticket.
    pub listing: Arc<Blob>,
    /// The files, by relative path (sorted).
    pub entries: Vec<Entry>,
}

impl BlobStore {
    /// Hashes every regular file under `root` and serves them and their listing. Blocking:
    /// run it off the async threads.
    pub fn add_dir(&self, root: &Path) -> io::Result<Collection> {
        if !std::fs::symlink_metadata(root)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        let mut entries = Vec::new();
        for (path, relative) in regular_files(root)? {
            let blob = self.add_path(&path)?;
            entries.push(Entry {
                path: relative,
                size: blob.size(),
                hash: blob.hash(),
            });
        }
        let bytes = collection::encode(entries)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // `encode` sorted them; the caller gets them in listing order.
        let entries = collection::decode(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let listing = self.add_bytes(Bytes::from(bytes));
        Ok(Collection { listing, entries })
    }
}

/// The regular files under `root` with their relative paths ('/'-separated), depth first
/// without recursion (a deep tree cannot exhaust the stack).
fn regular_files(root: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for item in std::fs::read_dir(&dir)? {
            let item = item?;
            let path = item.path();
            let name = item.file_name().into_string().map_err(|_| {
                invalid(
                    &path,
                    "its name is not UTF-8, which a collection cannot carry",
                )
            })?;
            let relative = format!("{prefix}{name}");
            let kind = item.file_type()?;
            if kind.is_dir() {
                dirs.push((path, format!("{relative}/")));
            } else if kind.is_file() {
                collection::check_path(&relative).map_err(|e| invalid(&path, &e.to_string()))?;
                files.push((path, relative));
                if files.len() > MAX_ENTRIES {
                    return Err(invalid(root, &format!("more than {MAX_ENTRIES} files")));
                }
            } else {
                tracing::warn!(path = %path.display(),
                    "not served with its directory: a symbolic link or special file");
            }
        }
    }
    Ok(files)
}

fn invalid(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {why}", path.display()),
    )
}
