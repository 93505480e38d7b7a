//! `cta2mbf pipeline`: a raw DICOM dump to training pairs in one call — sort, extract,
//! convert, register, segment, connected, myocardium, crop — per patient, resumable.
//!
//! Stages run one after the other over all patients (in parallel, except segmentation,
//! whose network uses every core). Before a patient's stage runs, its manifest
//! (`ROOT/pipeline/<pid>.json`, [`manifest`]) is asked whether the stage already ran with the
//! same settings on the same inputs and its outputs are untouched; then it is skipped. A
//! stage that reruns first clears what an earlier attempt left (for sort, extract and convert,
//! whose outputs are a folder), so a killed run, rerun, ends with the same files as an
//! uninterrupted one. A patient whose stage fails is reported and its later stages are not run;
//! the other patients go on.

pub mod manifest;
pub mod report;

pub use report::{Outcome, PipelineReport};

use crate::cohort::{self, Cohort};
use crate::error::{Error, Result};
use crate::infer::Segmenter;
use crate::preprocess::annotation::Annotation;
use crate::preprocess::connected::{DEFAULT_LABELS, connected_file};
use crate::preprocess::extract::{ExtractOptions, extract_patient};
use crate::preprocess::mask_import::{MaskSource, import_file};
use crate::preprocess::mask_qc::{MaskQc, QcPolicy, check_files};
use crate::preprocess::stage::{copy_atomically, patient_folders};
use crate::preprocess::{convert, crop, myocardium, segment, sort};
use crate::register;
use burn::tensor::Device;
use manifest::{FileStamp, Manifest, StageRecord, files_under};
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

/// The settings string of a stage (recorded in the manifest; a change reruns the stage).
fn settings_of(stage: Stage, o: &Options) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let detail = match stage {
        Stage::Extract => format!("min_files {}, annotation {:?}", crate::preprocess::extract::DEFAULT_MIN_FILES, o.annotation),
        Stage::Convert => format!("strict {}", o.strict),
        Stage::Register => serde_json::to_string(&o.register).expect("settings serialise"),
        Stage::Segment => match &o.masks {
            Some(source) => format!("masks {source}"),
            None => format!("model {}", o.seg_model.display()),
        },
        Stage::Connected => format!("labels {DEFAULT_LABELS:?}, qc {}", serde_json::to_string(&o.qc.ranges).expect("ranges serialise")),
        Stage::Myocardium => format!("label {}", myocardium::MYOCARDIUM_LABEL),
        Stage::Sort | Stage::Crop => String::new(),
    };
    format!("cta2mbf {version} {} {detail}", stage.name())
}

/// The input files of a patient's stage (their stamps decide whether it reruns).
fn inputs_of(stage: Stage, pid: &str, o: &Options) -> Result<Vec<PathBuf>> {
    let c = Cohort::new(&o.root);
    Ok(match stage {
        Stage::Sort => files_under(&o.raw.join(pid))?,
        Stage::Extract => {
            let mut f = files_under(&o.root.join(cohort::ORI).join(pid))?;
            f.extend(o.annotation.iter().cloned());
            f
        }
        Stage::Convert => files_under(&o.root.join(cohort::SORTED_DCM).join(pid))?,
        Stage::Register => cohort::MODALITIES.iter().map(|m| c.sorted_nii(pid, m)).collect(),
        Stage::Segment => {
            let mut f = vec![c.sorted_nii(pid, "CTA")];
            match &o.masks {
                Some(source) => f.extend(source.for_patient(pid)?.inputs()),
                None => f.extend(if o.seg_model.is_dir() { files_under(&o.seg_model)? } else { vec![o.seg_model.clone()] }),
            }
            f
        }
        Stage::Connected => vec![c.mask(pid, cohort::mask::MASK)],
        Stage::Myocardium => vec![c.registration(pid, cohort::registration::BF), c.mask(pid, cohort::mask::CONNECTED)],
        Stage::Crop => vec![c.registration(pid, cohort::registration::CTA), c.cropped(pid, cohort::cropped::MYOCARDIUM_BF), c.mask(pid, cohort::mask::CONNECTED)],
    })
}

/// The folder a rerun of the stage clears first (the stages whose outputs are a folder).
fn output_folder(stage: Stage, pid: &str, root: &Path) -> Option<PathBuf> {
    match stage {
        Stage::Sort => Some(root.join(cohort::ORI).join(pid)),
        Stage::Extract => Some(root.join(cohort::SORTED_DCM).join(pid)),
        Stage::Convert => Some(root.join(cohort::SORTED_NII).join(pid)),
        _ => None,
    }
}

