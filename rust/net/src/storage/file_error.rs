//! Errors about the node's files keep the path they concern. A storage function returns an
//! `io::Error` whose payload names the path ([`PathError`], or [`UnsafeFile`] for a name it
//! refused), with the error's kind unchanged, so callers still match on `kind()`; the path
//! and the operating system's own error come back out at the boundary ([`split`]), where
//! they become Python's `errno`, `strerror` and `filename`.

use std::io;
use std::path::{Path, PathBuf};

/// An operating-system error on `path`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    /// The file or directory the operation was on.
    pub path: PathBuf,
    /// The operating system's error, with its errno.
    #[source]
    pub source: io::Error,
}

/// A file name beside the destination that a download refused to use, because something
/// other than a file of this user was found there (see [`super::PartialDownload`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to use {}: {reason}", path.display())]
pub struct UnsafeFile {
    /// The name refused.
    pub path: PathBuf,
    /// What was found there.
    pub reason: &'static str,
}

impl UnsafeFile {
    /// The refusal carried by `e`, if it is one.
    pub fn of(e: &io::Error) -> Option<&Self> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }
}

/// The error refusing `path` for `reason`.
pub(super) fn refuse(path: &Path, reason: &'static str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        UnsafeFile {
            path: path.to_path_buf(),
            reason,
        },
    )
}

/// Names `path` in an error that does not name one yet (`.map_err(at(&path))`).
pub(super) fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| {
        let named = e.get_ref().is_some_and(|inner| {
            inner.downcast_ref::<PathError>().is_some()
                || inner.downcast_ref::<UnsafeFile>().is_some()
        });
        if named {
            return e;
        }
        let kind = e.kind();
        io::Error::new(
            kind,
            PathError {
                path: path.to_path_buf(),
                source: e,
            },
        )
    }
}

/// The path an error names (`fallback` if it names none) and the error to report: the
/// operating system's own for a [`PathError`], the whole error otherwise.
pub fn split(e: io::Error, fallback: &Path) -> (PathBuf, io::Error) {
    if let Some(refused) = UnsafeFile::of(&e) {
        let path = refused.path.clone();
        return (path, e);
    }
    if !e.get_ref().is_some_and(|inner| inner.is::<PathError>()) {
        return (fallback.to_path_buf(), e);
    }
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<PathError>()) {
        Some(Ok(named)) => (named.path, named.source),
        // Checked above; kept total rather than unwrapped.
        Some(Err(other)) => (fallback.to_path_buf(), io::Error::new(kind, other)),
        None => (fallback.to_path_buf(), io::Error::from(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_error_keeps_its_kind_and_gives_back_the_path_and_the_os_error() {
        let path = Path::new("/nowhere/file");
        let e = at(path)(io::Error::from_raw_os_error(2));
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // Named once: a second `at` keeps the first, more precise, path.
        let e = at(Path::new("/other"))(e);
        let (named, source) = split(e, Path::new("/fallback"));
        assert_eq!((named.as_path(), source.raw_os_error()), (path, Some(2)));
        // A refusal names its own path; an unnamed error gets the fallback.
        let (named, _) = split(
            refuse(path, "it is a symbolic link"),
            Path::new("/fallback"),
        );
        assert_eq!(named, path);
        let (named, source) = split(io::Error::from_raw_os_error(28), Path::new("/fallback"));
        assert_eq!(
            (named.as_path(), source.raw_os_error()),
            (Path::new("/fallback"), Some(28))
        );
    }
}
