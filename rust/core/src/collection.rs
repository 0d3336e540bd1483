//! Collections: a directory served as one blob, its **listing**, which names every file of
//! the tree by relative path, size and BLAKE3 hash. The listing is content-addressed like any
//! blob, so one hash (one ticket) pins the whole tree, and each file is then fetched and
//! verified as a blob of its own.
//!
//! ```text
//! listing = "i6pcoll1"  n:u32  { path_len:u16  path:utf-8  size:u64  hash:32 } * n
//! ```
//!
//! The encoding is deterministic: entries are sorted by the bytes of their path, so the same
//! tree always gives the same listing and hash. A listing comes from a peer and names paths
//! the requester will write to, so [`decode`] is strict and refuses, before anything is
//! written: paths that are absolute, empty, have empty, `.` or `..` components, contain NUL,
//! a backslash or another control character, or components longer than [`MAX_COMPONENT`];
//! entries out of order or repeated; a path that is a file and also the directory of another
//! entry; more than [`MAX_ENTRIES`] entries, a path over [`MAX_PATH`] bytes, a listing over
//! [`MAX_LISTING`] bytes, or sizes whose sum overflows.

use crate::error::{CoreError, Result};
use crate::wire::Reader;

/// The first bytes of a listing: format and version.
pub const MAGIC: &[u8; 8] = b"i6pcoll1";
/// At most this many files in a collection.
pub const MAX_ENTRIES: usize = 100_000;
/// At most this many bytes in a relative path.
pub const MAX_PATH: usize = 4096;
/// At most this many bytes in one component of a path (as Linux's NAME_MAX).
pub const MAX_COMPONENT: usize = 255;
/// At most this many bytes in a listing (a requester refuses a larger one before fetching).
pub const MAX_LISTING: u64 = 16 << 20;

/// One file of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path, components separated by `/`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 hash of the contents.
    pub hash: [u8; 32],
}

fn bad(detail: impl Into<String>) -> CoreError {
    CoreError::Malformed {
        what: "collection listing",
        detail: detail.into(),
    }
}

/// Checks one relative path (see the module comment for the rules).
pub fn check_path(path: &str) -> Result<()> {
    if path.len() > MAX_PATH {
        return Err(bad(format!(
            "a path of {} bytes exceeds {MAX_PATH}",
            path.len()
        )));
    }
    if path.starts_with('/') {
        return Err(bad(format!("{path:?} is absolute")));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(bad(format!("{path:?} has an empty component"))),
            "." | ".." => return Err(bad(format!("{path:?} has a {component:?} component"))),
            c if c.len() > MAX_COMPONENT => {
                return Err(bad(format!(
                    "{path:?} has a component over {MAX_COMPONENT} bytes"
                )))
            }
            _ => {}
        }
    }
    if let Some(c) = path.chars().find(|&c| c == '\\' || c.is_control()) {
        return Err(bad(format!("{path:?} contains the character {c:?}")));
    }
    Ok(())
}

/// Checks a whole list of entries: every path, strict order (so no duplicates), no file that
/// is also a directory of another, bounded count and total size.
fn check_entries(entries: &[Entry]) -> Result<()> {
    if entries.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "{} entries exceed {MAX_ENTRIES}",
            entries.len()
        )));
    }
    let mut total: u64 = 0;
    for (i, e) in entries.iter().enumerate() {
        check_path(&e.path)?;
        total = total
            .checked_add(e.size)
            .ok_or_else(|| bad("the sizes add up past 2^64 bytes"))?;
        if let Some(prev) = i.checked_sub(1).and_then(|p| entries.get(p)) {
            if prev.path.as_bytes() >= e.path.as_bytes() {
                let why = if prev.path == e.path {
                    "twice"
                } else {
                    "out of order"
                };
                return Err(bad(format!("{:?} is listed {why}", e.path)));
            }
        }
    }
    // A file "a" conflicts with any "a/...". Entries are sorted, so the first path at or
    // after "a/" is the only one that can start with it.
    for e in entries {
        let dir = format!("{}/", e.path);
        let at = entries.partition_point(|o| o.path.as_bytes() < dir.as_bytes());
        if let Some(inner) = entries.get(at).filter(|o| o.path.starts_with(&dir)) {
            return Err(bad(format!(
                "{:?} is a file and also the directory of {:?}",
                e.path, inner.path
            )));
        }
    }
    Ok(())
}

