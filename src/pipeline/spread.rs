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

#[cfg(test)]
mod tests {
    use super::super::{Event, Options, Outcome, PipelineReport, Stage, run_pipeline};
    use crate::cohort;
    use crate::distributed::{Group, threads::thread_group};
    use crate::phantom::{CTA_FOV_MM, PhantomOptions, write_cohort_with_dicom};
    use crate::preprocess::stage::files_under;
    use burn::tensor::Device;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    /// The whole pipeline over `base/P`'s DICOM dump into `root`, in `group`, with the stages'
    /// outcomes as its events told them.
    fn run(base: &Path, root: &Path, group: &Group) -> (PipelineReport, Vec<(Stage, String, Outcome)>) {
        let o = Options {
            raw: base.join("P").join(cohort::RAW),
            root: root.to_path_buf(),
            annotation: Some(base.join("P").join(cohort::ANNOTATION).join(cohort::ANNOTATION_CSV)),
            seg_model: Path::new(env!("CARGO_MANIFEST_DIR")).join("models/chamber_seg_phantom"),
            masks: None,
            from: Stage::Sort,
            to: Stage::Crop,
            force: false,
            register: crate::register::Settings::default(),
            strict: false,
            qc: Default::default(),
        };
        let told = Mutex::new(Vec::new());
        let events = |e: Event| {
            if let Event::Patient(stage, pid, outcome) = e {
                told.lock().unwrap().push((stage, pid, outcome));
            }
        };
        let report = run_pipeline(&o, &Device::flex(), group, &events).unwrap();
        (report, told.into_inner().unwrap())
    }

    /// Outcomes without their timings.
    fn untimed(report: &PipelineReport) -> Vec<(String, Vec<Outcome>)> {
        let untimed = |o: &Outcome| match o {
            Outcome::Done { note, .. } => Outcome::Done { seconds: 0.0, note: note.clone() },
            other => other.clone(),
        };
        report.patients.iter().map(|(pid, o)| (pid.clone(), o.iter().map(untimed).collect())).collect()
    }

    /// The data files under `root` (not the manifests and reports, which hold times), with their bytes.
    fn data(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let files = files_under(root).unwrap().into_iter().filter(|f| !f.to_string_lossy().ends_with(".json") && f.file_name().unwrap() != "pipeline_report.md");
        files.map(|f| (f.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&f).unwrap())).collect()
    }

    #[test]
    fn thread_ranks_run_each_patient_once_and_match_one_process() {
        let dir = tempfile::tempdir().unwrap();
        write_cohort_with_dicom(&dir.path().join("P"), &PhantomOptions { cases: 3, size: [64, 64, 48], fov_mm: CTA_FOV_MM, seed: 11 }, |_, _| {}).unwrap();
        let (single, _) = run(dir.path(), &dir.path().join("one"), &Group::solo());
        assert_eq!(single.failed(), 0, "{single}");
        let (base, two) = (dir.path(), &dir.path().join("two"));
        let ranks: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = thread_group(2).into_iter().map(|g| s.spawn(move || run(base, two, &g))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Each patient's stages ran once, on one rank; every rank holds the whole report.
        let mut runs: Vec<(Stage, String)> = ranks.iter().flat_map(|(_, told)| told.iter().map(|(s, pid, _)| (*s, pid.clone()))).collect();
        runs.sort();
        let mut expected: Vec<(Stage, String)> = single.patients.iter().flat_map(|(pid, _)| Stage::ALL.map(|s| (s, pid.clone()))).collect();
        expected.sort();
        assert_eq!(runs, expected);
        assert!(ranks.iter().flat_map(|(_, told)| told).all(|(_, _, o)| matches!(o, Outcome::Done { .. })));
        for (report, _) in &ranks {
            assert_eq!(untimed(report), untimed(&single));
            assert_eq!(report.qc.keys().collect::<Vec<_>>(), single.qc.keys().collect::<Vec<_>>());
        }
        assert!(two.join("pipeline_report.json").is_file() && !two.join("pipeline").join(format!("{}.lock", single.patients[0].0)).exists());
        let (a, b) = (data(&base.join("one")), data(two));
        assert_eq!(a.iter().map(|f| &f.0).collect::<Vec<_>>(), b.iter().map(|f| &f.0).collect::<Vec<_>>());
        assert!(a.len() > 20);
        for ((path, x), (_, y)) in a.iter().zip(&b) {
            assert!(x == y, "{} differs from one process's", path.display());
        }
    }
}
