//! Myocardial blood flow from the registered BF map (docs/design.md §3 step 6).

use super::stage::{PatientStage, StagePath, StageReport, StageRun, for_each_patient};
use super::{read_input, require_label_map, require_same_grid};
use crate::cohort::{self, Cohort};
use crate::error::{Error, Result};
use crate::io::{NiftiDtype, write_nifti};
use crate::volume::Volume;
use std::path::{Path, PathBuf};

/// The LV myocardium label of the chamber mask.
pub const MYOCARDIUM_LABEL: u8 = 6;
/// The value stored outside the myocardium (as the reference does).
pub const OUTSIDE: f32 = -1024.0;

/// Registered BF kept where `mask == label` and BF ≥ 0; every other voxel is −1024.
/// Both volumes must be on the same (CTA) grid, and the mask must hold the label.
pub fn extract_myocardium_mbf(bf: &Volume, mask: &Volume, label: u8) -> Result<Volume> {
    require_same_grid(bf, "registered BF", mask, "mask")?;
    if !mask.data.iter().any(|&m| m.round() == label as f32) {
        return Err(Error::invalid(format!("the mask has no voxel of label {label} (myocardium)")));
    }
    let mut out = bf.clone();
    ndarray::Zip::from(&mut out.data).and(&mask.data).for_each(|v, &m| {
        if m.round() != label as f32 || *v < 0.0 {
            *v = OUTSIDE;
        }
    });
    Ok(out)
}

/// Step 6 for one patient of a cohort: `4.registration_batch/<pid>/cta_mip_bf` and
/// `3.sorted_mask/<pid>/CTA/CTA_MASK_connected` →
/// `5.mbf_myocardium/<pid>/registration_cta_mip_bf_myocardium.nii.gz` (int16).
pub fn myocardium_patient(c: &Cohort, pid: &str) -> Result<PathBuf> {
    let (bf_path, mask_path) = (c.registration(pid, cohort::registration::BF), c.mask(pid, cohort::mask::CONNECTED));
    let bf = read_input(&bf_path, "registered BF")?;
    let mask = read_input(&mask_path, "connected chamber mask")?;
    require_label_map(&mask, &mask_path)?;
    let mbf = extract_myocardium_mbf(&bf, &mask, MYOCARDIUM_LABEL)
        .map_err(|e| Error::format(&mask_path, format!("{e} (registered BF {})", bf_path.display())))?;
    let out = c.cropped(pid, cohort::cropped::MYOCARDIUM_BF);
    write_nifti(&out, &mbf, NiftiDtype::I16)?;
    Ok(out)
}

/// [`myocardium_patient`] for every patient of `ROOT/3.sorted_mask`.
pub fn myocardium_cohort(root: &Path) -> Result<StageReport> {
    let c = Cohort::new(root);
    for_each_patient("myocardium", &root.join(cohort::SORTED_MASK), true, |pid| Ok(vec![myocardium_patient(&c, pid)?]))
}

/// The pipeline's `myocardium` stage ([`myocardium_patient`]).
#[derive(Debug, Clone, Copy)]
pub struct MyocardiumStage;

impl PatientStage for MyocardiumStage {
    fn settings(&self) -> String {
        format!("label {MYOCARDIUM_LABEL}")
    }

    fn patients(&self, c: &Cohort) -> PathBuf {
        c.root.join(cohort::SORTED_MASK)
    }

    fn inputs(&self, c: &Cohort, pid: &str) -> Result<Vec<StagePath>> {
        Ok(vec![StagePath::File(c.registration(pid, cohort::registration::BF)), StagePath::File(c.mask(pid, cohort::mask::CONNECTED))])
    }

    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath> {
        vec![StagePath::File(c.cropped(pid, cohort::cropped::MYOCARDIUM_BF))]
    }

    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun> {
        Ok(StageRun { written: vec![myocardium_patient(c, pid)?], note: None })
    }
}
