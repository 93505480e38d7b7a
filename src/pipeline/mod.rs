//! `cta2mbf pipeline`: a raw DICOM dump to training pairs in one call — sort, extract,
//! convert, register, segment, connected, myocardium, crop — per patient, resumable.
//!
//! Each stage is a [`PatientStage`] implemented beside its code, which declares the files a
//! patient's run reads and writes; the pipeline only loops over them. A single process runs
//! the stages one after the other over all patients (in parallel, except segmentation, whose
//! network uses every core), holding every patient's lock ([`claim`]); the ranks of an MPI job
//! share the patients instead, each running one patient's stages at a time ([`spread`]).
//! Before a patient's stage runs, its manifest (`ROOT/pipeline/<pid>.json`, [`manifest`]) is
//! asked whether the stage already ran with the same settings on the same declared inputs and
//! its declared outputs are untouched; then it is skipped. A stage that reruns first clears
//! what an earlier attempt left (its output folders, and temporary files beside its output
//! files), so a killed run, rerun, ends with the same files as an uninterrupted one. A patient
//! whose stage fails is reported and its later stages are not run; the other patients go on.

pub mod claim;
pub mod manifest;
pub mod report;
pub mod spread;

pub use report::{Outcome, PipelineReport};

use crate::cohort::{self, Cohort};
use crate::distributed::Group;
use crate::error::{Error, Result};
use crate::preprocess::connected::ConnectedStage;
use crate::preprocess::convert::ConvertStage;
use crate::preprocess::crop::CropStage;
use crate::preprocess::extract::ExtractStage;
use crate::preprocess::mask_import::MaskSource;
use crate::preprocess::mask_qc::{MaskQc, QcPolicy};
use crate::preprocess::myocardium::MyocardiumStage;
use crate::preprocess::segment::SegmentStage;
use crate::preprocess::sort::SortStage;
use crate::preprocess::stage::{PatientStage, StagePath, patient_folders};
use crate::register::{self, files::RegisterStage};
use burn::tensor::Device;
use manifest::{FileStamp, Manifest, StageRecord};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The stages, in order; their names are the subcommands'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Stage {
    /// `raw/<pid>/**` → `0.ori_3/<pid>/<suid>/<n>.dcm`.
    Sort,
    /// `0.ori_3/<pid>` → `3.sorted_dcm/<pid>/{CTA,BF,AVG,MIP}/<suid>/`.
    Extract,
    /// `3.sorted_dcm/<pid>` → `3.sorted_nii/<pid>/*.nii.gz`.
    Convert,
    /// `3.sorted_nii/<pid>` → `4.registration_batch/<pid>/`.
    Register,
    /// `3.sorted_nii/<pid>/CTA.nii.gz` → `3.sorted_mask/<pid>/CTA/{CTA,CTA_MASK}.nii.gz`.
    Segment,
    /// `CTA_MASK` → `CTA_MASK_connected`.
    Connected,
    /// registered BF inside the myocardium → `5.mbf_myocardium/<pid>/registration_cta_mip_bf_myocardium.nii.gz`.
    Myocardium,
    /// → `5.mbf_myocardium/<pid>/cropped_*.nii.gz`.
    Crop,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 8] = [Stage::Sort, Stage::Extract, Stage::Convert, Stage::Register, Stage::Segment, Stage::Connected, Stage::Myocardium, Stage::Crop];

    /// The subcommand name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Sort => "sort",
            Stage::Extract => "extract",
            Stage::Convert => "convert",
            Stage::Register => "register",
            Stage::Segment => "segment",
            Stage::Connected => "connected",
            Stage::Myocardium => "myocardium",
            Stage::Crop => "crop",
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The raw dump, one folder per patient (the input of `sort`).
    pub raw: PathBuf,
    /// The cohort root the stages fill.
    pub root: PathBuf,
    /// Annotation table naming each patient's four series (else chosen by ImageType).
    pub annotation: Option<PathBuf>,
    /// The chamber-segmentation model (checkpoint, run folder, shipped model folder or a
    /// reference `.pth`), used when `masks` is not given.
    pub seg_model: PathBuf,
    /// Another tool's segmentations to import instead of running the network.
    pub masks: Option<MaskSource>,
    /// First stage to run.
    pub from: Stage,
    /// Last stage to run.
    pub to: Stage,
    /// Rerun every stage, even the up-to-date ones.
    pub force: bool,
    /// Registration settings.
    pub register: register::Settings,
    /// Refuse DICOM series that do not form a volume (as `convert --strict`).
    pub strict: bool,
    /// Quality control of the connected masks: its ranges, and whether a patient whose mask
    /// fails goes on to myocardium and crop.
    pub qc: QcPolicy,
}

