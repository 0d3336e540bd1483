//! A resumable download on disk (the state format is `i6p_core::partial`): `DEST.i6p-part` holds verified groups at their offsets and
//! `DEST.i6p-state` records which groups those are.
//!
//! Invariant: a group is marked in the state file only after its bytes were verified, written
//! and fsynced, and the state file itself is replaced atomically (write, fsync, rename). A
//! killed process therefore resumes from a state that never claims more than is on disk; at
//! worst it fetches again the groups it wrote after the last save.
//!
//! The three names beside `DEST` (part, state, state spare) sit in a directory others may
//! write to (a shared download folder): each is opened without following a symbolic link and
//! used only if it is a regular file of this user with no other names, so nothing planted
//! there can make a fetch truncate, write or read one of the user's other files. `DEST` itself
//! is never replaced unless the caller asked for it, even if it appears while the fetch runs.

mod cleanup;
mod rehash;

use super::file_error::{at, refuse, UnsafeFile};
use i6p_core::partial::{max_state_len, TransferState};
use i6p_core::tree::{group_count, group_range, Cv};
use i6p_core::CoreError;
use rehash::MAX_KEPT_HASHES;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The files of a download in progress.
pub struct PartialDownload {
    /// Where the finished blob goes.
    pub dest: PathBuf,
    part_path: PathBuf,
    state_path: PathBuf,
    part: File,
    /// What is verified (and, up to the last save, durable) on disk.
    pub state: TransferState,
    /// Bytes found already verified when the download was opened.
    pub reused_bytes: u64,
    /// The hash of each group this handle verified and wrote (by index), kept when groups were
    /// reused and there are at most [`MAX_KEPT_HASHES`] groups (empty otherwise): `finish`
    /// then hashes only the reused groups again, not the ones verified in memory just now.
    written: Vec<Option<Cv>>,
    /// Groups written since the last successful fsync: if that fsync fails they are unmarked,
    /// so no state ever records them.
    unsynced: Vec<u64>,
    /// Set after a failed fsync: the part file can no longer be trusted by later saves.
    failed: bool,
    /// Set once `open` has judged the part file (resumed it, or emptied it for a fresh
    /// start): from then on, dropping a download with nothing verified removes its files.
    judged: bool,
    /// Set once `finish` has renamed the part file into place: dropping then touches nothing.
    placed: bool,
}

fn sibling(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    dest.with_file_name(name)
}

impl PartialDownload {
    /// Opens or creates the partial files for `dest`. A state for another blob, or a damaged
    /// one, is discarded; a state for this blob is resumed at its own group size.
    pub fn open(dest: &Path, root: [u8; 32], size: u64, group_log: u8) -> io::Result<Self> {
        let fresh = TransferState::new(root, size, group_log).map_err(invalid)?;
        let part_path = sibling(dest, ".i6p-part");
        let state_path = sibling(dest, ".i6p-state");
        // Lock first, then read the state: whatever another fetch into `dest` was doing has
        // ended by the time the state is read.
        let part = open_locked(&part_path).map_err(at(&part_path))?;
        // From here on a failure drops `download`, which removes the files it made and that
        // hold nothing verified (see `cleanup`).
        let mut download = Self {
            dest: dest.to_path_buf(),
            part_path,
            state_path,
            part,
            state: fresh,
            reused_bytes: 0,
            written: Vec::new(),
            unsynced: Vec::new(),
            failed: false,
            judged: false,
            placed: false,
        };
        let resumed = read_state(&download.state_path, size)
            .map_err(at(&download.state_path))?
            .and_then(|raw| TransferState::decode(&raw).ok())
            .filter(|s| s.root == root && s.size == size);
        // A state whose part file is gone (empty now) is worth nothing.
        let part_len = download
            .part
            .metadata()
            .map_err(at(&download.part_path))?
            .len();
        let fresh = match resumed {
            Some(s) if part_len > 0 || s.done_groups() == 0 => {
                download.state = s;
                false
            }
            _ => true,
        };
        if fresh {
            download.part.set_len(0).map_err(at(&download.part_path))?;
        }
        download.judged = true;
        download.reused_bytes = download.state.done_bytes();
        let groups = group_count(size, download.state.group_log);
        if download.reused_bytes > 0 && groups <= MAX_KEPT_HASHES {
            download.written = vec![None; groups as usize];
        }
        if fresh {
            download.save()?;
        }
        Ok(download)
    }

