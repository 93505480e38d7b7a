//! The cohort folder layout of docs/design.md §2: folder and file names are part of the interface.

use std::path::{Path, PathBuf};

/// Raw DICOM sorted by series: `0.ori_3/<pid>/<SeriesInstanceUID>/<n>.dcm`.
pub const ORI: &str = "0.ori_3";
/// The four series of each patient as DICOM: `3.sorted_dcm/<pid>/{CTA,BF,AVG,MIP}/<suid>/`.
pub const SORTED_DCM: &str = "3.sorted_dcm";
/// The four series as NIfTI: `3.sorted_nii/<pid>/{CTA,BF,AVG,MIP}.nii.gz`.
pub const SORTED_NII: &str = "3.sorted_nii";
/// Chamber masks: `3.sorted_mask/<pid>/CTA/{CTA,CTA_MASK,CTA_MASK_connected}.nii.gz`.
pub const SORTED_MASK: &str = "3.sorted_mask";
/// Registered perfusion on the CTA grid: `4.registration_batch/<pid>/{cta,cta_mip_*}.nii.gz`.
pub const REGISTRATION: &str = "4.registration_batch";
/// Cropped training pairs: `5.mbf_myocardium/<pid>/cropped_*.nii.gz`.
pub const MBF_MYOCARDIUM: &str = "5.mbf_myocardium";
/// Ground truth of a synthetic cohort: `phantom/<pid>/phantom_truth.json`.
pub const PHANTOM_TRUTH: &str = "phantom";
/// A raw hospital DICOM dump, one flat or nested folder per patient: `raw/<pid>/...`
/// (the input of `sort`; the phantom writes one with `--dicom`).
pub const RAW: &str = "raw";
/// The annotation table folder: `annotation/`.
pub const ANNOTATION: &str = "annotation";
/// The annotation table the phantom writes: `annotation/annotation.csv`.
pub const ANNOTATION_CSV: &str = "annotation.csv";

/// Slice maps of inference folders: `6.inference_slicemap/<variant>/<pid>/...`.
pub const SLICEMAP: &str = "6.inference_slicemap";
/// Scores and comparisons: `7.analysis_result/`.
pub const ANALYSIS: &str = "7.analysis_result";

/// The prefix of every inference folder's name.
pub const INFERENCE_PREFIX: &str = "6.inference_";

/// The folder name of an inference run, `6.inference_<X>x<Y>x<Z>` plus `_<suffix>`.
pub fn inference_folder_name(block: [usize; 3], suffix: Option<&str>) -> String {
    let base = format!("{INFERENCE_PREFIX}{}x{}x{}", block[0], block[1], block[2]);
    match suffix {
        Some(s) => format!("{base}_{s}"),
        None => base,
    }
}

/// File names inside an inference folder's `<pid>/` (and at its top).
pub mod inference {
    /// The input CTA on the block.
    pub const REAL_A: &str = "real_a.nii.gz";
    /// The measured MBF on the block.
    pub const REAL_B: &str = "real_b.nii.gz";
    /// The predicted MBF on the block.
    pub const FAKE_B: &str = "fake_b.nii.gz";
    /// What produced an inference folder (checkpoint, modes, block), at its top.
    pub const MANIFEST: &str = "inference.json";
}

/// The four modalities of a patient in `3.sorted_nii` / `3.sorted_dcm`.
pub const MODALITIES: [&str; 4] = ["CTA", "BF", "AVG", "MIP"];

/// File names inside `4.registration_batch/<pid>/`.
pub mod registration {
    /// The fixed image (CTA).
    pub const CTA: &str = "cta.nii.gz";
    /// MIP registered to CTA.
    pub const MIP: &str = "cta_mip_mip.nii.gz";
    /// AVG moved with the MIP→CTA transform.
    pub const AVG: &str = "cta_mip_avg.nii.gz";
    /// BF moved with the MIP→CTA transform.
    pub const BF: &str = "cta_mip_bf.nii.gz";
    /// The MIP→CTA transform as an ITK transform file (CTA point → perfusion point).
    pub const TRANSFORM: &str = "transform.tfm";
    /// What registration did: settings, levels, final similarity, minimum Jacobian, times.
    pub const REPORT: &str = "registration.json";
}

