//! What the cohort-level stages share: the [`PatientStage`] contract the pipeline runs them
//! by (settings, the files one patient's run reads and writes, the run itself), checking that
//! input and output folders are apart, validating patient folder names, listing patient
//! folders, copying a file atomically, and running a per-patient volume stage over a cohort
//! with one report line per patient (a failing patient is reported and the others go on).

use crate::cohort::Cohort;
use crate::error::{Error, Result, panic_boundary};
use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};

/// One cohort stage as the pipeline runs it, one patient at a time. The stage declares what a
/// patient's run reads and writes; the pipeline stamps exactly those files in the patient's
/// manifest (a changed input or output reruns the stage) and refuses a run that writes a file
/// it did not declare. Each stage implements it beside its own code; what a stage runs with
/// (options, a model) is the stage value's, the cohort root is passed to every call. Its name
/// is the pipeline's (`pipeline::Stage`, which the command line spells).
pub trait PatientStage: Sync {
    /// What the stage runs with, as text that changes when the settings do (a change reruns
    /// it); none by default.
    fn settings(&self) -> String {
        String::new()
    }

    /// The folder whose sub-folders are the patients when a pipeline starts with this stage.
    fn patients(&self, c: &Cohort) -> PathBuf;

    /// What one patient's run reads.
    fn inputs(&self, c: &Cohort, pid: &str) -> Result<Vec<StagePath>>;

    /// What one patient's run writes; a [`StagePath::Folder`] is the stage's own, cleared
    /// before a rerun.
    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath>;

    /// Run for one patient.
    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun>;

    /// Whether patients may run in parallel (not for a stage that uses every core itself).
    fn parallel(&self) -> bool {
        true
    }

    /// An error when the stage cannot run at all (a missing model), asked before any patient.
    fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// After the patient's stage ran or was skipped: why its result may not be used by the
    /// later stages (a mask that fails quality control), if so.
    fn gate(&self, _c: &Cohort, _pid: &str) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A file or folder a stage reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagePath {
    /// One file.
    File(PathBuf),
    /// Every file under a folder (none when it is absent).
    Folder(PathBuf),
}

impl StagePath {
    /// A path that may be either (a model): a folder when it is one, else a file.
    pub fn file_or_folder(path: &Path) -> StagePath {
        if path.is_dir() { StagePath::Folder(path.to_path_buf()) } else { StagePath::File(path.to_path_buf()) }
    }

    /// The path itself.
    pub fn path(&self) -> &Path {
        match self {
            StagePath::File(p) | StagePath::Folder(p) => p,
        }
    }

    /// The files of several paths, in order (a folder's sorted, see [`files_under`]).
    pub fn files(paths: &[StagePath]) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for p in paths {
            match p {
                StagePath::File(f) => out.push(f.clone()),
                StagePath::Folder(d) => out.extend(files_under(d)?),
            }
        }
        Ok(out)
    }
}

/// What one patient's run of a stage did.
#[derive(Debug, Clone, Default)]
pub struct StageRun {
    /// The files written.
    pub written: Vec<PathBuf>,
    /// Something worth reporting (skipped files, warnings, figures).
    pub note: Option<String>,
}

/// Every regular file under `dir` (any depth, not following links, without the temporary
/// files of `io::atomic`), sorted; none when `dir` is absent.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && !entry.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// True when `name` can be used as a patient folder name: non-empty, not `.` or `..`,
/// without a path separator or NUL.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Create `output` and make sure neither folder contains the other, so that a stage
/// never reads its own output nor writes into its input.
pub fn prepare_folders(input: &Path, output: &Path) -> Result<()> {
    let input_abs = input.canonicalize().map_err(|e| Error::io(input, e))?;
    if !input_abs.is_dir() {
        return Err(Error::format(input, "is not a folder"));
    }
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let output_abs = output.canonicalize().map_err(|e| Error::io(output, e))?;
    if output_abs.starts_with(&input_abs) || input_abs.starts_with(&output_abs) {
        return Err(Error::invalid(format!(
            "the output folder {} and the input folder {} must not contain one another",
            output.display(),
            input.display()
        )));
    }
    Ok(())
}

