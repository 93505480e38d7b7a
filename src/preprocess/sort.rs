//! Stage 1, **sort** (docs/design.md §3): every file under `<in>/<pid>/` (any depth) that is a
//! DICOM image is copied to `0.ori_3/<pid>/<SeriesInstanceUID>/<n>.dcm`.
//!
//! Files that are not DICOM or cannot be read are listed with the reason, never fatal.
//! A SeriesInstanceUID that is not a valid UID, or a patient folder whose name is not a
//! safe path component, never becomes a path. Files already sorted (same
//! SOPInstanceUID in the same series folder) are not copied again, so re-running adds
//! nothing twice. Patients are processed in parallel; one that fails is reported and the
//! others go on.

use super::stage::{PatientStage, StagePath, StageRun, copy_atomically, files_under, patient_folders, prepare_folders};
use crate::cohort::{self, Cohort};
use crate::error::{Error, Result, panic_boundary};
use crate::io::dicom::{SliceHeader, dicm_offset, files_in, is_valid_uid};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// What sorting did for one patient.
#[derive(Debug, Clone, Default)]
pub struct PatientSort {
    /// Patient id (the input folder name).
    pub pid: String,
    /// Files found under the patient folder.
    pub files_seen: usize,
    /// DICOM files copied by this run.
    pub copied: usize,
    /// DICOM files already in the output from an earlier run (not copied again).
    pub already_present: usize,
    /// Files per series in the output after this run.
    pub series: BTreeMap<String, usize>,
    /// Files left out (not DICOM, unreadable, invalid UID, duplicate, link), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Why the patient could not be sorted (then nothing more was done for it).
    pub error: Option<String>,
}

/// What the whole sort did.
#[derive(Debug, Clone, Default)]
pub struct SortReport {
    /// One entry per patient folder, sorted by id.
    pub patients: Vec<PatientSort>,
    /// Entries of the input folder that are not patient folders, with the reason.
    pub ignored: Vec<(PathBuf, String)>,
}

impl SortReport {
    /// Total number of skipped files over all patients.
    pub fn skipped_files(&self) -> usize {
        self.patients.iter().map(|p| p.skipped.len()).sum()
    }

    /// Patients that failed.
    pub fn failed(&self) -> usize {
        self.patients.iter().filter(|p| p.error.is_some()).count()
    }
}

impl fmt::Display for SortReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, why) in &self.ignored {
            writeln!(f, "ignored {}: {why}", path.display())?;
        }
        for p in &self.patients {
            if let Some(e) = &p.error {
                writeln!(f, "patient {}: FAILED: {e}", p.pid)?;
                continue;
            }
            writeln!(
                f,
                "patient {}: {} files, {} copied, {} already sorted, {} skipped, {} series",
                p.pid,
                p.files_seen,
                p.copied,
                p.already_present,
                p.skipped.len(),
                p.series.len()
            )?;
            for (uid, n) in &p.series {
                writeln!(f, "  series {uid}: {n} files")?;
            }
            for (path, why) in &p.skipped {
                writeln!(f, "  skipped {}: {why}", path.display())?;
            }
        }
        let copied: usize = self.patients.iter().map(|p| p.copied).sum();
        write!(f, "sort: {} patients, {copied} files copied, {} files skipped, {} patients failed", self.patients.len(), self.skipped_files(), self.failed())
    }
}

/// Every regular file under `dir`, recursively, sorted; symbolic links are not followed
/// (they are listed as skipped).
fn walk(dir: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<(PathBuf, String)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map_err(|err| Error::io(dir, err)))
        .collect::<Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_symlink() {
            skipped.push((path, "symbolic link, not followed".into()));
        } else if kind.is_dir() {
            walk(&path, files, skipped)?;
        } else if kind.is_file() {
            files.push(path);
        } else {
            skipped.push((path, "not a regular file".into()));
        }
    }
    Ok(())
}

/// A DICOM image found in the input, with what decides where it goes.
struct Found {
    path: PathBuf,
    series: String,
    sop: String,
    instance: i64,
}

/// Classify one input file: a sortable DICOM image, or the reason it is skipped.
fn classify(path: &Path) -> std::result::Result<Found, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    if dicm_offset(&bytes).is_none() {
        return Err("not a DICOM file (no \"DICM\" marker)".into());
    }
    let header = SliceHeader::parse(path, &bytes).map_err(|e| match e {
        Error::Format { message, .. } => message,
        other => other.to_string(),
    })?;
    let series = header.series_instance_uid.ok_or("DICOM without SeriesInstanceUID (not an image: a DICOMDIR or similar)")?;
    if !is_valid_uid(&series) {
        return Err(format!("SeriesInstanceUID {series:?} is not a valid UID (digits and dots, at most 64 characters)"));
    }
    let sop = header.sop_instance_uid.ok_or("DICOM without SOPInstanceUID")?;
    Ok(Found { path: path.to_path_buf(), series, sop, instance: header.instance_number.unwrap_or(i64::MAX) })
}