/// File names inside `3.sorted_mask/<pid>/CTA/`.
pub mod mask {
    /// The CTA the mask belongs to.
    pub const CTA: &str = "CTA.nii.gz";
    /// The raw chamber segmentation.
    pub const MASK: &str = "CTA_MASK.nii.gz";
    /// The segmentation after keeping the largest component per label.
    pub const CONNECTED: &str = "CTA_MASK_connected.nii.gz";
    /// The quality-control figures and verdict of `CONNECTED` (`preprocess::mask_qc`).
    pub const QC: &str = "CTA_MASK_qc.json";
}

/// The labels of the 8-class chamber mask (docs/design.md §3), background excluded, with
/// their names.
pub const CHAMBER_LABELS: [(u8, &str); 7] =
    [(1, "LV blood pool"), (2, "RV blood pool"), (3, "LA"), (4, "RA"), (5, "aorta"), (6, "LV myocardium"), (7, "pulmonary artery")];

/// File names inside `5.mbf_myocardium/<pid>/`.
pub mod cropped {
    /// Registered BF restricted to the myocardium (uncropped, int16).
    pub const MYOCARDIUM_BF: &str = "registration_cta_mip_bf_myocardium.nii.gz";
    /// CTA cropped to the heart.
    pub const CTA: &str = "cropped_cta.nii.gz";
    /// Myocardium MBF cropped to the heart.
    pub const MBF: &str = "cropped_mbf.nii.gz";
    /// Chamber mask cropped to the heart.
    pub const MASK: &str = "cropped_mask.nii.gz";
    /// `cropped_mbf > 0` as uint8.
    pub const MBF_MASK: &str = "cropped_mbf_mask.nii.gz";
}

/// Paths of one cohort root.
#[derive(Debug, Clone)]
pub struct Cohort {
    /// The root folder.
    pub root: PathBuf,
}

impl Cohort {
    /// A cohort rooted at `root`.
    pub fn new(root: impl AsRef<Path>) -> Self {
        Cohort { root: root.as_ref().to_path_buf() }
    }

    /// `3.sorted_nii/<pid>/<modality>.nii.gz`.
    pub fn sorted_nii(&self, pid: &str, modality: &str) -> PathBuf {
        self.root.join(SORTED_NII).join(pid).join(format!("{modality}.nii.gz"))
    }

    /// `3.sorted_mask/<pid>/CTA/<file>`.
    pub fn mask(&self, pid: &str, file: &str) -> PathBuf {
        self.root.join(SORTED_MASK).join(pid).join("CTA").join(file)
    }

    /// `4.registration_batch/<pid>/<file>`.
    pub fn registration(&self, pid: &str, file: &str) -> PathBuf {
        self.root.join(REGISTRATION).join(pid).join(file)
    }

    /// `5.mbf_myocardium/<pid>/<file>`.
    pub fn cropped(&self, pid: &str, file: &str) -> PathBuf {
        self.root.join(MBF_MYOCARDIUM).join(pid).join(file)
    }

    /// `annotation/annotation.csv`.
    pub fn annotation_table(&self) -> PathBuf {
        self.root.join(ANNOTATION).join(ANNOTATION_CSV)
    }

    /// `phantom/<pid>/phantom_truth.json`.
    pub fn phantom_truth(&self, pid: &str) -> PathBuf {
        self.root.join(PHANTOM_TRUTH).join(pid).join("phantom_truth.json")
    }

    /// Patient ids: the sub-folders of `stage`, sorted.
    pub fn patients(&self, stage: &str) -> std::io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(self.root.join(stage))? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                ids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }
}
