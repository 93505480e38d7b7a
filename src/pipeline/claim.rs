//! Which process works on which patient: one lock per patient, `ROOT/pipeline/<pid>.lock`
//! ([`FileLock`]: `flock(2)`, released by the kernel when its process ends). A single process
//! claims all its patients before it starts, and is refused when another holds one; a rank of
//! an MPI job claims one patient at a time without waiting, and a patient it cannot claim is
//! another rank's (or another job's). Locks are held until the run ends, so no process of a
//! job claims a patient twice.

use super::report::MANIFEST_FOLDER;
use crate::cohort::Cohort;
use crate::error::Result;
use crate::io::lock::FileLock;
use std::path::PathBuf;

/// The lock file of patient `pid`.
pub fn lock_path(c: &Cohort, pid: &str) -> PathBuf {
    c.root.join(MANIFEST_FOLDER).join(format!("{pid}.lock"))
}

/// Claim every patient of `pids`, or fail naming the first lock file held and its holder.
pub fn claim_all(c: &Cohort, pids: &[String]) -> Result<Vec<FileLock>> {
    pids.iter().map(|pid| FileLock::acquire(&lock_path(c, pid), &format!("patient {pid} of {}", c.root.display()))).collect()
}

/// Claim patient `pid` if no one holds it (`None` when another process does).
pub fn try_claim(c: &Cohort, pid: &str) -> Result<Option<FileLock>> {
    FileLock::try_acquire(&lock_path(c, pid))
}
