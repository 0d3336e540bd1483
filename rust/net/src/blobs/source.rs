//! Where a served blob's bytes come from, and opening them for one request.
//!
//! A file source holds no file descriptor while idle: each request opens the file and keeps
//! it only while it is served, so a node serving thousands of blobs needs descriptors for
//! the requests in flight only (bounded by the request slots of `Limits`). The file's
//! [`Stamp`] (size, modification time, inode, device) is taken when it is added and compared
//! with the *opened* file's, so an edit, a truncation, a deletion or a replacement by rename
//! is noticed before a byte is sent, and the requester gets a refusal that says so instead of
//! data that fails verification. An edit that keeps size and modification time is not seen
//! here; the requester's verification still catches it.

use bytes::Bytes;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// What identifies a file's contents cheaply: if any of these changed, so may the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    device: u64,
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub(crate) fn of(meta: &Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// A blob's bytes: a file (opened per request) or bytes held in memory.
pub(crate) enum Source {
    /// A file, as it was when added.
    File {
        /// The stamp taken when the file was hashed.
        stamp: Stamp,
    },
    /// Bytes the node holds itself (a collection's listing).
    Memory(Bytes),
}

/// Why a source could not be opened for a request.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The file is gone or is not the one that was added (what changed, in words).
    Changed(&'static str),
    /// The file is there but cannot be opened now (permissions, out of descriptors...).
    Io(io::Error),
}

/// A source opened for one request; positioned reads only.
pub(crate) enum Opened {
    /// The open file.
    File(File),
    /// The bytes in memory.
    Memory(Bytes),
}

impl Source {
    /// Opens the source at `path` for a request, checking it is still what was added.
    /// Blocking: run it off the async threads.
    pub(crate) fn open(&self, path: &Path) -> Result<Opened, OpenError> {
        let stamp = match self {
            Self::Memory(bytes) => return Ok(Opened::Memory(bytes.clone())),
            Self::File { stamp } => *stamp,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OpenError::Changed("deleted"))
            }
            Err(e) => return Err(OpenError::Io(e)),
        };
        // The open file's own metadata: a path check alone would miss a file replaced by
        // rename between the check and the open.
        let now = Stamp::of(&file.metadata().map_err(OpenError::Io)?);
        if (now.inode, now.device) != (stamp.inode, stamp.device) {
            return Err(OpenError::Changed("replaced by another file"));
        }
        if now != stamp {
            return Err(OpenError::Changed("modified"));
        }
        Ok(Opened::File(file))
    }
}

impl Opened {
    /// Fills `buf` from `offset`; an error if the source is shorter than that.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Self::File(file) => file.read_exact_at(buf, offset),
            Self::Memory(bytes) => {
                let range = usize::try_from(offset)
                    .ok()
                    .and_then(|start| Some(start..start.checked_add(buf.len())?))
                    .and_then(|r| bytes.get(r));
                let data = range.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the blob's end")
                })?;
                buf.copy_from_slice(data);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fresh directory, removed at the end of the test.
    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("i6p-source-{}", rand::random::<u64>()));
            std::fs::create_dir(&dir).unwrap();
            Self(dir)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn added(path: &Path) -> Source {
        Source::File {
            stamp: Stamp::of(&std::fs::metadata(path).unwrap()),
        }
    }

    fn changed(r: Result<Opened, OpenError>) -> &'static str {
        match r {
            Err(OpenError::Changed(why)) => why,
            Err(OpenError::Io(e)) => panic!("an i/o error, not a change: {e}"),
            Ok(_) => panic!("opened a changed source"),
        }
    }

    #[test]
    fn an_unchanged_file_opens_and_reads() {
        let dir = Dir::new();
        let path = dir.path().join("a");
        std::fs::write(&path, b"hello").unwrap();
        let opened = added(&path).open(&path).unwrap();
        let mut buf = [0; 3];
        opened.read_exact_at(&mut buf, 2).unwrap();
        assert_eq!(&buf, b"llo");
        assert!(opened.read_exact_at(&mut buf, 3).is_err());
    }

    #[test]
    fn edits_deletions_and_replacements_are_noticed() {
        let dir = Dir::new();
        let path = dir.path().join("a");
        std::fs::write(&path, b"hello").unwrap();
        let source = added(&path);
        // Appending changes the size.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        assert_eq!(changed(source.open(&path)), "modified");
        // Same size and contents, but another file renamed over it.
        let source = added(&path);
        let other = dir.path().join("b");
        std::fs::write(&other, b"hello!").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(changed(source.open(&path)), "replaced by another file");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(changed(source.open(&path)), "deleted");
    }

    #[test]
    fn memory_sources_read_within_their_bytes_only() {
        let opened = Source::Memory(Bytes::from_static(b"abc"))
            .open(Path::new(""))
            .unwrap();
        let mut buf = [0; 2];
        opened.read_exact_at(&mut buf, 1).unwrap();
        assert_eq!(&buf, b"bc");
        assert!(opened.read_exact_at(&mut buf, 2).is_err());
        assert!(opened.read_exact_at(&mut buf, u64::MAX).is_err());
    }
}