    /// Writes a verified group at its offset and marks it (durable only after [`Self::save`]).
    /// `cv` is the group's hash, as its verification computed it
    /// ([`i6p_core::tree::verify_group_cv`]).
    pub fn write_group(&mut self, index: u64, data: &[u8], cv: Cv) -> io::Result<()> {
        let (offset, _) = group_range(self.state.size, self.state.group_log, index);
        self.part
            .write_all_at(data, offset)
            .map_err(at(&self.part_path))?;
        if let Some(slot) = self.written.get_mut(index as usize) {
            *slot = Some(cv);
        }
        if !self.state.has(index) {
            self.state.set(index);
            self.unsynced.push(index);
        }
        Ok(())
    }

    /// Reads back a range of verified bytes.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.part
            .read_exact_at(buf, offset)
            .map_err(at(&self.part_path))
    }

    /// Makes written groups durable, then records them: fsync data, then replace the state.
    ///
    /// The replacement is written into a spare file of the same size made in advance, so a
    /// save needs no new disk space: when the disk fills up, the groups verified so far can
    /// still be recorded.
    pub fn save(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(at(&self.part_path)(io::Error::other(
                "an earlier fsync of the partial file failed",
            )));
        }
        if let Err(e) = self.part.sync_data() {
            // Write-back failed: the kernel may have dropped those pages. Forget the groups
            // written since the last good sync, and never save again from this handle.
            for i in self.unsynced.drain(..) {
                self.state.unset(i);
            }
            self.failed = true;
            return Err(at(&self.part_path)(e));
        }
        self.unsynced.clear();
        let encoded = self.state.encode();
        let tmp = sibling(&self.dest, ".i6p-state.tmp");
        // The spare left by the last save (or by a run that was killed) is reused in place;
        // if there is none, a new file is made, never one found under the name.
        let write_spare = || {
            let f = match open_ours(&tmp, OpenOptions::new().read(true).write(true), 0) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => open_ours(
                    &tmp,
                    OpenOptions::new().read(true).write(true).create_new(true),
                    0,
                )?,
                other => other?,
            };
            f.write_all_at(&encoded, 0)?;
            f.set_len(encoded.len() as u64)?;
            f.sync_all()
        };
        write_spare().map_err(at(&tmp))?;
        fs::rename(&tmp, &self.state_path).map_err(at(&self.state_path))?;
        sync_dir(&self.dest)?;
        // The next spare, in the space the old state just gave back; failing is harmless (a
        // name taken meanwhile is left alone, and the next save refuses it if it is not ours).
        let _ = open_ours(
            &tmp,
            OpenOptions::new().read(true).write(true).create_new(true),
            0,
        )
        .and_then(|mut f| f.write_all(&vec![0u8; encoded.len()]));
        Ok(())
    }

    /// Ends a complete download: the partial file becomes `dest` atomically.
    ///
    /// Every group this handle wrote was verified in memory just before its write. Groups
    /// taken over from an earlier run were verified by that run, but the file may have changed
    /// on disk since; so when any were reused, they are read and hashed once more, and the
    /// blob's root is recomputed from their hashes and those of the groups verified here
    /// (which are not read again). With more than [`MAX_KEPT_HASHES`] groups, the whole file
    /// is hashed instead.
    ///
    /// Without `overwrite`, an existing `DEST` (even one that appears while this runs) is left
    /// alone: the error is [`io::ErrorKind::AlreadyExists`] with the path as its message, and
    /// the state is written again so that nothing fetched is lost.
    pub fn finish(self, overwrite: bool) -> io::Result<PathBuf> {
        self.finish_with(overwrite, || {})
    }

    /// [`Self::finish`], running `before_rename` just before the part file is renamed (tests
    /// use it to make `DEST` appear at the worst moment).
    fn finish_with(mut self, overwrite: bool, before_rename: impl FnOnce()) -> io::Result<PathBuf> {
        let exists =
            |dest: &Path| io::Error::new(io::ErrorKind::AlreadyExists, dest.display().to_string());
        let part = at(&self.part_path);
        let hashed = (self.part.set_len(self.state.size))
            .and_then(|()| self.part.sync_all())
            .and_then(|()| self.reused_root().map(|r| r.map(|(root, _)| root)))
            .map_err(part)?;
        if hashed.is_some_and(|root| root != self.state.root) {
            // Something on disk changed under us: start over rather than hand out bad data.
            let _ = fs::remove_file(&self.state_path);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the finished file does not match the blob's hash (disk error?); it will be fetched again",
            ));
        }
        // A dangling symbolic link is a name taken too (`exists` would follow it).
        if !overwrite && self.dest.symlink_metadata().is_ok() {
            return Err(exists(&self.dest));
        }
        // The state goes first: once the part file is renamed, another fetch into `dest` can
        // create and lock a new part file, and must find no state of ours. (A crash in
        // between costs a refetch, never a wrong file.)
        let _ = fs::remove_file(&self.state_path);
        let _ = fs::remove_file(sibling(&self.dest, ".i6p-state.tmp"));
        before_rename();
        // The check above is only a shortcut: `dest` may appear after it, so without
        // `overwrite` the rename itself refuses to replace anything.
        let placed = if overwrite {
            fs::rename(&self.part_path, &self.dest)
        } else {
            rename_no_replace(&self.part_path, &self.dest)
        };
        if let Err(e) = placed {
            // The part file is whole and still ours (locked): record it again, so that the
            // next fetch into `dest` resumes with everything done.
            let _ = self.save();
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                exists(&self.dest)
            } else {
                at(&self.dest)(e)
            });
        }
        // In place: what is at these names now belongs to whoever fetches into `dest` next.
        self.placed = true;
        sync_dir(&self.dest)?;
        Ok(self.dest.clone())
    }
}

