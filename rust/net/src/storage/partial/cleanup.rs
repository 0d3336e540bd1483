//! What a download leaves behind when it ends without finishing: its part file and state
//! only if they hold verified groups (so the next fetch resumes), and never the state's
//! spare. Runs when the [`PartialDownload`] is dropped, while its part file is still locked,
//! so no other fetch into the same destination can have made files under these names yet.
//!
//! Only names that are still this download's files are removed: the part file if the name
//! still leads to the locked file, the state and the spare if they are regular files of this
//! user with no other names. Anything planted there is left as it was.

use super::{sibling, PartialDownload};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

impl Drop for PartialDownload {
    fn drop(&mut self) {
        if self.placed {
            return;
        }
        remove_if_ours(&sibling(&self.dest, ".i6p-state.tmp"));
        let worthless = if self.judged {
            self.state.done_groups() == 0
        } else {
            // `open` failed before judging the part file: it is worth nothing only if empty
            // (an earlier run's groups stay for a later fetch to judge).
            self.part.metadata().is_ok_and(|m| m.len() == 0)
        };
        if !worthless {
            return;
        }
        let named = fs::symlink_metadata(&self.part_path);
        let locked = self.part.metadata();
        if let (Ok(named), Ok(locked)) = (named, locked) {
            if (named.dev(), named.ino()) == (locked.dev(), locked.ino()) {
                let _ = fs::remove_file(&self.part_path);
            }
        }
        if self.judged {
            remove_if_ours(&self.state_path);
        }
    }
}

/// Removes `path` if it is a regular file of this user with no other names.
fn remove_if_ours(path: &Path) {
    let ours = fs::symlink_metadata(path).is_ok_and(|m| {
        m.file_type().is_file() && m.uid() == nix::unistd::geteuid().as_raw() && m.nlink() == 1
    });
    if ours {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "i6p-cleanup-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_download_with_nothing_verified_leaves_nothing_and_one_with_groups_leaves_no_spare() {
        let dir = scratch("drop");
        let dest = dir.join("dest");
        let data = vec![7u8; 1 << 15];
        let root = *blake3::hash(&data).as_bytes();
        let empty = PartialDownload::open(&dest, root, data.len() as u64, 14).unwrap();
        assert_eq!(names(&dir).len(), 3, "part, state and spare while it runs");
        drop(empty);
        assert!(names(&dir).is_empty(), "left {:?}", names(&dir));
        // One verified group: part and state stay for the next fetch, the spare goes.
        let mut half = PartialDownload::open(&dest, root, data.len() as u64, 14).unwrap();
        let cv = i6p_core::tree::group_cv(data.len() as u64, 14, 0, &data[..1 << 14]);
        half.write_group(0, &data[..1 << 14], cv).unwrap();
        half.save().unwrap();
        drop(half);
        assert_eq!(names(&dir), ["dest.i6p-part", "dest.i6p-state"]);
        let again = PartialDownload::open(&dest, root, data.len() as u64, 14).unwrap();
        assert_eq!(again.reused_bytes, 1 << 14);
        drop(again);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_open_removes_the_empty_part_file_it_made_and_nothing_planted() {
        let dir = scratch("open");
        let (dest, victim) = (dir.join("dest"), dir.join("victim"));
        fs::write(&victim, b"the user's own file").unwrap();
        let state = dir.join("dest.i6p-state");
        std::os::unix::fs::symlink(&victim, &state).unwrap();
        assert!(PartialDownload::open(&dest, [1; 32], 1 << 14, 14).is_err());
        assert_eq!(names(&dir), ["dest.i6p-state", "victim"]);
        assert!(fs::symlink_metadata(&state)
            .unwrap()
            .file_type()
            .is_symlink());
        // An earlier run's part file is not judged by an open that failed: it stays.
        fs::write(dir.join("dest.i6p-part"), b"earlier groups").unwrap();
        assert!(PartialDownload::open(&dest, [1; 32], 1 << 14, 14).is_err());
        assert_eq!(
            fs::read(dir.join("dest.i6p-part")).unwrap(),
            b"earlier groups"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_finished_download_leaves_only_the_destination() {
        let dir = scratch("finish");
        let dest = dir.join("dest");
        let data = vec![9u8; 1 << 14];
        let root = *blake3::hash(&data).as_bytes();
        let mut d = PartialDownload::open(&dest, root, data.len() as u64, 14).unwrap();
        d.write_group(0, &data, root).unwrap();
        d.save().unwrap();
        assert_eq!(d.finish(false).unwrap(), dest);
        assert_eq!(names(&dir), ["dest"]);
        fs::remove_dir_all(dir).unwrap();
    }
}
