//! Locks between processes, so that two never write one run folder, cohort or patient at once:
//! a lock file held with an exclusive `flock(2)` and holding the owner's process id and command
//! line. The kernel releases the lock when its process ends, however it ends (killed, crashed),
//! so a lock is never stale; the file is removed on drop. `flock` works on local filesystems,
//! on NFSv4 (as a byte-range lock on the whole file) and on Lustre and GPFS mounted with flock
//! support (Lustre's `-o flock`), so processes on several machines can share a lock there.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".lock";

/// A held lock on a lock file; released on drop.
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    file: File,
}

impl FileLock {
    /// Lock `path` (created, with its folder, if missing) for this process, or fail naming the
    /// lock file and the process that holds it; `what` names what the lock protects.
    pub fn acquire(path: &Path, what: &str) -> Result<FileLock> {
        FileLock::take(path)?.map_err(|holder| Error::format(path, format!("{what} is in use by {holder}; wait for it to finish")))
    }

    /// Lock `path` (created, with its folder, if missing) without waiting: `None` when another
    /// holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        Ok(FileLock::take(path)?.ok())
    }

    /// The lock, or who holds it (`process PID (COMMAND LINE)`, as its lock file says).
    fn take(path: &Path) -> Result<std::result::Result<FileLock, String>> {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        }
        loop {
            let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: flock on a file descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(Error::io(path, e));
                }
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let mut lines = text.lines();
                let pid = lines.next().unwrap_or("?").trim();
                return Ok(Err(format!("process {pid} ({})", lines.next().unwrap_or(""))));
            }
            // The holder before us may have removed the file after we opened it: then our lock
            // is on a file no one else will open, so start again with the one at `path`.
            let same = std::fs::metadata(path).ok().zip(file.metadata().ok()).is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
            if !same {
                continue;
            }
            let me = format!("{}\n{}\n", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
            file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(me.as_bytes())).map_err(|e| Error::io(path, e))?;
            return Ok(Ok(FileLock { path: path.to_path_buf(), file }));
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Removed while still locked (a process that opened it meanwhile sees the change and
        // retries); the lock goes with the file descriptor.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.set_len(0);
    }
}

/// A held lock on a folder (its file [`LOCK_FILE`]); released on drop.
#[derive(Debug)]
pub struct FolderLock {
    _lock: FileLock,
}

impl FolderLock {
    /// Lock `folder` (created if missing) for this process, or fail naming the lock file and
    /// the process that holds it.
    pub fn acquire(folder: &Path) -> Result<FolderLock> {
        FileLock::acquire(&folder.join(LOCK_FILE), &folder.display().to_string()).map(|lock| FolderLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FolderLock::acquire(dir.path()).unwrap();
        let err = FolderLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("in use by process {}", std::process::id())) && err.contains(".lock"), "{err}");
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        // A lock file left by a process that is gone holds no flock: it is taken over.
        std::fs::write(dir.path().join(LOCK_FILE), "4000000000\nold run\n").unwrap();
        let again = FolderLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(text.starts_with(&format!("{}\n", std::process::id())), "{text}");
        drop(again);
    }

    #[test]
    fn try_acquire_does_not_wait_for_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.lock");
        let first = FileLock::try_acquire(&path).unwrap().expect("free");
        assert_eq!(first.path(), path);
        // A second open file description conflicts even within one process.
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
        let err = FileLock::acquire(&path, "patient a").unwrap_err().to_string();
        assert!(err.contains("a.lock") && err.contains(&format!("patient a is in use by process {}", std::process::id())), "{err}");
        drop(first);
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }
}
