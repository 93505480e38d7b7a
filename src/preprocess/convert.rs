//! Stage 3, **convert** (docs/design.md §3): each series of `3.sorted_dcm/<pid>/<MODALITY>/<suid>/`
//! becomes `3.sorted_nii/<pid>/<MODALITY>.nii.gz`, with the values (rescale applied) and
//! the geometry ITK reads from the series (see [`crate::io::dicom::series`]). Written as
//! int16 when every value is an integer that fits, float32 otherwise. A series that fails
//! is reported and the others go on.

use super::stage::{PatientStage, StagePath, StageRun, patient_folders, prepare_folders};
use crate::cohort::{self, Cohort, MODALITIES};
use crate::error::{Error, Result, panic_boundary};
use crate::io::dicom::{SeriesVolume, read_series};
use crate::io::{NiftiDtype, write_nifti};
use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};

/// What converting one series gave.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The NIfTI file written.
    pub output: PathBuf,
    /// Grid size.
    pub size: [usize; 3],
    /// Datatype written.
    pub dtype: NiftiDtype,
    /// Files of the series folder left out (not DICOM, no pixel data), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Irregularities (uneven spacing, missing slices).
    pub warnings: Vec<String>,
}

/// Read the series folder `dir` and write it to `output` (`.nii` or `.nii.gz`).
///
/// Slices that do not form one volume (different orientations, repeated positions) are
/// stacked as ITK stacks them, with a warning; with `strict` they are an error instead and
/// nothing is written.
pub fn convert_series(dir: &Path, output: &Path, strict: bool) -> Result<Converted> {
    let series = read_series(dir)?;
    if let (true, Some(why)) = (strict, &series.not_a_volume) {
        return Err(Error::format(dir, format!("{why} (refused: --strict)")));
    }
    write_series_volume(&series, output)
}

/// Write an already read series to `output`.
pub fn write_series_volume(series: &SeriesVolume, output: &Path) -> Result<Converted> {
    let dtype = if series.fits_int16() { NiftiDtype::I16 } else { NiftiDtype::F32 };
    write_nifti(output, &series.volume, dtype)?;
    Ok(Converted { output: output.to_path_buf(), size: series.volume.shape(), dtype, skipped: series.skipped.clone(), warnings: series.warnings.clone() })
}

/// The one series folder inside `3.sorted_dcm/<pid>/<MODALITY>/`.
fn single_series_dir(modality_dir: &Path) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(modality_dir)
        .map_err(|e| Error::io(modality_dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    match dirs.len() {
        1 => Ok(dirs.remove(0)),
        0 => Err(Error::format(modality_dir, "holds no series folder")),
        n => Err(Error::format(modality_dir, format!("holds {n} series folders; expected one"))),
    }
}

/// What converting one patient did: per modality, the result.
#[derive(Debug)]
pub struct PatientConvert {
    /// Patient id.
    pub pid: String,
    /// `(modality, result)` for the modalities present.
    pub results: Vec<(String, Result<Converted>)>,
}

/// What the whole conversion did.
#[derive(Debug, Default)]
pub struct ConvertReport {
    /// One entry per patient folder.
    pub patients: Vec<PatientConvert>,
    /// Input entries that are not patient folders.
    pub ignored: Vec<(PathBuf, String)>,
}

impl ConvertReport {
    /// Number of series that failed.
    pub fn failed(&self) -> usize {
        self.patients.iter().flat_map(|p| &p.results).filter(|(_, r)| r.is_err()).count()
    }
}

impl fmt::Display for ConvertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, why) in &self.ignored {
            writeln!(f, "ignored {}: {why}", path.display())?;
        }
        let mut written = 0;
        for p in &self.patients {
            writeln!(f, "patient {}:", p.pid)?;
            for (m, r) in &p.results {
                match r {
                    Ok(c) => {
                        written += 1;
                        writeln!(f, "  {m:<3} -> {} ({}x{}x{}, {})", c.output.display(), c.size[0], c.size[1], c.size[2], c.dtype.name())?;
                        for w in &c.warnings {
                            writeln!(f, "      warning: {w}")?;
                        }
                        for (path, why) in &c.skipped {
                            writeln!(f, "      skipped {}: {why}", path.display())?;
                        }
                    }
                    Err(e) => writeln!(f, "  {m:<3} FAILED: {e}")?,
                }
            }
        }
        write!(f, "convert: {} patients, {written} series written, {} failed", self.patients.len(), self.failed())
    }
}

/// Convert every patient of `input` (`3.sorted_dcm`) into `output` (`3.sorted_nii`);
/// `strict` as in [`convert_series`].
pub fn convert_cohort(input: &Path, output: &Path, strict: bool) -> Result<ConvertReport> {
    prepare_folders(input, output)?;
    let (patients, ignored) = patient_folders(input)?;
    let patients = patients.par_iter().map(|(pid, folder)| convert_patient(pid, folder, output, strict)).collect();
    Ok(ConvertReport { patients, ignored })
}

/// Convert one patient folder of `3.sorted_dcm` (`folder/<MODALITY>/<suid>/`) into
/// `output/<pid>/<MODALITY>.nii.gz`; `strict` as in [`convert_series`].
pub fn convert_patient(pid: &str, folder: &Path, output: &Path, strict: bool) -> PatientConvert {
    let results = MODALITIES
        .iter()
        .filter(|m| folder.join(m).is_dir())
        .map(|m| {
            let out = output.join(pid).join(format!("{m}.nii.gz"));
            (m.to_string(), panic_boundary(|| single_series_dir(&folder.join(m)).and_then(|dir| convert_series(&dir, &out, strict))))
        })
        .collect();
    PatientConvert { pid: pid.to_string(), results }
}

/// The pipeline's `convert` stage: `3.sorted_dcm/<pid>` → `3.sorted_nii/<pid>/*.nii.gz`.
#[derive(Debug, Clone)]
pub struct ConvertStage {
    /// Refuse series that do not form one volume.
    pub strict: bool,
}

impl PatientStage for ConvertStage {
    fn settings(&self) -> String {
        format!("strict {}", self.strict)
    }

    fn patients(&self, c: &Cohort) -> PathBuf {
        c.root.join(cohort::SORTED_DCM)
    }

    fn inputs(&self, c: &Cohort, pid: &str) -> Result<Vec<StagePath>> {
        Ok(vec![StagePath::Folder(c.root.join(cohort::SORTED_DCM).join(pid))])
    }

    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath> {
        vec![StagePath::Folder(c.root.join(cohort::SORTED_NII).join(pid))]
    }

    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun> {
        let r = convert_patient(pid, &c.root.join(cohort::SORTED_DCM).join(pid), &c.root.join(cohort::SORTED_NII), self.strict);
        let mut written = Vec::new();
        let mut notes = Vec::new();
        for (m, result) in r.results {
            let converted = result?;
            notes.extend(converted.warnings.iter().map(|w| format!("{m}: {w}")));
            written.push(converted.output);
        }
        Ok(StageRun { written, note: (!notes.is_empty()).then(|| notes.join("; ")) })
    }
}
