//! Stage 2, **extract** (docs/design.md §3): pick each patient's CTA, BF, AVG and MIP series from
//! `0.ori_3/<pid>/<suid>/` and copy them to `3.sorted_dcm/<pid>/<MODALITY>/<suid>/`.
//!
//! With an annotation table, the table names all four series. Without one, BF, AVG and
//! MIP are the series whose ImageType has a value equal to `BF`, `AVG` or `MIP` (series
//! with fewer than `min_files` files are ignored), and CTA is the ORIGINAL/PRIMARY axial CT
//! series with the most slices among the others. A patient with a missing or ambiguous
//! modality is reported with the reason and skipped; the others go on.

use super::annotation::Annotation;
use super::stage::{PatientStage, StagePath, StageRun, copy_atomically, files_under, patient_folders, prepare_folders};
use crate::cohort::{self, Cohort, MODALITIES};
use crate::error::{Error, Result, panic_boundary};
use crate::io::dicom::{SliceHeader, files_in, is_valid_uid};
use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};

/// Series with fewer files than this are ignored when choosing by ImageType (docs/design.md §3).
pub const DEFAULT_MIN_FILES: usize = 20;

/// How to choose the series.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// The annotation table naming each patient's four series, if any.
    pub annotation: Option<Annotation>,
    /// Smallest series (in files) considered when choosing without a table.
    pub min_files: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions { annotation: None, min_files: DEFAULT_MIN_FILES }
    }
}

/// One series folder of `0.ori_3/<pid>/`: its UID, file count and first readable header.
#[derive(Debug, Clone)]
pub struct SeriesSummary {
    /// SeriesInstanceUID (the folder name).
    pub uid: String,
    /// The folder.
    pub dir: PathBuf,
    /// Files in the folder.
    pub files: Vec<PathBuf>,
    /// Header of the first file that could be read.
    pub header: Option<SliceHeader>,
}

impl SeriesSummary {
    fn image_type(&self) -> String {
        self.header.as_ref().map(|h| h.image_type.join("\\")).unwrap_or_else(|| "?".into())
    }

    fn has_image_type(&self, value: &str) -> bool {
        self.header.as_ref().is_some_and(|h| h.has_image_type(value))
    }

    /// An ORIGINAL/PRIMARY axial CT image series.
    fn is_primary_axial_ct(&self) -> bool {
        self.header.as_ref().is_some_and(|h| {
            h.modality.as_deref() == Some("CT")
                && h.image_type.first().map(String::as_str) == Some("ORIGINAL")
                && h.image_type.get(1).map(String::as_str) == Some("PRIMARY")
                && h.has_image_type("AXIAL")
        })
    }

    fn describe(&self) -> String {
        format!("{} ({} files, ImageType {})", self.uid, self.files.len(), self.image_type())
    }
}

/// The series chosen for one modality and why.
#[derive(Debug, Clone)]
pub struct Choice {
    /// `CTA`, `BF`, `AVG` or `MIP`.
    pub modality: String,
    /// SeriesInstanceUID.
    pub uid: String,
    /// Number of files copied.
    pub files: usize,
    /// How it was chosen.
    pub reason: String,
}

/// What extraction did for one patient.
#[derive(Debug, Clone, Default)]
pub struct PatientExtract {
    /// Patient id.
    pub pid: String,
    /// The four series, when the patient was extracted.
    pub chosen: Vec<Choice>,
    /// Why the patient was skipped (missing or ambiguous modalities, failures).
    pub problems: Vec<String>,
    /// Stale series folders of an earlier run removed from the output.
    pub replaced: Vec<PathBuf>,
}

/// What the whole extraction did.
#[derive(Debug, Clone, Default)]
pub struct ExtractReport {
    /// One entry per patient folder of the input.
    pub patients: Vec<PatientExtract>,
    /// Input entries that are not patient folders.
    pub ignored: Vec<(PathBuf, String)>,
    /// Patients named in the annotation table but absent from the input.
    pub not_found: Vec<String>,
}

impl ExtractReport {
    /// Number of patients skipped.
    pub fn skipped(&self) -> usize {
        self.patients.iter().filter(|p| !p.problems.is_empty()).count()
    }
}