/// The patient folders of `input` (sorted, with their names) and the entries that are not
/// usable patient folders, each with the reason.
pub fn patient_folders(input: &Path) -> Result<(Vec<(String, PathBuf)>, Vec<(PathBuf, String)>)> {
    let mut patients = Vec::new();
    let mut ignored = Vec::new();
    for entry in std::fs::read_dir(input).map_err(|e| Error::io(input, e))? {
        let entry = entry.map_err(|e| Error::io(input, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        match entry.file_name().to_str() {
            _ if !kind.is_dir() => ignored.push((path, "not a patient folder (a file or link directly under the input)".to_string())),
            Some(name) if is_safe_name(name) => patients.push((name.to_string(), path)),
            Some(_) => ignored.push((path, "patient folder name is not usable as a path component".to_string())),
            None => ignored.push((path, "patient folder name is not valid UTF-8".to_string())),
        }
    }
    patients.sort();
    ignored.sort();
    Ok((patients, ignored))
}

/// Copy `from` to `to` atomically (temporary name, then rename).
pub fn copy_atomically(from: &Path, to: &Path) -> Result<()> {
    crate::io::write_atomically(to, |tmp| std::fs::copy(from, tmp).map(|_| ()).map_err(|e| Error::io(from, e)))
}

/// Run `f` on a thread pool of `jobs` threads (rayon's default pool when `None`).
pub fn with_jobs<T: Send>(jobs: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    match jobs {
        None => Ok(f()),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .map_err(|e| Error::invalid(format!("cannot start {n} worker threads: {e}")))?;
            Ok(pool.install(f))
        }
    }
}

/// What a per-patient stage did: for each patient, the files written or why it failed.
#[derive(Debug)]
pub struct StageReport {
    /// The stage's name, as the command line spells it.
    pub stage: String,
    /// `(patient id, files written or the error)`, sorted by id.
    pub patients: Vec<(String, Result<Vec<PathBuf>>)>,
    /// Entries of the patient folder that are not patient folders, with the reason.
    pub ignored: Vec<(PathBuf, String)>,
}

impl StageReport {
    /// Number of patients that failed.
    pub fn failed(&self) -> usize {
        self.patients.iter().filter(|(_, r)| r.is_err()).count()
    }

    /// `Ok` when every patient succeeded, else one error counting the failures.
    pub fn check(&self) -> Result<()> {
        match self.failed() {
            0 => Ok(()),
            n => Err(Error::invalid(format!("{}: {n} of {} patients failed (see above)", self.stage, self.patients.len()))),
        }
    }
}

impl fmt::Display for StageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, why) in &self.ignored {
            writeln!(f, "ignored {}: {why}", path.display())?;
        }
        for (pid, r) in &self.patients {
            match r {
                Ok(files) => {
                    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                    writeln!(f, "patient {pid}: wrote {}", names.join(", "))?;
                }
                Err(e) => writeln!(f, "patient {pid} FAILED: {e}")?,
            }
        }
        write!(f, "{}: {} patients, {} done, {} failed", self.stage, self.patients.len(), self.patients.len() - self.failed(), self.failed())
    }
}

/// Run `work(pid)` for every patient folder of `folder` (in parallel when `parallel`),
/// collecting each patient's outcome; a panic in one patient's work becomes that patient's
/// error ([`panic_boundary`]). A folder without any patient folder is an error.
pub fn for_each_patient(stage: &str, folder: &Path, parallel: bool, work: impl Fn(&str) -> Result<Vec<PathBuf>> + Sync) -> Result<StageReport> {
    if !folder.is_dir() {
        return Err(Error::format(folder, format!("{stage}: no such folder")));
    }
    let (patients, ignored) = patient_folders(folder)?;
    if patients.is_empty() {
        return Err(Error::format(folder, format!("{stage}: the folder holds no patient folders")));
    }
    let run = |(pid, _): &(String, PathBuf)| (pid.clone(), panic_boundary(|| work(pid)));
    let patients = if parallel { patients.par_iter().map(run).collect() } else { patients.iter().map(run).collect() };
    Ok(StageReport { stage: stage.to_string(), patients, ignored })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_rejected() {
        for bad in ["", ".", "..", "a/b", "..\\x", "a\0b"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        assert!(is_safe_name("1791414"));
    }

    #[test]
    fn a_patient_that_panics_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        for pid in ["a", "b", "c"] {
            std::fs::create_dir(dir.path().join(pid)).unwrap();
        }
        for parallel in [false, true] {
            let report = for_each_patient("test", dir.path(), parallel, |pid| {
                let v: Vec<usize> = Vec::new();
                if pid == "b" {
                    let _ = v[3];
                }
                Ok(vec![PathBuf::from(pid)])
            })
            .unwrap();
            assert_eq!(report.failed(), 1);
            let (pid, result) = &report.patients[1];
            let err = result.as_ref().unwrap_err().to_string();
            assert!(pid == "b" && err.contains("internal error") && err.contains("index out of bounds"), "{err}");
            assert!(report.patients[0].1.is_ok() && report.patients[2].1.is_ok());
        }
    }

    #[test]
    fn nested_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("raw");
        std::fs::create_dir(&input).unwrap();
        assert!(prepare_folders(&input, &input.join("out")).is_err());
        assert!(prepare_folders(&input, dir.path()).is_err());
        prepare_folders(&input, &dir.path().join("0.ori_3")).unwrap();
    }
}