/// The folder a patient's stage writes its files into (where a killed run may have left
/// temporary files).
fn write_folder(stage: Stage, pid: &str, root: &Path) -> PathBuf {
    match stage {
        Stage::Sort | Stage::Extract | Stage::Convert => output_folder(stage, pid, root).expect("folder stages"),
        Stage::Register => root.join(cohort::REGISTRATION).join(pid),
        Stage::Segment | Stage::Connected => root.join(cohort::SORTED_MASK).join(pid).join("CTA"),
        Stage::Myocardium | Stage::Crop => root.join(cohort::MBF_MYOCARDIUM).join(pid),
    }
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

/// Run one patient's stage; the files written, and a note worth reporting (skipped files, warnings).
fn execute(stage: Stage, pid: &str, o: &Options, annotation: Option<&Annotation>, model: &mut Model) -> Result<(Vec<PathBuf>, Option<String>)> {
    let c = Cohort::new(&o.root);
    match stage {
        Stage::Sort => {
            let r = sort::sort_patient(pid, &o.raw.join(pid), &o.root.join(cohort::ORI))?;
            if r.series.is_empty() {
                return Err(Error::format(o.raw.join(pid), "holds no DICOM image"));
            }
            let note = (!r.skipped.is_empty()).then(|| format!("{} files skipped (first: {} — {})", r.skipped.len(), r.skipped[0].0.display(), r.skipped[0].1));
            Ok((files_under(&o.root.join(cohort::ORI).join(pid))?, note))
        }
        Stage::Extract => {
            let options = ExtractOptions { annotation: annotation.cloned(), ..Default::default() };
            let r = extract_patient(pid, &o.root.join(cohort::ORI).join(pid), &o.root.join(cohort::SORTED_DCM), &options);
            if !r.problems.is_empty() {
                return Err(Error::invalid(r.problems.join("; ")));
            }
            Ok((files_under(&o.root.join(cohort::SORTED_DCM).join(pid))?, None))
        }
        Stage::Convert => {
            let r = convert::convert_patient(pid, &o.root.join(cohort::SORTED_DCM).join(pid), &o.root.join(cohort::SORTED_NII), o.strict);
            let mut written = Vec::new();
            let mut notes = Vec::new();
            for (m, result) in r.results {
                let converted = result?;
                notes.extend(converted.warnings.iter().map(|w| format!("{m}: {w}")));
                written.push(converted.output);
            }
            Ok((written, (!notes.is_empty()).then(|| notes.join("; "))))
        }
        Stage::Register => {
            let s = register::files::run_job(&register::files::patient_job(&c, pid), &o.register, &|_| {})?;
            let note = s.registration.as_ref().map(|r| format!("similarity {:.3}, min det J {:.3}", r.similarity, r.min_jacobian));
            Ok((s.written, note))
        }
        Stage::Segment => {
            let cta = c.sorted_nii(pid, "CTA");
            let out = c.mask(pid, cohort::mask::MASK);
            let mut written = match &o.masks {
                Some(source) => import_file(&source.for_patient(pid)?, &cta, &out, None)?,
                None => segment::segment_file(model.get(&o.seg_model)?, &cta, &out, None)?,
            };
            copy_atomically(&cta, &c.mask(pid, cohort::mask::CTA))?;
            written.push(c.mask(pid, cohort::mask::CTA));
            Ok((written, None))
        }
        Stage::Connected => {
            let (raw, out, figures) = (c.mask(pid, cohort::mask::MASK), c.mask(pid, cohort::mask::CONNECTED), c.mask(pid, cohort::mask::QC));
            connected_file(&raw, &out, &DEFAULT_LABELS)?;
            check_files(&out, Some(&raw), &figures, &o.qc.ranges)?;
            Ok((vec![out, figures], None))
        }
        Stage::Myocardium => Ok((vec![myocardium::myocardium_patient(&c, pid)?], None)),
        Stage::Crop => Ok((crop::crop_patient(&c, pid)?, None)),
    }
}

/// The segmentation network, loaded when first needed (never when every segmentation is up to date).
struct Model<'a> {
    device: &'a Device,
    loaded: Option<Segmenter>,
}

impl Model<'_> {
    fn get(&mut self, path: &Path) -> Result<&Segmenter> {
        if self.loaded.is_none() {
            self.loaded = Some(Segmenter::load(path, self.device)?);
        }
        Ok(self.loaded.as_ref().expect("just loaded"))
    }
}