/// The SOPInstanceUIDs already sorted into `series_dir`, and the highest `<n>` used there.
fn existing(series_dir: &Path) -> Result<(HashMap<String, PathBuf>, u64)> {
    let mut sops = HashMap::new();
    let mut max_n = 0;
    if !series_dir.is_dir() {
        return Ok((sops, max_n));
    }
    for path in files_in(series_dir)? {
        if let Some(n) = path.file_name().and_then(|s| s.to_str()).and_then(|s| s.strip_suffix(".dcm")).and_then(|s| s.parse::<u64>().ok()) {
            max_n = max_n.max(n);
        }
        if let Ok(Some(sop)) = SliceHeader::read(&path).map(|h| h.sop_instance_uid) {
            sops.insert(sop, path);
        }
    }
    Ok((sops, max_n))
}

/// Sort one patient folder into `out/<pid>/`.
pub fn sort_patient(pid: &str, folder: &Path, out: &Path) -> Result<PatientSort> {
    let mut report = PatientSort { pid: pid.to_string(), ..Default::default() };
    let mut files = Vec::new();
    walk(folder, &mut files, &mut report.skipped)?;
    report.files_seen = files.len() + report.skipped.len();
    let classified: Vec<_> = files.par_iter().map(|p| (p, classify(p))).collect();
    let mut by_series: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    let mut first_of: HashMap<String, PathBuf> = HashMap::new();
    for (path, result) in classified {
        match result {
            Err(why) => report.skipped.push((path.clone(), why)),
            Ok(found) => {
                if let Some(first) = first_of.get(&found.sop) {
                    report.skipped.push((path.clone(), format!("duplicate of {} (same SOPInstanceUID)", first.display())));
                } else {
                    first_of.insert(found.sop.clone(), found.path.clone());
                    by_series.entry(found.series.clone()).or_default().push(found);
                }
            }
        }
    }
    for (series, mut found) in by_series {
        let series_dir = out.join(pid).join(&series);
        let (present, mut n) = existing(&series_dir)?;
        found.sort_by(|a, b| (a.instance, &a.path).cmp(&(b.instance, &b.path)));
        let mut copies = Vec::new();
        for f in &found {
            if present.contains_key(&f.sop) {
                report.already_present += 1;
            } else {
                n += 1;
                copies.push((f.path.clone(), series_dir.join(format!("{n}.dcm"))));
            }
        }
        copies.par_iter().try_for_each(|(from, to)| copy_atomically(from, to))?;
        report.copied += copies.len();
        report.series.insert(series, present.len() + copies.len());
    }
    report.skipped.sort();
    Ok(report)
}

/// Sort every patient folder of `input` into `output` (`0.ori_3`). Fails only when the
/// folders themselves cannot be used; a patient that fails is reported in its entry.
pub fn sort_dicom(input: &Path, output: &Path) -> Result<SortReport> {
    prepare_folders(input, output)?;
    let (patients, ignored) = patient_folders(input)?;
    let patients = patients
        .par_iter()
        .map(|(pid, folder)| {
            panic_boundary(|| sort_patient(pid, folder, output)).unwrap_or_else(|e| PatientSort { pid: pid.clone(), error: Some(e.to_string()), ..Default::default() })
        })
        .collect();
    Ok(SortReport { patients, ignored })
}

/// The pipeline's `sort` stage: `raw/<pid>/**` → `0.ori_3/<pid>/<suid>/<n>.dcm`.
#[derive(Debug, Clone)]
pub struct SortStage {
    /// The raw dump, one folder per patient.
    pub raw: PathBuf,
}

impl PatientStage for SortStage {
    fn patients(&self, _: &Cohort) -> PathBuf {
        self.raw.clone()
    }

    fn inputs(&self, _: &Cohort, pid: &str) -> Result<Vec<StagePath>> {
        Ok(vec![StagePath::Folder(self.raw.join(pid))])
    }

    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath> {
        vec![StagePath::Folder(c.root.join(cohort::ORI).join(pid))]
    }

    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun> {
        let r = sort_patient(pid, &self.raw.join(pid), &c.root.join(cohort::ORI))?;
        if r.series.is_empty() {
            return Err(Error::format(self.raw.join(pid), "holds no DICOM image"));
        }
        let note = (!r.skipped.is_empty()).then(|| format!("{} files skipped (first: {} — {})", r.skipped.len(), r.skipped[0].0.display(), r.skipped[0].1));
        Ok(StageRun { written: files_under(&c.root.join(cohort::ORI).join(pid))?, note })
    }
}
