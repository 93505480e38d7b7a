//! A folder lock, so that two processes never write one run folder or cohort at once: a file
//! `.lock` created exclusively in the folder, holding the owner's process id and command line,
//! removed when the lock is dropped. A lock whose process no longer runs (killed, crashed) is
//! stale and taken over.

use crate::error::{Error, Result};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The lock file's name inside the locked folder.
pub const LOCK_FILE: &str = ".lock";

/// A held lock on a folder; released on drop.
#[derive(Debug)]
pub struct FolderLock {
    path: PathBuf,
}

/// Whether process `pid` is running (Linux: `/proc/<pid>` exists; elsewhere assumed running).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new("/proc").join(pid.to_string()).exists() } else { true }
}

impl FolderLock {
    /// Lock `folder` (created if missing) for this process, or fail naming the lock file and
    /// the process that holds it.
    pub fn acquire(folder: &Path) -> Result<FolderLock> {
        std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        let path = folder.join(LOCK_FILE);
        let me = format!("{}\n{}\n", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(me.as_bytes()).map_err(|e| Error::io(&path, e))?;
                    return Ok(FolderLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut lines = text.lines();
                    let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
                    let command = lines.next().unwrap_or("").to_string();
                    match pid {
                        Some(pid) if pid != std::process::id() && alive(pid) => {
                            return Err(Error::format(
                                &path,
                                format!("{} is in use by process {pid} ({command}); wait for it to finish, or remove this lock file if that process is gone", folder.display()),
                            ));
                        }
                        // Stale (its process is gone) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::format(&path, "could not take the lock (another process keeps recreating it)"))
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_a_stale_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FolderLock::acquire(dir.path()).unwrap();
        // Held by a live process other than this one (pid 1 is always running).
        std::fs::write(dir.path().join(LOCK_FILE), "1\ninit\n").unwrap();
        let err = FolderLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by process 1 (init)") && err.contains(".lock"), "{err}");
        // A process that no longer exists leaves a stale lock.
        std::fs::write(dir.path().join(LOCK_FILE), "4000000000\nold run\n").unwrap();
        drop(lock);
        std::fs::write(dir.path().join(LOCK_FILE), "4000000000\nold run\n").unwrap();
        let again = FolderLock::acquire(dir.path()).unwrap();
        drop(again);
        assert!(!dir.path().join(LOCK_FILE).exists());
    }
}
