//! A folder lock, so that two processes never write one run folder or cohort at once: the
//! file `.lock` in the folder, held with an exclusive `flock(2)` and holding the owner's
//! process id and command line. The kernel releases the lock when its process ends, however
//! it ends (killed, crashed), so a lock is never stale; the file is removed on drop.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};

/// The lock file's name inside the locked folder.
pub const LOCK_FILE: &str = ".lock";

/// A held lock on a folder; released on drop.
#[derive(Debug)]
pub struct FolderLock {
    path: PathBuf,
    file: File,
}

impl FolderLock {
    /// Lock `folder` (created if missing) for this process, or fail naming the lock file and
    /// the process that holds it.
    pub fn acquire(folder: &Path) -> Result<FolderLock> {
        std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        let path = folder.join(LOCK_FILE);
        loop {
            let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: flock on a file descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(Error::io(&path, e));
                }
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let mut lines = text.lines();
                let pid = lines.next().unwrap_or("?").trim().to_string();
                let command = lines.next().unwrap_or("").to_string();
                return Err(Error::format(&path, format!("{} is in use by process {pid} ({command}); wait for it to finish", folder.display())));
            }
            // The holder before us may have removed the file after we opened it: then our lock
            // is on a file no one else will open, so start again with the one at `path`.
            let same = std::fs::metadata(&path).ok().zip(file.metadata().ok()).is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
            if !same {
                continue;
            }
            let me = format!("{}\n{}\n", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
            file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(me.as_bytes())).map_err(|e| Error::io(&path, e))?;
            return Ok(FolderLock { path, file });
        }
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Removed while still locked (a process that opened it meanwhile sees the change and
        // retries); the lock goes with the file descriptor.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.set_len(0);
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
}
