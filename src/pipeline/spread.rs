//! The patients of a run spread over the ranks of an MPI job: rank 0 lists them and every rank
//! gets its list; each rank then works patient by patient (all selected stages of one, then the
//! next), taking the next patient that no process has claimed ([`super::claim`]), so a slow
//! patient holds no other; at the end every rank's outcomes are gathered into one table, the
//! same on every rank. In a group of one each step is the identity.

use super::Outcome;
use super::claim;
use crate::cohort::Cohort;
use crate::distributed::Group;
use crate::error::{Error, Result};
use crate::io::lock::FileLock;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Rank 0's `list()`, on every rank; its error is every rank's.
pub fn listed<T: Serialize + DeserializeOwned>(group: &Group, list: impl FnOnce() -> Result<T>) -> Result<T> {
    if !group.is_distributed() {
        return list();
    }
    let mine = if group.is_root() { list().map(Some) } else { Ok(None) };
    let bytes = group.agree(mine)?.map(|l| serde_json::to_vec(&l).expect("a list serialises")).unwrap_or_default();
    serde_json::from_slice(&group.broadcast(0, bytes)).map_err(|e| Error::invalid(format!("rank 0's list of patients: {e}")))
}

/// The patients this process claimed, by index into `pids`, with what `run` made of each.
pub type Share = Vec<(usize, Vec<Outcome>)>;

/// Run every patient of `pids` that this process can claim, one after the other, with `run`;
/// returns its share and the locks it took, to keep until every rank is done.
pub fn run_claimed(pids: &[String], c: &Cohort, mut run: impl FnMut(&str) -> Vec<Outcome>) -> Result<(Share, Vec<FileLock>)> {
    let (mut share, mut locks) = (Vec::new(), Vec::new());
    for (i, pid) in pids.iter().enumerate() {
        if let Some(lock) = claim::try_claim(c, pid)? {
            locks.push(lock);
            share.push((i, run(pid)));
        }
    }
    Ok((share, locks))
}

/// Every rank's share gathered: one row of outcomes per patient of `pids`, in order, the same
/// on every rank. A patient no rank claimed (another job holds it) fails its first of
/// `stages` stages, naming its lock file.
pub fn gather(group: &Group, mine: &Share, pids: &[String], c: &Cohort, stages: usize) -> Result<Vec<Vec<Outcome>>> {
    let mut rows: Vec<Option<Vec<Outcome>>> = vec![None; pids.len()];
    for (rank, bytes) in group.all_gather(&serde_json::to_vec(mine).expect("outcomes serialise")).iter().enumerate() {
        let share: Share = serde_json::from_slice(bytes).map_err(|e| Error::invalid(format!("rank {rank}'s outcomes: {e}")))?;
        for (i, outcomes) in share {
            let row = rows.get_mut(i).ok_or_else(|| Error::invalid(format!("rank {rank} reports patient number {i} of {}", pids.len())))?;
            if row.replace(outcomes).is_some() {
                return Err(Error::invalid(format!("patient {} was run twice (again by rank {rank})", pids[i])));
            }
        }
    }
    let unclaimed = |pid: &str| {
        let why = format!("{}: claimed by a process outside this job; run the pipeline again when it ends", claim::lock_path(c, pid).display());
        std::iter::once(Outcome::Failed(why)).chain(std::iter::repeat_n(Outcome::NotRun, stages.saturating_sub(1))).collect()
    };
    Ok(rows.into_iter().zip(pids).map(|(row, pid)| row.unwrap_or_else(|| unclaimed(pid))).collect())
}
