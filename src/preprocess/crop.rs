//! Cropping CTA, myocardium MBF and mask to the heart (docs/design.md §3 step 7).

use super::stage::{PatientStage, StagePath, StageReport, StageRun, for_each_patient};
use super::{read_input, require_label_map, require_same_grid};
use crate::cohort::{self, Cohort};
use crate::error::{Error, Result};
use crate::io::{NiftiDtype, write_nifti};
use crate::volume::Volume;
use std::path::{Path, PathBuf};

/// The four cropped volumes of `5.mbf_myocardium/<pid>/`.
#[derive(Debug, Clone)]
pub struct HeartCrop {
    /// CTA inside the heart's bounding box.
    pub cta: Volume,
    /// Myocardium MBF inside the box (−1024 outside the myocardium).
    pub mbf: Volume,
    /// Chamber mask inside the box.
    pub mask: Volume,
    /// `mbf > 0` as 0/1.
    pub mbf_mask: Volume,
}

/// Crop the three volumes to the inclusive bounding box of `mask > 0`. The crop keeps
/// spacing and direction and moves the origin to the first kept voxel.
pub fn crop_to_heart(cta: &Volume, mbf: &Volume, mask: &Volume) -> Result<HeartCrop> {
    require_same_grid(cta, "CTA", mask, "mask")?;
    require_same_grid(mbf, "myocardium MBF", mask, "mask")?;
    let (lo, hi) = mask
        .bounding_box(|v| v > 0.0)
        .ok_or_else(|| Error::invalid("the mask is empty: no heart to crop"))?;
    let size = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
    let mbf = mbf.crop(lo, size)?;
    let mbf_mask = mbf.map(|v| if v > 0.0 { 1.0 } else { 0.0 });
    Ok(HeartCrop { cta: cta.crop(lo, size)?, mbf, mask: mask.crop(lo, size)?, mbf_mask })
}

/// int16 when every value is an integer that fits, float32 otherwise.
fn value_type(v: &Volume) -> NiftiDtype {
    let fits = v.data.iter().all(|&x| x.fract() == 0.0 && (i16::MIN as f32..=i16::MAX as f32).contains(&x));
    if fits { NiftiDtype::I16 } else { NiftiDtype::F32 }
}

/// Step 7 for one patient of a cohort: `4.registration_batch/<pid>/cta`, the myocardium MBF
/// of step 6 and `CTA_MASK_connected` → `5.mbf_myocardium/<pid>/cropped_cta` (int16 when the
/// values allow), `cropped_mbf` (int16), `cropped_mask` and `cropped_mbf_mask` (uint8). Every
/// volume is computed before the first is written.
pub fn crop_patient(c: &Cohort, pid: &str) -> Result<Vec<PathBuf>> {
    let cta_path = c.registration(pid, cohort::registration::CTA);
    let mbf_path = c.cropped(pid, cohort::cropped::MYOCARDIUM_BF);
    let mask_path = c.mask(pid, cohort::mask::CONNECTED);
    let cta = read_input(&cta_path, "registered CTA")?;
    let mbf = read_input(&mbf_path, "myocardium MBF (run `myocardium` first)")?;
    let mask = read_input(&mask_path, "connected chamber mask")?;
    require_label_map(&mask, &mask_path)?;
    let crop = crop_to_heart(&cta, &mbf, &mask)
        .map_err(|e| Error::format(&mask_path, format!("{e} (CTA {}, MBF {})", cta_path.display(), mbf_path.display())))?;
    let outputs = [
        (cohort::cropped::CTA, &crop.cta, value_type(&crop.cta)),
        (cohort::cropped::MBF, &crop.mbf, NiftiDtype::I16),
        (cohort::cropped::MASK, &crop.mask, NiftiDtype::U8),
        (cohort::cropped::MBF_MASK, &crop.mbf_mask, NiftiDtype::U8),
    ];
    let mut written = Vec::new();
    for (name, volume, dtype) in outputs {
        let out = c.cropped(pid, name);
        write_nifti(&out, volume, dtype)?;
        written.push(out);
    }
    Ok(written)
}

/// [`crop_patient`] for every patient of `ROOT/3.sorted_mask`.
pub fn crop_cohort(root: &Path) -> Result<StageReport> {
    let c = Cohort::new(root);
    for_each_patient("crop", &root.join(cohort::SORTED_MASK), true, |pid| crop_patient(&c, pid))
}

/// The pipeline's `crop` stage ([`crop_patient`]).
#[derive(Debug, Clone, Copy)]
pub struct CropStage;

impl PatientStage for CropStage {
    fn patients(&self, c: &Cohort) -> PathBuf {
        c.root.join(cohort::SORTED_MASK)
    }

    fn inputs(&self, c: &Cohort, pid: &str) -> Result<Vec<StagePath>> {
        let files = [c.registration(pid, cohort::registration::CTA), c.cropped(pid, cohort::cropped::MYOCARDIUM_BF), c.mask(pid, cohort::mask::CONNECTED)];
        Ok(files.into_iter().map(StagePath::File).collect())
    }

    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath> {
        [cohort::cropped::CTA, cohort::cropped::MBF, cohort::cropped::MASK, cohort::cropped::MBF_MASK].iter().map(|f| StagePath::File(c.cropped(pid, f))).collect()
    }

    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun> {
        Ok(StageRun { written: crop_patient(c, pid)?, note: None })
    }
}
