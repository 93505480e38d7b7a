//! The paired dataset of docs/design.md §4: every `<pid>` folder under a data root that holds both
//! the source (CTA) and destination (MBF) files, with an optional mask.

use super::batch::Sample;
use crate::cohort::cropped;
use crate::error::{Error, Result};
use crate::io::nifti::read_nifti;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File names looked up in each case folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairPattern {
    /// Network input (default `cropped_cta.nii.gz`).
    #[serde(default = "default_src")]
    pub src: String,
    /// Target (default `cropped_mbf.nii.gz`).
    #[serde(default = "default_dst")]
    pub dst: String,
    /// Optional mask for the masked L1 term (e.g. `cropped_mbf_mask.nii.gz`).
    #[serde(default)]
    pub mask: Option<String>,
}

fn default_src() -> String {
    cropped::CTA.to_string()
}
fn default_dst() -> String {
    cropped::MBF.to_string()
}

impl Default for PairPattern {
    fn default() -> Self {
        Self { src: default_src(), dst: default_dst(), mask: None }
    }
}

/// The files of one training case.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// Case identifier (the folder name).
    pub pid: String,
    /// Input volume.
    pub src: PathBuf,
    /// Target volume.
    pub dst: PathBuf,
    /// Mask volume, when the pattern names one.
    pub mask: Option<PathBuf>,
}

impl Pair {
    /// Read the volumes; they must share one grid.
    pub fn load(&self) -> Result<Sample> {
        let src = read_nifti(&self.src)?;
        let dst = read_nifti(&self.dst)?;
        let mask = self.mask.as_ref().map(read_nifti).transpose()?;
        for (path, v) in [(Some(&self.dst), Some(&dst)), (self.mask.as_ref(), mask.as_ref())] {
            if let (Some(path), Some(v)) = (path, v)
                && !src.same_grid(v, 1e-3)
            {
                return Err(Error::format(path, format!(
                    "grid {:?} does not match the input {} ({:?})",
                    v.shape(), self.src.display(), src.shape()
                )));
            }
        }
        Ok(Sample { pid: self.pid.clone(), src, dst, mask })
    }
}

/// The cases found under a data root, and those skipped with the reason.
#[derive(Debug, Clone, Default)]
pub struct PairedDataset {
    /// Complete cases, sorted by id.
    pub pairs: Vec<Pair>,
    /// `(pid, reason)` for case folders with a missing file.
    pub skipped: Vec<(String, String)>,
}

impl PairedDataset {
    /// Scan `root/<pid>/` for the files of `pattern`.
    pub fn scan(root: &Path, pattern: &PairPattern) -> Result<Self> {
        let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        let mut out = PairedDataset::default();
        for dir in dirs {
            let pid = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let src = dir.join(&pattern.src);
            let dst = dir.join(&pattern.dst);
            let mask = pattern.mask.as_ref().map(|m| dir.join(m));
            let missing: Vec<String> = [Some(&src), Some(&dst), mask.as_ref()]
                .into_iter()
                .flatten()
                .filter(|p| !p.is_file())
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
                .collect();
            if missing.is_empty() {
                out.pairs.push(Pair { pid, src, dst, mask });
            } else {
                out.skipped.push((pid, format!("missing {}", missing.join(", "))));
            }
        }
        Ok(out)
    }

    /// Split into (training, held-out) by the held-out case ids; unknown ids are an error.
    pub fn split(self, held_out: &[String]) -> Result<(Vec<Pair>, Vec<Pair>)> {
        for id in held_out {
            if !self.pairs.iter().any(|p| &p.pid == id) {
                return Err(Error::invalid(format!("validation case '{id}' is not among the complete cases")));
            }
        }
        Ok(self.pairs.into_iter().partition(|p| !held_out.contains(&p.pid)))
    }
}
