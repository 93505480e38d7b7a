//! Chamber masks from another tool instead of the network (docs/design.md §3 step 5):
//! TotalSegmentator's `-ta heartchambers_highres` output (a folder of seven binary structure
//! files, or the one `--ml` label file), or any tool's label file with a [`LabelMap`], turned
//! into our labels on the CTA's grid.
//!
//! Where a case's output lies:
//! - one case: a per-structure folder (TotalSegmentator only), a label file, or a folder that
//!   holds exactly one NIfTI file (the label file) and none of the structure files;
//! - a cohort folder `DIR`: patient `<pid>`'s output is `DIR/<pid>/` or `DIR/<pid>.nii.gz`
//!   (or `.nii`), read as one case.
//!
//! Overlaps of the per-structure files: the first in [`TOTALSEGMENTATOR_STRUCTURES`] wins
//! (myocardium, then LV, RV, LA, RA, aorta, pulmonary artery). Each file is placed on the CTA
//! grid on its own (so the files need not share a grid): copied when its grid is the CTA's
//! within 1e-3 mm, else resampled by nearest neighbour in world coordinates, 0 outside.

use super::label_map::LabelMap;
use super::read_input;
use super::mask_qc::QcPolicy;
use super::segment::{mask_cohort, mask_file};
use super::stage::StageReport;
use crate::error::{Error, Result};
use crate::volume::{Interpolation, Volume};
use std::fmt;
use std::path::{Path, PathBuf};

/// TotalSegmentator's `heartchambers_highres` structure files and our label of each, in the
/// order overlaps are resolved: a voxel set in several files takes the first one's label.
pub const TOTALSEGMENTATOR_STRUCTURES: [(&str, u8); 7] = [
    ("heart_myocardium.nii.gz", 6),
    ("heart_ventricle_left.nii.gz", 1),
    ("heart_ventricle_right.nii.gz", 2),
    ("heart_atrium_left.nii.gz", 3),
    ("heart_atrium_right.nii.gz", 4),
    ("aorta.nii.gz", 5),
    ("pulmonary_artery.nii.gz", 7),
];

/// Which tool wrote the segmentations, and how their labels become ours.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskFormat {
    /// TotalSegmentator `-ta heartchambers_highres`: per-structure folders, or `--ml` label
    /// files read with its labels (or with `label_map` when given; folders then are refused).
    TotalSegmentator {
        /// A map replacing TotalSegmentator's `--ml` labels.
        label_map: Option<LabelMap>,
    },
    /// Any tool's label files, read through a label map.
    Labels {
        /// Source label → chamber label.
        label_map: LabelMap,
    },
}

/// A folder of segmentations, one per patient, and how to read them: the `--masks` source of
/// a cohort. Spelled `totalsegmentator:DIR` or `labels:DIR` (the latter with a label map).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskSource {
    /// The tool and its labels.
    pub format: MaskFormat,
    /// The folder holding `<pid>/` or `<pid>.nii.gz` per patient.
    pub root: PathBuf,
}

/// One case's segmentation, found on disk.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseMask {
    /// A TotalSegmentator per-structure folder holding every file of [`TOTALSEGMENTATOR_STRUCTURES`].
    Structures(PathBuf),
    /// One label file and the map of its labels.
    LabelFile(PathBuf, LabelMap),
}

/// True for a file name NIfTI readers take.
fn is_nifti(name: &str) -> bool {
    name.ends_with(".nii.gz") || name.ends_with(".nii")
}

impl MaskFormat {
    /// The label map of this format's label files.
    fn label_map(&self) -> LabelMap {
        match self {
            MaskFormat::TotalSegmentator { label_map } => label_map.clone().unwrap_or_else(LabelMap::totalsegmentator),
            MaskFormat::Labels { label_map } => label_map.clone(),
        }
    }

    /// The case whose output is `path`: a label file, or a folder (see the module documentation).
    pub fn case(&self, path: &Path) -> Result<CaseMask> {
        if path.is_file() {
            return Ok(CaseMask::LabelFile(path.to_path_buf(), self.label_map()));
        }
        if !path.is_dir() {
            return Err(Error::format(path, "no such segmentation file or folder"));
        }
        let structures = matches!(self, MaskFormat::TotalSegmentator { .. });
        let present: Vec<bool> = TOTALSEGMENTATOR_STRUCTURES.iter().map(|(name, _)| path.join(name).is_file()).collect();
        if structures && present.iter().any(|&p| p) {
            if let MaskFormat::TotalSegmentator { label_map: Some(m) } = self {
                return Err(Error::format(path, format!("is a per-structure folder: {} applies to label files only", m.name)));
            }
            let missing: Vec<&str> = TOTALSEGMENTATOR_STRUCTURES.iter().zip(&present).filter(|(_, p)| !**p).map(|((name, _), _)| *name).collect();
            if !missing.is_empty() {
                return Err(Error::format(
                    path,
                    format!("missing {} (TotalSegmentator -ta heartchambers_highres writes all seven structure files)", missing.join(", ")),
                ));
            }
            return Ok(CaseMask::Structures(path.to_path_buf()));
        }
        let mut niftis = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            if entry.file_name().to_str().is_some_and(is_nifti) && entry.path().is_file() {
                niftis.push(entry.path());
            }
        }
        niftis.sort();
        let expected = if structures {
            let names: Vec<&str> = TOTALSEGMENTATOR_STRUCTURES.iter().map(|(n, _)| *n).collect();
            format!("TotalSegmentator's structure files ({}) or one label file", names.join(", "))
        } else {
            "one label file".to_string()
        };
        match niftis.len() {
            1 => Ok(CaseMask::LabelFile(niftis.remove(0), self.label_map())),
            0 => Err(Error::format(path, format!("holds no NIfTI file: expected {expected}"))),
            n => {
                let names: Vec<String> = niftis.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
                Err(Error::format(path, format!("holds {n} NIfTI files ({}): expected {expected}", names.join(", "))))
            }
        }
    }
}