/// What the pipeline tells while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    /// A stage starts over this many patients.
    Stage(Stage, usize),
    /// A patient's stage ended.
    Patient(Stage, String, Outcome),
}

/// The stage objects of a run, in the order of [`Stage::ALL`] (indexed by it): what `o` says each runs with
/// (an invalid registration setting or an unreadable annotation table is an error here).
pub fn stages(o: &Options, device: &Device) -> Result<Vec<Box<dyn PatientStage>>> {
    Ok(vec![
        Box::new(SortStage { raw: o.raw.clone() }),
        Box::new(ExtractStage::new(o.annotation.clone())?),
        Box::new(ConvertStage { strict: o.strict }),
        Box::new(RegisterStage::new(o.register.clone())?),
        Box::new(SegmentStage::new(o.seg_model.clone(), o.masks.clone(), device.clone())),
        Box::new(ConnectedStage { qc: o.qc.clone() }),
        Box::new(MyocardiumStage),
        Box::new(CropStage),
    ])
}

/// Remove the temporary files (`.tmp-*`, see `io::atomic`) a killed run left in `folder`.
fn remove_temporaries(folder: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Ok(()) };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") && entry.path().is_file() {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Clear what an earlier attempt at the outputs left: a folder output entirely, the temporary
/// files beside an output file.
fn clear_outputs(outputs: &[StagePath]) -> Result<()> {
    for output in outputs {
        match output {
            StagePath::Folder(folder) if folder.exists() => std::fs::remove_dir_all(folder).map_err(|e| Error::io(folder, e))?,
            StagePath::Folder(_) => {}
            StagePath::File(file) => remove_temporaries(file.parent().unwrap_or(Path::new(".")))?,
        }
    }
    Ok(())
}

/// One patient's stage: skipped when up to date, else (re)run and recorded; then its gate.
fn run_stage(name: &str, stage: &dyn PatientStage, pid: &str, c: &Cohort, force: bool) -> Outcome {
    let manifest_path = c.root.join(report::MANIFEST_FOLDER).join(format!("{pid}.json"));
    let started = Instant::now();
    let result = (|| -> Result<Outcome> {
        let settings = format!("cta2mbf {} {} {}", env!("CARGO_PKG_VERSION"), name, stage.settings());
        let inputs = FileStamp::all(&StagePath::files(&stage.inputs(c, pid)?)?)?;
        let mut manifest = Manifest::read(&manifest_path);
        if !force && manifest.up_to_date(name, &settings, &inputs) {
            return Ok(Outcome::Skipped);
        }
        // Forget the record first: a run killed from here on leaves the stage to redo.
        if manifest.stages.remove(name).is_some() {
            manifest.write(&manifest_path)?;
        }
        let outputs = stage.outputs(c, pid);
        clear_outputs(&outputs)?;
        let run = crate::error::panic_boundary(|| stage.run(c, pid))?;
        let declared = StagePath::files(&outputs)?;
        if let Some(file) = run.written.iter().find(|f| !declared.contains(f)) {
            return Err(Error::format(file, format!("written by the {name} stage, which does not declare it among its outputs")));
        }
        manifest.stages.insert(name.into(), StageRecord { settings, inputs, outputs: FileStamp::all(&declared)? });
        manifest.write(&manifest_path)?;
        Ok(Outcome::Done { seconds: started.elapsed().as_secs_f64(), note: run.note })
    })();
    match result.and_then(|outcome| Ok(stage.gate(c, pid)?.map_or(outcome, Outcome::QcFailed))) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The patients to process: the folders of the first stage's input (the ignored entries'
/// paths as text, so that the list travels between ranks).
fn patients(name: &str, first: &dyn PatientStage, c: &Cohort) -> Result<(Vec<String>, Vec<(PathBuf, String)>)> {
    let folder = first.patients(c);
    if !folder.is_dir() {
        return Err(Error::format(&folder, format!("pipeline --from {name}: no such folder")));
    }
    let (found, ignored) = patient_folders(&folder)?;
    if found.is_empty() {
        return Err(Error::format(&folder, "holds no patient folders"));
    }
    let ignored = ignored.into_iter().map(|(path, why)| (PathBuf::from(path.to_string_lossy().into_owned()), why)).collect();
    Ok((found.into_iter().map(|(pid, _)| pid).collect(), ignored))
}

/// What every patient's stages run with: the stage objects (indexed by [`Stage`]), the
/// selected stages, checked ready, and where the run tells what happens.
struct Run<'a> {
    all: Vec<Box<dyn PatientStage>>,
    selected: Vec<Stage>,
    cohort: Cohort,
    force: bool,
    events: &'a (dyn Fn(Event) + Sync),
}