/// One patient's stage: skipped when up to date, else (re)run and recorded.
fn run_stage(stage: Stage, pid: &str, o: &Options, annotation: Option<&Annotation>, model: &mut Model) -> Outcome {
    let manifest_path = o.root.join(report::MANIFEST_FOLDER).join(format!("{pid}.json"));
    let started = Instant::now();
    let result = (|| -> Result<Outcome> {
        let settings = settings_of(stage, o);
        let inputs = FileStamp::all(&inputs_of(stage, pid, o)?)?;
        let mut manifest = Manifest::read(&manifest_path);
        if !o.force && manifest.up_to_date(stage.name(), &settings, &inputs) {
            return Ok(Outcome::Skipped);
        }
        // Forget the record first: a run killed from here on leaves the stage to redo.
        if manifest.stages.remove(stage.name()).is_some() {
            manifest.write(&manifest_path)?;
        }
        if let Some(folder) = output_folder(stage, pid, &o.root).filter(|f| f.exists()) {
            std::fs::remove_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        }
        remove_temporaries(&write_folder(stage, pid, &o.root))?;
        let (written, note) = crate::error::panic_boundary(|| execute(stage, pid, o, annotation, model))?;
        manifest.stages.insert(stage.name().into(), StageRecord { settings, inputs, outputs: FileStamp::all(&written)? });
        manifest.write(&manifest_path)?;
        Ok(Outcome::Done { seconds: started.elapsed().as_secs_f64(), note })
    })();
    match result {
        Ok(outcome) if stage == Stage::Connected => qc_gate(outcome, pid, o),
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The connected stage's outcome after its mask's quality control (read back from the
/// figures the stage wrote, so a skipped stage is judged as a fresh one): a failing mask stops
/// the patient unless failures are accepted.
fn qc_gate(outcome: Outcome, pid: &str, o: &Options) -> Outcome {
    let figures = Cohort::new(&o.root).mask(pid, cohort::mask::QC);
    match MaskQc::read(&figures) {
        Ok(qc) if !o.qc.admits(&qc) => Outcome::QcFailed(qc.failures.join("; ")),
        Ok(_) => outcome,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The patients to process: the folders of the first stage's input.
fn patients(o: &Options) -> Result<(Vec<String>, Vec<(PathBuf, String)>)> {
    let folder = match o.from {
        Stage::Sort => o.raw.clone(),
        Stage::Extract => o.root.join(cohort::ORI),
        Stage::Convert => o.root.join(cohort::SORTED_DCM),
        Stage::Register | Stage::Segment => o.root.join(cohort::SORTED_NII),
        Stage::Connected | Stage::Myocardium | Stage::Crop => o.root.join(cohort::SORTED_MASK),
    };
    if !folder.is_dir() {
        return Err(Error::format(&folder, format!("pipeline --from {}: no such folder", o.from.name())));
    }
    let (found, ignored) = patient_folders(&folder)?;
    if found.is_empty() {
        return Err(Error::format(&folder, "holds no patient folders"));
    }
    Ok((found.into_iter().map(|(pid, _)| pid).collect(), ignored))
}

/// Run the stages `from..=to` for every patient; `device` runs the segmentation network.
/// Writes `ROOT/pipeline_report.{json,md}` and returns the report.
pub fn run_pipeline(o: &Options, device: &Device, events: &(dyn Fn(Event) + Sync)) -> Result<PipelineReport> {
    if o.from > o.to {
        return Err(Error::invalid(format!("--from {} comes after --to {}", o.from.name(), o.to.name())));
    }
    o.register.validate()?;
    let stages: Vec<Stage> = Stage::ALL.into_iter().filter(|s| (o.from..=o.to).contains(s)).collect();
    if stages.contains(&Stage::Segment) && o.masks.is_none() && !o.seg_model.exists() {
        return Err(Error::format(&o.seg_model, "segmentation model not found (pass --seg-model, e.g. models/chamber_seg_phantom of the repository)"));
    }
    let annotation = o.annotation.as_deref().map(Annotation::read).transpose()?;
    let _lock = crate::io::lock::FolderLock::acquire(&o.root)?;
    let (pids, ignored) = patients(o)?;
    let mut model = Model { device, loaded: None };
    let mut outcomes: Vec<Vec<Outcome>> = vec![Vec::new(); pids.len()];
    for &stage in &stages {
        events(Event::Stage(stage, pids.len()));
        let blocked = |previous: &[Outcome]| previous.iter().any(|p| p.is_failure() || *p == Outcome::NotRun);
        let results: Vec<Outcome> = if stage == Stage::Segment {
            // One patient at a time: the network uses every core.
            let mut results = Vec::new();
            for (pid, previous) in pids.iter().zip(&outcomes) {
                let outcome = if blocked(previous) { Outcome::NotRun } else { run_stage(stage, pid, o, annotation.as_ref(), &mut model) };
                events(Event::Patient(stage, pid.clone(), outcome.clone()));
                results.push(outcome);
            }
            results
        } else {
            pids.par_iter()
                .zip(&outcomes)
                .map(|(pid, previous)| {
                    let outcome = if blocked(previous) {
                        Outcome::NotRun
                    } else {
                        run_stage(stage, pid, o, annotation.as_ref(), &mut Model { device, loaded: None })
                    };
                    events(Event::Patient(stage, pid.clone(), outcome.clone()));
                    outcome
                })
                .collect()
        };
        for (o, r) in outcomes.iter_mut().zip(results) {
            o.push(r);
        }
    }
    let cohort = Cohort::new(&o.root);
    let qc = pids.iter().filter_map(|pid| MaskQc::read(&cohort.mask(pid, cohort::mask::QC)).ok().map(|q| (pid.clone(), q))).collect();
    let report = PipelineReport { stages, patients: pids.into_iter().zip(outcomes).collect(), ignored, qc };
    report.write(&o.root)?;
    Ok(report)
}