impl fmt::Display for ExtractReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, why) in &self.ignored {
            writeln!(f, "ignored {}: {why}", path.display())?;
        }
        for p in &self.patients {
            if p.problems.is_empty() {
                writeln!(f, "patient {}: extracted", p.pid)?;
                for c in &p.chosen {
                    writeln!(f, "  {:<3} {} ({} files): {}", c.modality, c.uid, c.files, c.reason)?;
                }
                for r in &p.replaced {
                    writeln!(f, "  removed stale {}", r.display())?;
                }
            } else {
                writeln!(f, "patient {}: SKIPPED", p.pid)?;
                for why in &p.problems {
                    writeln!(f, "  {why}")?;
                }
            }
        }
        for pid in &self.not_found {
            writeln!(f, "annotation: patient {pid} is not in the input")?;
        }
        write!(f, "extract: {} patients, {} extracted, {} skipped", self.patients.len(), self.patients.len() - self.skipped(), self.skipped())
    }
}

/// The series folders of one patient in `0.ori_3`, and notes on folders that are not series.
fn summarise(folder: &Path) -> Result<(Vec<SeriesSummary>, Vec<String>)> {
    let mut series = Vec::new();
    let mut notes = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| Error::io(folder, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if !is_valid_uid(&name) {
            notes.push(format!("folder {} is not named by a series UID; ignored", dir.display()));
            continue;
        }
        let files = files_in(&dir)?;
        let header = files.iter().find_map(|f| SliceHeader::read(f).ok());
        series.push(SeriesSummary { uid: name, dir, files, header });
    }
    Ok((series, notes))
}