impl<'a> Run<'a> {
    fn new(o: &Options, device: &Device, events: &'a (dyn Fn(Event) + Sync)) -> Result<Run<'a>> {
        if o.from > o.to {
            return Err(Error::invalid(format!("--from {} comes after --to {}", o.from.name(), o.to.name())));
        }
        let all = stages(o, device)?;
        let selected: Vec<Stage> = Stage::ALL.into_iter().filter(|s| (o.from..=o.to).contains(s)).collect();
        for &stage in &selected {
            all[stage as usize].ready()?;
        }
        Ok(Run { all, selected, cohort: Cohort::new(&o.root), force: o.force, events })
    }

    /// Patient `pid`'s `stage` after its `previous` stages' outcomes: not run when one of them
    /// failed or did not run.
    fn stage(&self, stage: Stage, pid: &str, previous: &[Outcome]) -> Outcome {
        let blocked = previous.iter().any(|p| p.is_failure() || *p == Outcome::NotRun);
        let outcome = if blocked { Outcome::NotRun } else { run_stage(stage.name(), &*self.all[stage as usize], pid, &self.cohort, self.force) };
        (self.events)(Event::Patient(stage, pid.to_string(), outcome.clone()));
        outcome
    }

    /// Stage after stage, each over all patients (in parallel where the stage allows): how a
    /// single process runs.
    fn stage_major(&self, pids: &[String]) -> Vec<Vec<Outcome>> {
        let mut outcomes: Vec<Vec<Outcome>> = vec![Vec::new(); pids.len()];
        for &stage in &self.selected {
            (self.events)(Event::Stage(stage, pids.len()));
            let one = |(pid, previous): (&String, &Vec<Outcome>)| self.stage(stage, pid, previous);
            let results: Vec<Outcome> = if self.all[stage as usize].parallel() {
                pids.par_iter().zip(&outcomes).map(one).collect()
            } else {
                pids.iter().zip(&outcomes).map(one).collect()
            };
            for (o, r) in outcomes.iter_mut().zip(results) {
                o.push(r);
            }
        }
        outcomes
    }

    /// Every selected stage of one patient: how a rank of a job runs the patients it claims.
    fn patient(&self, pid: &str) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(self.selected.len());
        for &stage in &self.selected {
            let outcome = self.stage(stage, pid, &outcomes);
            outcomes.push(outcome);
        }
        outcomes
    }
}

/// Run the stages `from..=to` for every patient; `device` runs the segmentation network.
/// Writes `ROOT/pipeline_report.{json,md}` and returns the report. In a group of several
/// ranks (an MPI job) the patients are spread over the ranks ([`spread`]), every error is
/// every rank's, each rank returns the whole report and rank 0 writes it.
pub fn run_pipeline(o: &Options, device: &Device, group: &Group, events: &(dyn Fn(Event) + Sync)) -> Result<PipelineReport> {
    let run = group.agree(Run::new(o, device, events))?;
    let c = &run.cohort;
    let (pids, ignored) = spread::listed(group, || patients(o.from.name(), &*run.all[o.from as usize], c))?;
    let (outcomes, _locks) = if group.is_distributed() {
        let (mine, locks) = group.agree(spread::run_claimed(&pids, c, |pid| run.patient(pid)))?;
        (spread::gather(group, &mine, &pids, c, run.selected.len())?, locks)
    } else {
        let locks = claim::claim_all(c, &pids)?;
        (run.stage_major(&pids), locks)
    };
    let qc = pids.iter().filter_map(|pid| MaskQc::read(&c.mask(pid, cohort::mask::QC)).ok().map(|q| (pid.clone(), q))).collect();
    let report = PipelineReport { stages: run.selected.clone(), patients: pids.into_iter().zip(outcomes).collect(), ignored, qc };
    group.agree(if group.is_root() { report.write(&o.root) } else { Ok(()) })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_stage_object_per_stage() {
        let o = Options {
            raw: "raw".into(),
            root: "root".into(),
            annotation: None,
            seg_model: "model".into(),
            masks: None,
            from: Stage::Sort,
            to: Stage::Crop,
            force: false,
            register: register::Settings::default(),
            strict: false,
            qc: QcPolicy::default(),
        };
        assert_eq!(stages(&o, &Device::flex()).unwrap().len(), Stage::ALL.len());
    }
}
