//! Step 5, **segment** (docs/design.md §3): each patient's CTA through the chamber-segmentation
//! network (or an imported segmentation, see `mask_import`) into `3.sorted_mask/<pid>/CTA/`:
//! the CTA itself (`CTA.nii.gz`, copied), the label map (`CTA_MASK.nii.gz`, uint8, CTA
//! geometry), and the map after keeping the largest component of each cleaned label
//! (`CTA_MASK_connected.nii.gz`).

use super::connected::{DEFAULT_LABELS, keep_largest_components};
use super::mask_import::{MaskSource, import_file};
use super::mask_qc::QcPolicy;
use super::read_input;
use super::stage::{PatientStage, StagePath, StageReport, StageRun, copy_atomically, for_each_patient, prepare_folders};
use crate::cohort::{self, Cohort};
use crate::error::{Error, Result};
use crate::infer::Segmenter;
use crate::io::{NiftiDtype, write_nifti};
use crate::volume::Volume;
use burn::tensor::Device;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Write the label map `mask(cta)` of the CTA file `input` into `output` (uint8, the CTA's
/// geometry); when `connected` is given, also write the connected-component version there.
pub fn mask_file(input: &Path, output: &Path, connected: Option<&Path>, mask: impl FnOnce(&Volume) -> Result<Volume>) -> Result<Vec<PathBuf>> {
    let cta = read_input(input, "CTA")?;
    let mask = mask(&cta)?;
    let cleaned = connected.map(|p| (p, keep_largest_components(&mask, &DEFAULT_LABELS)));
    write_nifti(output, &mask, NiftiDtype::U8)?;
    let mut written = vec![output.to_path_buf()];
    if let Some((path, volume)) = cleaned {
        write_nifti(path, &volume, NiftiDtype::U8)?;
        written.push(path.to_path_buf());
    }
    Ok(written)
}

/// [`mask_file`] for every patient of `input` (`3.sorted_nii/<pid>/CTA.nii.gz`) into `output`
/// (`3.sorted_mask`), with the CTA copied alongside, one patient at a time; `mask(pid, cta)`
/// gives a patient's label map. Each mask is then checked (`CTA_MASK_qc.json`; a failing
/// patient fails unless `qc` accepts it).
pub fn mask_cohort(input: &Path, output: &Path, qc: &QcPolicy, mask: impl Fn(&str, &Volume) -> Result<Volume> + Sync) -> Result<StageReport> {
    prepare_folders(input, output)?;
    for_each_patient("segment", input, false, |pid| {
        let cta = input.join(pid).join("CTA.nii.gz");
        let dir = output.join(pid).join("CTA");
        let mut written = mask_file(&cta, &dir.join(cohort::mask::MASK), Some(&dir.join(cohort::mask::CONNECTED)), |v| mask(pid, v))?;
        let copy = dir.join(cohort::mask::CTA);
        copy_atomically(&cta, &copy)?;
        written.insert(0, copy);
        written.push(qc.check_patient(&dir)?.0);
        Ok(written)
    })
}

/// Segment the CTA file `input` into `output` (uint8 labels, the CTA's geometry); when
/// `connected` is given, also write the connected-component version there.
pub fn segment_file(model: &Segmenter, input: &Path, output: &Path, connected: Option<&Path>) -> Result<Vec<PathBuf>> {
    mask_file(input, output, connected, |cta| Ok(model.segment(cta)))
}

/// Segment every patient of `input` (`3.sorted_nii/<pid>/CTA.nii.gz`) into `output`
/// (`3.sorted_mask`), one patient at a time (the network uses every core), checking each mask.
pub fn segment_cohort(model: &Segmenter, input: &Path, output: &Path, qc: &QcPolicy) -> Result<StageReport> {
    mask_cohort(input, output, qc, |_, cta| Ok(model.segment(cta)))
}

/// The pipeline's `segment` stage: `3.sorted_nii/<pid>/CTA.nii.gz` →
/// `3.sorted_mask/<pid>/CTA/{CTA,CTA_MASK}.nii.gz`, by the network (loaded when first needed,
/// never when every segmentation is up to date) or from another tool's masks. One patient at
/// a time: the network uses every core.
pub struct SegmentStage {
    /// The chamber-segmentation model (checkpoint, run folder, shipped model folder or `.pth`).
    model: PathBuf,
    /// Another tool's segmentations to import instead of running the network.
    masks: Option<MaskSource>,
    /// Where the network runs.
    device: Device,
    /// The network, once loaded.
    loaded: Mutex<Option<Segmenter>>,
}

impl SegmentStage {
    /// The stage segmenting with `model` on `device`, or importing `masks` when given.
    pub fn new(model: PathBuf, masks: Option<MaskSource>, device: Device) -> Self {
        SegmentStage { model, masks, device, loaded: Mutex::new(None) }
    }
}

impl PatientStage for SegmentStage {
    fn settings(&self) -> String {
        match &self.masks {
            Some(source) => format!("masks {source}"),
            None => format!("model {}", self.model.display()),
        }
    }

    fn patients(&self, c: &Cohort) -> PathBuf {
        c.root.join(cohort::SORTED_NII)
    }

    fn inputs(&self, c: &Cohort, pid: &str) -> Result<Vec<StagePath>> {
        let mut f = vec![StagePath::File(c.sorted_nii(pid, "CTA"))];
        match &self.masks {
            Some(source) => f.extend(source.for_patient(pid)?.inputs().into_iter().map(StagePath::File)),
            None => f.push(StagePath::file_or_folder(&self.model)),
        }
        Ok(f)
    }

    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath> {
        vec![StagePath::File(c.mask(pid, cohort::mask::MASK)), StagePath::File(c.mask(pid, cohort::mask::CTA))]
    }

    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun> {
        let cta = c.sorted_nii(pid, "CTA");
        let out = c.mask(pid, cohort::mask::MASK);
        let mut written = match &self.masks {
            Some(source) => import_file(&source.for_patient(pid)?, &cta, &out, None)?,
            None => {
                let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if loaded.is_none() {
                    *loaded = Some(Segmenter::load(&self.model, &self.device)?);
                }
                segment_file(loaded.as_ref().expect("just loaded"), &cta, &out, None)?
            }
        };
        copy_atomically(&cta, &c.mask(pid, cohort::mask::CTA))?;
        written.push(c.mask(pid, cohort::mask::CTA));
        Ok(StageRun { written, note: None })
    }

    fn parallel(&self) -> bool {
        false
    }

    fn ready(&self) -> Result<()> {
        if self.masks.is_none() && !self.model.exists() {
            return Err(Error::format(&self.model, "segmentation model not found (pass --seg-model, e.g. models/chamber_seg_phantom of the repository)"));
        }
        Ok(())
    }
}