impl MaskSource {
    /// Parse `totalsegmentator:DIR` or `labels:DIR`; `label_map` is required by `labels:` and
    /// replaces TotalSegmentator's `--ml` labels when given with `totalsegmentator:`.
    pub fn parse(spec: &str, label_map: Option<LabelMap>) -> Result<Self> {
        let bad = || Error::invalid(format!("'{spec}': expected totalsegmentator:DIR or labels:DIR (with a label map)"));
        let (kind, dir) = spec.split_once(':').ok_or_else(bad)?;
        if dir.is_empty() {
            return Err(bad());
        }
        let format = match (kind, label_map) {
            ("totalsegmentator", label_map) => MaskFormat::TotalSegmentator { label_map },
            ("labels", Some(label_map)) => MaskFormat::Labels { label_map },
            ("labels", None) => return Err(Error::invalid(format!("'{spec}': labels:DIR needs a label map (--label-map JSON)"))),
            _ => return Err(bad()),
        };
        Ok(MaskSource { format, root: PathBuf::from(dir) })
    }

    /// Patient `pid`'s segmentation: `root/<pid>/`, `root/<pid>.nii.gz` or `root/<pid>.nii`
    /// (exactly one of them).
    pub fn for_patient(&self, pid: &str) -> Result<CaseMask> {
        let candidates = [self.root.join(pid), self.root.join(format!("{pid}.nii.gz")), self.root.join(format!("{pid}.nii"))];
        let found: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
        match found.as_slice() {
            [one] => self.format.case(one),
            [] => Err(Error::format(&self.root, format!("holds no segmentation of patient {pid} (expected {pid}/ or {pid}.nii.gz)"))),
            several => {
                let names: Vec<String> = several.iter().map(|p| p.display().to_string()).collect();
                Err(Error::format(&self.root, format!("holds several segmentations of patient {pid}: {}", names.join(", "))))
            }
        }
    }
}

impl fmt::Display for MaskSource {
    /// The spec and the label map in use (a settings record changes when either does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.format {
            MaskFormat::TotalSegmentator { .. } => "totalsegmentator",
            MaskFormat::Labels { .. } => "labels",
        };
        write!(f, "{kind}:{} (label files: {})", self.root.display(), self.format.label_map())
    }
}

impl CaseMask {
    /// The files an import of this case reads (a rerun is due when one changes).
    pub fn inputs(&self) -> Vec<PathBuf> {
        match self {
            CaseMask::Structures(dir) => TOTALSEGMENTATOR_STRUCTURES.iter().map(|(name, _)| dir.join(name)).collect(),
            CaseMask::LabelFile(file, map) => std::iter::once(file.clone()).chain(map.file.clone()).collect(),
        }
    }
}

/// `labels` (read from `path`) on the grid of `cta`: copied when the grids match within
/// 1e-3 mm, else resampled by nearest neighbour in world coordinates (0 outside).
fn onto_grid(labels: Volume, cta: &Volume, path: &Path) -> Result<Volume> {
    if labels.same_grid(cta, 1e-3) {
        return Ok(Volume::new(labels.data, cta.geometry));
    }
    if labels.geometry.world_to_index_fn().is_none() {
        return Err(Error::format(path, "has a singular direction matrix: its voxels have no world position"));
    }
    Ok(labels.resample_to_grid(cta.shape(), &cta.geometry, Interpolation::Nearest, 0.0))
}

/// The chamber mask of `case` on the grid of `cta` (labels of docs/design.md §3).
pub fn import_mask(case: &CaseMask, cta: &Volume) -> Result<Volume> {
    match case {
        CaseMask::LabelFile(file, map) => {
            let labels = read_input(file, "label file")?;
            onto_grid(map.apply(&labels, file)?, cta, file)
        }
        CaseMask::Structures(dir) => {
            let mut out = Volume::filled(cta.shape(), 0.0, cta.geometry);
            // Last to first, so that the first structure's label is the one left on a voxel.
            for (name, label) in TOTALSEGMENTATOR_STRUCTURES.iter().rev() {
                let path = dir.join(name);
                let structure = read_input(&path, "TotalSegmentator structure file")?;
                if let Some(v) = structure.data.iter().find(|&&v| v != 0.0 && v != 1.0) {
                    return Err(Error::format(&path, format!("holds the value {v}: a structure file is binary (0 or 1)")));
                }
                let placed = onto_grid(structure, cta, &path)?;
                ndarray::Zip::from(&mut out.data).and(&placed.data).for_each(|o, &s| {
                    if s == 1.0 {
                        *o = *label as f32;
                    }
                });
            }
            Ok(out)
        }
    }
}

/// Import `case` for the CTA file `input` into `output` (uint8, the CTA's geometry), and its
/// largest-component version into `connected` when given, as `segment_file` does.
pub fn import_file(case: &CaseMask, input: &Path, output: &Path, connected: Option<&Path>) -> Result<Vec<PathBuf>> {
    mask_file(input, output, connected, |cta| import_mask(case, cta))
}

/// Import every patient of `input` (`3.sorted_nii`) from `source` into `output`
/// (`3.sorted_mask`), writing and checking what `segment_cohort` does; a patient without a
/// usable segmentation fails alone.
pub fn import_cohort(source: &MaskSource, input: &Path, output: &Path, qc: &QcPolicy) -> Result<StageReport> {
    mask_cohort(input, output, qc, |pid, cta| import_mask(&source.for_patient(pid)?, cta))
}