/// Choose the four series of a patient: `Ok(choices)` or `Err(problems)`.
fn choose(pid: &str, series: &[SeriesSummary], options: &ExtractOptions) -> std::result::Result<Vec<(Choice, usize)>, Vec<String>> {
    let mut chosen = Vec::new();
    let mut problems = Vec::new();
    if let Some(table) = &options.annotation {
        if !table.entries.contains_key(pid) {
            return Err(vec!["not in the annotation table".into()]);
        }
        for m in MODALITIES {
            match table.series(pid, m) {
                None => problems.push(format!("{m}: no series named in the annotation table")),
                Some(uid) => match series.iter().position(|s| s.uid == uid) {
                    Some(i) => chosen.push((Choice { modality: m.into(), uid: uid.into(), files: series[i].files.len(), reason: "named in the annotation table".into() }, i)),
                    None => problems.push(format!("{m}: series {uid} of the annotation table is not among the patient's {} series", series.len())),
                },
            }
        }
        return if problems.is_empty() { Ok(chosen) } else { Err(problems) };
    }
    let big = |s: &SeriesSummary| s.files.len() >= options.min_files;
    for m in ["BF", "AVG", "MIP"] {
        let candidates: Vec<usize> = (0..series.len()).filter(|&i| big(&series[i]) && series[i].has_image_type(m)).collect();
        match candidates.as_slice() {
            [i] => chosen.push((
                Choice { modality: m.into(), uid: series[*i].uid.clone(), files: series[*i].files.len(), reason: format!("ImageType {} contains {m}", series[*i].image_type()) },
                *i,
            )),
            [] => problems.push(format!("{m}: missing: no series of at least {} files has {m} in its ImageType", options.min_files)),
            many => problems.push(format!(
                "{m}: ambiguous: {} series have {m} in their ImageType: {}",
                many.len(),
                many.iter().map(|&i| series[i].describe()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    let perfusion = |s: &SeriesSummary| ["BF", "AVG", "MIP"].iter().any(|m| s.has_image_type(m));
    let candidates: Vec<usize> = (0..series.len()).filter(|&i| big(&series[i]) && !perfusion(&series[i]) && series[i].is_primary_axial_ct()).collect();
    let most = candidates.iter().map(|&i| series[i].files.len()).max();
    let best: Vec<usize> = candidates.iter().copied().filter(|&i| Some(series[i].files.len()) == most).collect();
    match best.as_slice() {
        [i] => chosen.insert(
            0,
            (
                Choice {
                    modality: "CTA".into(),
                    uid: series[*i].uid.clone(),
                    files: series[*i].files.len(),
                    reason: format!("no annotation table: the ORIGINAL/PRIMARY axial CT series with the most slices ({}) of {} such series", series[*i].files.len(), candidates.len()),
                },
                *i,
            ),
        ),
        [] => problems.push(format!("CTA: missing: no ORIGINAL/PRIMARY axial CT series of at least {} files besides BF/AVG/MIP", options.min_files)),
        tied => problems.push(format!(
            "CTA: ambiguous: {} ORIGINAL/PRIMARY axial CT series share the most slices: {}",
            tied.len(),
            tied.iter().map(|&i| series[i].describe()).collect::<Vec<_>>().join(", ")
        )),
    }
    if problems.is_empty() { Ok(chosen) } else { Err(problems) }
}

/// Extract one patient into `out/<pid>/` (the patient is skipped when `problems` is not empty).
pub fn extract_patient(pid: &str, folder: &Path, out: &Path, options: &ExtractOptions) -> PatientExtract {
    let mut report = PatientExtract { pid: pid.to_string(), ..Default::default() };
    let (series, notes) = match summarise(folder) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    let choices = match choose(pid, &series, options) {
        Ok(c) => c,
        Err(mut problems) => {
            problems.extend(notes);
            report.problems = problems;
            return report;
        }
    };
    for (choice, i) in choices {
        let modality_dir = out.join(pid).join(&choice.modality);
        let result = (|| -> Result<()> {
            for f in &series[i].files {
                let name = f.file_name().expect("files have names");
                copy_atomically(f, &modality_dir.join(&choice.uid).join(name))?;
            }
            // Series folders left by an earlier run with another choice.
            for entry in std::fs::read_dir(&modality_dir).map_err(|e| Error::io(&modality_dir, e))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name != choice.uid && is_valid_uid(&name) && entry.path().is_dir() {
                    std::fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                    report.replaced.push(entry.path());
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            report.problems.push(format!("{}: {e}", choice.modality));
        }
        report.chosen.push(choice);
    }
    report
}

/// Extract every patient of `input` (`0.ori_3`) into `output` (`3.sorted_dcm`).
pub fn extract_modalities(input: &Path, output: &Path, options: &ExtractOptions) -> Result<ExtractReport> {
    prepare_folders(input, output)?;
    let (patients, ignored) = patient_folders(input)?;
    let not_found = options
        .annotation
        .as_ref()
        .map(|a| a.entries.keys().filter(|pid| !patients.iter().any(|(p, _)| p == *pid)).cloned().collect())
        .unwrap_or_default();
    let patients = patients
        .par_iter()
        .map(|(pid, folder)| {
            panic_boundary(|| Ok(extract_patient(pid, folder, output, options)))
                .unwrap_or_else(|e| PatientExtract { pid: pid.clone(), problems: vec![e.to_string()], ..Default::default() })
        })
        .collect();
    Ok(ExtractReport { patients, ignored, not_found })
}

/// The pipeline's `extract` stage: `0.ori_3/<pid>` → `3.sorted_dcm/<pid>/{CTA,BF,AVG,MIP}/<suid>/`.
#[derive(Debug, Clone)]
pub struct ExtractStage {
    /// The annotation table's file, if any.
    annotation: Option<PathBuf>,
    /// How the series are chosen (with the table read).
    options: ExtractOptions,
}

impl ExtractStage {
    /// The stage choosing by the annotation table at `annotation` (read now), else by ImageType.
    pub fn new(annotation: Option<PathBuf>) -> Result<Self> {
        let table = annotation.as_deref().map(Annotation::read).transpose()?;
        Ok(ExtractStage { annotation, options: ExtractOptions { annotation: table, ..Default::default() } })
    }
}

impl PatientStage for ExtractStage {
    fn settings(&self) -> String {
        format!("min_files {}, annotation {:?}", self.options.min_files, self.annotation)
    }

    fn patients(&self, c: &Cohort) -> PathBuf {
        c.root.join(cohort::ORI)
    }

    fn inputs(&self, c: &Cohort, pid: &str) -> Result<Vec<StagePath>> {
        let folder = StagePath::Folder(c.root.join(cohort::ORI).join(pid));
        Ok(std::iter::once(folder).chain(self.annotation.iter().cloned().map(StagePath::File)).collect())
    }

    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath> {
        vec![StagePath::Folder(c.root.join(cohort::SORTED_DCM).join(pid))]
    }

    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun> {
        let r = extract_patient(pid, &c.root.join(cohort::ORI).join(pid), &c.root.join(cohort::SORTED_DCM), &self.options);
        if !r.problems.is_empty() {
            return Err(Error::invalid(r.problems.join("; ")));
        }
        Ok(StageRun { written: files_under(&c.root.join(cohort::SORTED_DCM).join(pid))?, note: None })
    }
}