/// Checks that a download into `dest` can make its files: `dest` is not a directory, and the
/// directory it goes in exists and is writable. A fetch checks this before dialing anyone, so
/// a mistyped destination fails at once, naming the path at fault.
pub fn check_destination(dest: &Path) -> io::Result<()> {
    use nix::{errno::Errno, unistd::access, unistd::AccessFlags};
    if dest.is_dir() {
        return Err(at(dest)(Errno::EISDIR.into()));
    }
    let dir = parent_dir(dest);
    if !fs::metadata(dir).map_err(at(dir))?.is_dir() {
        return Err(at(dir)(Errno::ENOTDIR.into()));
    }
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|errno| at(dir)(errno.into()))
}

/// Opens `path` (creating it) and locks it exclusively: two fetches into the same destination
/// would corrupt each other's state. A fetch that was just cancelled may still be closing the
/// file, so a busy lock is retried for a moment. The lock holder may rename the file away
/// (a finished download) before we get the lock: then the name is opened again.
fn open_locked(path: &Path) -> io::Result<File> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let part = open_ours(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            0,
        )?;
        match part.try_lock() {
            Ok(()) => {
                let ours = part.metadata()?;
                match fs::symlink_metadata(path) {
                    Ok(named) if (ours.dev(), ours.ino()) == (named.dev(), named.ino()) => {
                        return Ok(part)
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("another fetch is writing {}", path.display()),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Opens `path` with `options` (and `flags`) without following a symbolic link there, and
/// keeps it only if it is a regular file of this user with no other names: a hard link to one
/// of the user's files, a FIFO, or a file another user could still change afterwards is refused.
/// Opening for reading and writing also keeps a planted FIFO from blocking the open.
fn open_ours(path: &Path, options: &mut OpenOptions, flags: i32) -> io::Result<File> {
    use nix::fcntl::OFlag;
    let file = match options
        .custom_flags(OFlag::O_NOFOLLOW.bits() | flags)
        .open(path)
    {
        Ok(file) => file,
        // ELOOP on Linux, EMLINK on the BSDs: asking the name is clearer than the errno.
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(match fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => refuse(path, "it is a symbolic link"),
                _ => e,
            })
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refuse(path, "it is not a regular file"));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(refuse(path, "it belongs to another user"));
    }
    if meta.nlink() > 1 {
        return Err(refuse(path, "it has other hard links"));
    }
    Ok(file)
}

/// The raw state file for a blob of `size` bytes, or `None` when there is none worth reading
/// (missing, unreadable, or longer than any state of this blob could be: such a file is
/// discarded unread, since its length alone shows it is not a valid state).
fn read_state(path: &Path, size: u64) -> io::Result<Option<Vec<u8>>> {
    use nix::fcntl::OFlag;
    // Read-only: O_NONBLOCK keeps a planted FIFO from blocking the open (it is then refused).
    let file = match open_ours(
        path,
        OpenOptions::new().read(true),
        OFlag::O_NONBLOCK.bits(),
    ) {
        Ok(file) => file,
        Err(e) if UnsafeFile::of(&e).is_some() => return Err(e),
        Err(_) => return Ok(None),
    };
    let cap = max_state_len(size);
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Ok(None);
    };
    if len > cap {
        return Ok(None);
    }
    // The file may grow after the check: read at most one byte more than the cap.
    let mut raw = Vec::with_capacity(len as usize);
    if file.take(cap + 1).read_to_end(&mut raw).is_err() || raw.len() as u64 > cap {
        return Ok(None);
    }
    Ok(Some(raw))
}

/// Renames `from` to `to` unless `to` exists (atomically: a `to` made at any moment is never
/// replaced). A file system without RENAME_NOREPLACE gets link + unlink, which is atomic in
/// the same way; one without hard links either gets an error, never a replacing rename.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::errno::Errno;
        use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
        match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            // The file system (or kernel) does not do it: fall back.
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

fn invalid(e: CoreError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// The directory `path` is in.
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = parent_dir(path);
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use i6p_core::partial::TransferState;
    use std::fs;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "i6p-partial-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_second_download_waits_for_the_lock_and_leaves_a_finished_file_alone() {
        let dir = scratch("lock");
        let dest = dir.join("dest");
        let data = vec![7u8; 1 << 14];
        let root = *blake3::hash(&data).as_bytes();
        let mut first = PartialDownload::open(&dest, root, data.len() as u64, 14).unwrap();
        first.write_group(0, &data, root).unwrap();
        first.save().unwrap();
        // Another fetch of a different blob into the same destination waits for the lock...
        let other = dest.clone();
        let second =
            std::thread::spawn(move || PartialDownload::open(&other, [9; 32], 1 << 15, 14));
        std::thread::sleep(std::time::Duration::from_millis(100));
        // ...while the first finishes and renames its part file into place.
        assert_eq!(first.finish(false).unwrap(), dest);
        let second = second.join().unwrap().expect("second open");
        assert_eq!(
            fs::read(&dest).unwrap(),
            data,
            "the finished file was touched"
        );
        assert_eq!(second.reused_bytes, 0);
        drop(second);
        fs::remove_dir_all(dir).unwrap();
    }

    /// A complete download of `data` into `dest`, saved, ready to finish.
    fn complete(dest: &Path, data: &[u8]) -> PartialDownload {
        let root = *blake3::hash(data).as_bytes();
        let mut d = PartialDownload::open(dest, root, data.len() as u64, 14).unwrap();
        d.write_group(0, data, root).unwrap();
        d.save().unwrap();
        d
    }

    fn refused(e: &io::Error) -> &UnsafeFile {
        UnsafeFile::of(e).unwrap_or_else(|| panic!("not a refusal: {e}"))
    }

    #[test]
    fn a_symlink_planted_at_the_part_file_is_refused_and_its_target_untouched() {
        let dir = scratch("part-link");
        let (dest, victim) = (dir.join("dest"), dir.join("victim"));
        fs::write(&victim, b"the user's own file").unwrap();
        let part = sibling(&dest, ".i6p-part");
        std::os::unix::fs::symlink(&victim, &part).unwrap();
        let data = vec![3u8; 1 << 14];
        let root = *blake3::hash(&data).as_bytes();
        let e = PartialDownload::open(&dest, root, data.len() as u64, 14)
            .err()
            .expect("opened through a symlink");
        assert_eq!(refused(&e).path, part);
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"the user's own file");
        // A dangling one is not followed to create its target either.
        fs::remove_file(&part).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), &part).unwrap();
        assert!(PartialDownload::open(&dest, root, data.len() as u64, 14).is_err());
        assert!(!dir.join("elsewhere").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_hard_link_planted_at_the_part_file_is_refused() {
        let dir = scratch("part-hardlink");
        let (dest, victim) = (dir.join("dest"), dir.join("victim"));
        fs::write(&victim, b"the user's own file").unwrap();
        fs::hard_link(&victim, sibling(&dest, ".i6p-part")).unwrap();
        let e = PartialDownload::open(&dest, [1; 32], 1 << 14, 14)
            .err()
            .expect("opened a hard link");
        assert!(refused(&e).reason.contains("hard links"));
        assert_eq!(fs::read(&victim).unwrap(), b"the user's own file");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn symlinks_planted_at_the_state_and_its_spare_are_refused_and_never_written_through() {
        let dir = scratch("state-link");
        let (dest, victim) = (dir.join("dest"), dir.join("victim"));
        let original = b"the user's own file".to_vec();
        fs::write(&victim, &original).unwrap();
        let data = vec![5u8; 1 << 14];
        let root = *blake3::hash(&data).as_bytes();
        // At the state: not read, not replaced through.
        let state = sibling(&dest, ".i6p-state");
        std::os::unix::fs::symlink(&victim, &state).unwrap();
        let e = PartialDownload::open(&dest, root, data.len() as u64, 14)
            .err()
            .expect("read a state through a symlink");
        assert_eq!(refused(&e).path, state);
        fs::remove_file(&state).unwrap();
        // At the spare, planted while a download runs: the save refuses, the target is kept.
        let mut d = PartialDownload::open(&dest, root, data.len() as u64, 14).unwrap();
        let tmp = sibling(&dest, ".i6p-state.tmp");
        fs::remove_file(&tmp).unwrap();
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        d.write_group(0, &data, root).unwrap();
        let e = d.save().expect_err("saved through a symlink");
        assert_eq!(refused(&e).path, tmp);
        assert_eq!(fs::read(&victim).unwrap(), original);
        // And a dangling one is not created through.
        fs::remove_file(&tmp).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), &tmp).unwrap();
        assert!(d.save().is_err());
        assert!(!dir.join("elsewhere").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_oversized_state_is_discarded_unread() {
        let dir = scratch("state-big");
        let dest = dir.join("dest");
        let data = vec![9u8; 1 << 14];
        let d = complete(&dest, &data);
        drop(d);
        // 256 MiB (sparse): the bytes this process reads show whether it was read.
        let state = sibling(&dest, ".i6p-state");
        let f = OpenOptions::new().write(true).open(&state).unwrap();
        f.set_len(256 << 20).unwrap();
        drop(f);
        let bytes_read = || {
            let io = fs::read_to_string("/proc/self/io").unwrap_or_default();
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: ")?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = bytes_read();
        let root = *blake3::hash(&data).as_bytes();
        let d = PartialDownload::open(&dest, root, data.len() as u64, 14).unwrap();
        let read = bytes_read() - before;
        assert!(read < 64 << 20, "{read} bytes read");
        assert_eq!(d.reused_bytes, 0, "an oversized state was trusted");
        assert!(fs::metadata(&state).unwrap().len() <= max_state_len(data.len() as u64));
        // The cap still admits every valid state, at every group size.
        for size in [0, 1, 1 << 20, (1 << 34) + 5] {
            for log in i6p_core::tree::MIN_GROUP_LOG..=i6p_core::tree::MAX_GROUP_LOG {
                let s = TransferState::new([0; 32], size, log).unwrap();
                assert!(
                    s.encode().len() as u64 <= max_state_len(size),
                    "{size} {log}"
                );
            }
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_destination_that_appears_before_the_rename_is_kept_and_nothing_is_lost() {
        let dir = scratch("race");
        let dest = dir.join("dest");
        let data = vec![4u8; 1 << 14];
        let d = complete(&dest, &data);
        let e = d
            .finish_with(false, || fs::write(&dest, b"made meanwhile").unwrap())
            .expect_err("replaced a destination made meanwhile");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(e.to_string(), dest.display().to_string());
        assert_eq!(fs::read(&dest).unwrap(), b"made meanwhile");
        // The fetched bytes are still there, recorded as complete: asked again with
        // overwrite, the download finishes without fetching anything.
        let root = *blake3::hash(&data).as_bytes();
        let again = PartialDownload::open(&dest, root, data.len() as u64, 14).unwrap();
        assert!(again.state.complete());
        assert_eq!(again.reused_bytes, data.len() as u64);
        assert_eq!(again.finish(true).unwrap(), dest);
        assert_eq!(fs::read(&dest).unwrap(), data);
        // A dangling symbolic link is a taken name too.
        let d = complete(&dir.join("other"), &data);
        std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("other")).unwrap();
        let e = d.finish(false).expect_err("replaced a symlink");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(fs::symlink_metadata(dir.join("other"))
            .unwrap()
            .file_type()
            .is_symlink());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_fresh_download_reads_nothing_back_and_a_resumed_one_only_the_groups_it_reused() {
        use i6p_core::tree::{group_cv, Outboard};
        let dir = scratch("resumed");
        let data: Vec<u8> = (0..8u32 << 14).map(|i| (i % 251) as u8).collect();
        let (size, root) = (data.len() as u64, Outboard::from_bytes(&data).root());
        let group = |i: u64| &data[(i << 14) as usize..((i + 1) << 14) as usize];
        // Every group verified in this run: the root is not recomputed from the file.
        let mut fresh = PartialDownload::open(&dir.join("fresh"), root, size, 14).unwrap();
        for i in 0..8 {
            let cv = group_cv(size, 14, i, group(i));
            fresh.write_group(i, group(i), cv).unwrap();
        }
        assert!(fresh.reused_root().unwrap().is_none());
        for damaged in [false, true] {
            let dest = dir.join(format!("dest-{damaged}"));
            let mut first = PartialDownload::open(&dest, root, size, 14).unwrap();
            for i in 0..3 {
                first
                    .write_group(i, group(i), group_cv(size, 14, i, group(i)))
                    .unwrap();
            }
            first.save().unwrap();
            drop(first);
            let mut d = PartialDownload::open(&dest, root, size, 14).unwrap();
            assert_eq!(d.reused_bytes, 3 << 14);
            for i in 3..8 {
                d.write_group(i, group(i), group_cv(size, 14, i, group(i)))
                    .unwrap();
            }
            if damaged {
                // A reused group changed on disk after the earlier run verified it.
                d.part.write_all_at(&[data[5 << 10] ^ 1], 5 << 10).unwrap();
            }
            let (rehashed, read) = d.reused_root().unwrap().unwrap();
            assert_eq!(read, 3 << 14, "only the reused groups are read again");
            assert_eq!(rehashed == root, !damaged);
            match d.finish(false) {
                Ok(path) => assert_eq!(fs::read(path).unwrap(), data),
                Err(e) => {
                    assert!(damaged, "{e}");
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                    assert!(!dest.exists());
                    // Nothing is trusted next time: the fetch starts over.
                    let again = PartialDownload::open(&dest, root, size, 14).unwrap();
                    assert_eq!(again.reused_bytes, 0);
                }
            }
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_no_replace_rename_moves_a_file_and_refuses_a_taken_name() {
        let dir = scratch("rename");
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::write(&a, b"a").unwrap();
        rename_no_replace(&a, &b).unwrap();
        assert!(!a.exists());
        fs::write(&a, b"a2").unwrap();
        let e = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            (fs::read(&a).unwrap(), fs::read(&b).unwrap()),
            (b"a2".to_vec(), b"a".to_vec())
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