/// The listing of `entries` (in any order; they are sorted). Refuses what [`decode`] would.
pub fn encode(mut entries: Vec<Entry>) -> Result<Vec<u8>> {
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    check_entries(&entries)?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in &entries {
        out.extend_from_slice(&(e.path.len() as u16).to_be_bytes());
        out.extend_from_slice(e.path.as_bytes());
        out.extend_from_slice(&e.size.to_be_bytes());
        out.extend_from_slice(&e.hash);
    }
    if out.len() as u64 > MAX_LISTING {
        return Err(bad(format!("{} bytes exceed {MAX_LISTING}", out.len())));
    }
    Ok(out)
}

/// Decodes and checks a listing received from a peer.
pub fn decode(raw: &[u8]) -> Result<Vec<Entry>> {
    if raw.len() as u64 > MAX_LISTING {
        return Err(bad(format!("{} bytes exceed {MAX_LISTING}", raw.len())));
    }
    let mut r = Reader::new(raw, "collection listing");
    if &r.array::<8>()? != MAGIC {
        return Err(bad("not a collection listing (bad magic or version)"));
    }
    let n = r.u32()? as usize;
    if n > MAX_ENTRIES {
        return Err(bad(format!("{n} entries exceed {MAX_ENTRIES}")));
    }
    // Each entry takes at least 43 bytes: a count the bytes cannot hold is refused before
    // anything is allocated for it.
    if n.saturating_mul(2 + 1 + 8 + 32) > raw.len() {
        return Err(CoreError::Truncated("collection listing"));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let path = r.string(2, MAX_PATH)?;
        let size = r.u64()?;
        let hash = r.array()?;
        entries.push(Entry { path, size, hash });
    }
    r.finish()?;
    check_entries(&entries)?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.into(),
            size: path.len() as u64,
            hash: *blake3::hash(path.as_bytes()).as_bytes(),
        }
    }

    /// A listing in the wire format with these paths, as they are (no sorting, no checks).
    fn raw(paths: &[&str]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(paths.len() as u32).to_be_bytes());
        for p in paths {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(&[0; 40]);
        }
        out
    }

    #[test]
    fn listings_round_trip_sorted_whatever_the_order_given() {
        let tree = vec![entry("b/c.txt"), entry("a"), entry("b/a"), entry("a-b")];
        let bytes = encode(tree.clone()).unwrap();
        let back = decode(&bytes).unwrap();
        let paths: Vec<&str> = back.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a-b", "b/a", "b/c.txt"]);
        let mut reversed = tree;
        reversed.reverse();
        assert_eq!(encode(reversed).unwrap(), bytes, "deterministic");
        assert_eq!(decode(&encode(vec![]).unwrap()).unwrap(), vec![]);
    }

    #[test]
    fn hostile_paths_are_refused() {
        for path in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "",
            "a//b",
            "a/",
            "./a",
            "a/.",
            "a\0b",
            "a\\b",
            "a\nb",
            "..",
        ] {
            let e = decode(&raw(&[path])).unwrap_err().to_string();
            assert!(e.contains("collection listing"), "{path:?}: {e}");
        }
        let long = "x".repeat(MAX_COMPONENT + 1);
        assert!(decode(&raw(&[&long])).is_err());
        let deep = vec!["d"; MAX_PATH / 2 + 1].join("/");
        assert!(decode(&raw(&[&deep])).is_err());
        // Fine names stay fine, including dots inside and non-ASCII text.
        assert!(decode(&raw(&["a..b/.hidden/été.txt"])).is_ok());
    }

    #[test]
    fn duplicates_disorder_and_file_directory_clashes_are_refused() {
        let e = decode(&raw(&["a", "a"])).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = decode(&raw(&["b", "a"])).unwrap_err().to_string();
        assert!(e.contains("out of order"), "{e}");
        let e = decode(&raw(&["a", "a-b", "a/c"])).unwrap_err().to_string();
        assert!(e.contains("also the directory"), "{e}");
        assert!(encode(vec![entry("x"), entry("x/y")]).is_err());
        assert!(decode(&raw(&["a/b", "a/c", "ab"])).is_ok());
    }

    #[test]
    fn bounds_are_checked_before_allocating() {
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_err());
        let mut many = MAGIC.to_vec();
        many.extend_from_slice(&(MAX_ENTRIES as u32).to_be_bytes());
        assert!(matches!(decode(&many), Err(CoreError::Truncated(_))));
        assert!(decode(b"i6pcoll2\0\0\0\0").is_err());
        let mut trailing = raw(&["a"]);
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut overflow = vec![entry("a"), entry("b")];
        overflow[0].size = u64::MAX;
        assert!(encode(overflow).is_err());
    }
}
