//! Registration on files: one patient (fixed CTA, moving MIP, more series to move along) and
//! a whole cohort (`3.sorted_nii` → `4.registration_batch`). Inputs are checked first, every
//! output is written atomically, and a failing patient does not stop the others.

use super::{Event, Registration, Settings, Transform, register, warp};
use crate::cohort::{self, Cohort};
use crate::error::{Error, Result};
use crate::io::{NiftiDtype, read_nifti_image, write_nifti};
use crate::preprocess::stage::{PatientStage, StagePath, StageReport, StageRun, copy_atomically, for_each_patient};
use crate::volume::Volume;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Value given to output voxels whose point falls outside the moving image: 0 for a blood-flow
/// map (no flow measured), −1024 HU (air) for the CT images (MIP, AVG).
pub fn fill_value(path: &Path) -> f32 {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.starts_with("bf") || name.contains("_bf") { 0.0 } else { -1024.0 }
}

/// One registration job on files.
#[derive(Debug, Clone)]
pub struct Job {
    /// The fixed image (CTA): its grid is the output grid.
    pub fixed: PathBuf,
    /// The moving image the transform is found with (MIP).
    pub moving: PathBuf,
    /// More images on the moving image's grid to move with the same transform (AVG, BF).
    pub apply: Vec<PathBuf>,
    /// Output file of the moving image and of each `apply` image, in that order.
    pub outputs: Vec<PathBuf>,
    /// Where to copy the fixed image, if anywhere.
    pub fixed_copy: Option<PathBuf>,
    /// Use this saved transform instead of optimizing one.
    pub transform: Option<PathBuf>,
    /// Where to write the transform (`.tfm`) and the report (`.json`), unless reusing a transform.
    pub transform_out: PathBuf,
    /// Where to write the report.
    pub report_out: PathBuf,
}

/// What a job did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The registration, or `None` when a saved transform was applied.
    pub registration: Option<Registration>,
    /// Seconds spent resampling every moved image onto the fixed grid.
    pub resample_seconds: f64,
    /// Number of images moved onto the fixed grid.
    pub moved: usize,
    /// Files written.
    pub written: Vec<PathBuf>,
}

impl Summary {
    /// One line: time, final similarity, minimum Jacobian determinant, resampling time.
    pub fn line(&self) -> String {
        match &self.registration {
            Some(r) => format!(
                "registered in {:.1} s (similarity {:.4}, min det J {:.3}), resampled {} series in {:.1} s",
                r.seconds,
                r.similarity,
                r.min_jacobian,
                self.moved,
                self.resample_seconds
            ),
            None => format!("applied the saved transform, resampled {} series in {:.1} s", self.moved, self.resample_seconds),
        }
    }
}

/// Read a 3-D image, keeping its stored datatype; a missing file is named as `what`.
fn read_image(path: &Path, what: &str) -> Result<(Volume, NiftiDtype)> {
    if !path.is_file() {
        return Err(Error::format(path, format!("missing {what}")));
    }
    let mut image = read_nifti_image(path)?;
    if image.volumes.len() != 1 {
        return Err(Error::format(path, format!("has dimensions {:?}; the {what} must be a 3-D volume", image.header.dim)));
    }
    let volume = image.volumes.remove(0);
    let bad = volume.data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        let (index, _) = volume.data.indexed_iter().find(|(_, v)| !v.is_finite()).expect("counted above");
        return Err(Error::format(
            path,
            format!("the {what} holds {bad} NaN or infinite voxels (the first at index {:?}); registration needs finite intensities", [index.0, index.1, index.2]),
        ));
    }
    Ok((volume, image.dtype))
}

/// Run one job (see [`Job`]); `events` hears the registration's progress.
pub fn run_job(job: &Job, settings: &Settings, events: &(dyn Fn(Event) + Sync)) -> Result<Summary> {
    assert_eq!(job.outputs.len(), 1 + job.apply.len(), "one output per moved image");
    let (fixed, _) = read_image(&job.fixed, "fixed image (CTA)")?;
    let (moving, moving_dtype) = read_image(&job.moving, "moving image (MIP)")?;
    let mut moved = vec![(moving, moving_dtype, job.moving.clone())];
    for path in &job.apply {
        let (v, dtype) = read_image(path, "image to move")?;
        if !v.same_grid(&moved[0].0, 1e-3) {
            return Err(Error::format(
                path,
                format!(
                    "is on a different grid (size {:?}, origin {:?}) than the moving image {} (size {:?}, origin {:?}); the series of one perfusion study share one grid",
                    v.shape(),
                    v.geometry.origin,
                    job.moving.display(),
                    moved[0].0.shape(),
                    moved[0].0.geometry.origin
                ),
            ));
        }
        moved.push((v, dtype, path.clone()));
    }
    let (registration, transform) = match &job.transform {
        Some(t) => (None, Transform::read_tfm(t)?),
        None => {
            if super::overlap_fraction(&fixed, &moved[0].0) == 0.0 {
                return Err(Error::format(
                    &job.moving,
                    format!("does not overlap the fixed image {} at all in scanner (world) coordinates; is it the same patient?", job.fixed.display()),
                ));
            }
            let r = register(&fixed, &moved[0].0, settings, events).map_err(|e| Error::format(&job.moving, format!("registration to {} failed: {e}", job.fixed.display())))?;
            let t = r.transform.clone();
            (Some(r), t)
        }
    };
    let started = Instant::now();
    let images: Vec<(&Volume, f32)> = moved.iter().map(|(v, _, path)| (v, fill_value(path))).collect();
    let outputs = warp::resample_all(&transform, fixed.shape(), &fixed.geometry, &images)?;
    let resample_seconds = started.elapsed().as_secs_f64();
    let mut written = Vec::new();
    for ((out, (_, dtype, _)), path) in outputs.iter().zip(&moved).zip(&job.outputs) {
        let dtype = match dtype {
            NiftiDtype::F32 | NiftiDtype::F64 => NiftiDtype::F32,
            _ => NiftiDtype::I16,
        };
        write_nifti(path, out, dtype)?;
        written.push(path.clone());
    }
    if let Some(copy) = &job.fixed_copy {
        copy_atomically(&job.fixed, copy)?;
        written.push(copy.clone());
    }
    if let Some(r) = &registration {
        r.transform.write_tfm(&job.transform_out)?;
        written.push(job.transform_out.clone());
        let report = json!({
            "fixed": job.fixed,
            "moving": job.moving,
            "applied_to": job.apply,
            "transform": job.transform_out.file_name().map(|n| n.to_string_lossy().into_owned()),
            "metric": settings.metric,
            "similarity": r.similarity,
            "min_jacobian": r.min_jacobian,
            "seconds": r.seconds,
            "resample_seconds": resample_seconds,
            "levels": r.levels,
            "settings": settings,
            "transform_summary": r.transform.describe(),
        });
        let bytes = serde_json::to_vec_pretty(&report).expect("report serialises");
        crate::io::atomic::write_bytes_atomically(&job.report_out, &bytes)?;
        written.push(job.report_out.clone());
    }
    Ok(Summary { registration, resample_seconds, moved: outputs.len(), written })
}

/// The job of one cohort patient: `3.sorted_nii/<pid>/{CTA,MIP,AVG,BF}.nii.gz` →
/// `4.registration_batch/<pid>/{cta,cta_mip_mip,cta_mip_avg,cta_mip_bf}.nii.gz`, plus the
/// transform and the report.
pub fn patient_job(cohort: &Cohort, pid: &str) -> Job {
    use cohort::registration as r;
    Job {
        fixed: cohort.sorted_nii(pid, "CTA"),
        moving: cohort.sorted_nii(pid, "MIP"),
        apply: vec![cohort.sorted_nii(pid, "AVG"), cohort.sorted_nii(pid, "BF")],
        outputs: [r::MIP, r::AVG, r::BF].iter().map(|f| cohort.registration(pid, f)).collect(),
        fixed_copy: Some(cohort.registration(pid, r::CTA)),
        transform: None,
        transform_out: cohort.registration(pid, r::TRANSFORM),
        report_out: cohort.registration(pid, r::REPORT),
    }
}

/// Register every patient of `root/3.sorted_nii` (in parallel on the current thread pool);
/// `events` hears each patient's progress and `done` each patient's summary.
pub fn register_cohort(
    root: &Path,
    settings: &Settings,
    events: &(dyn Fn(&str, Event) + Sync),
    done: &(dyn Fn(&str, &Summary) + Sync),
) -> Result<StageReport> {
    settings.validate()?;
    let cohort = Cohort::new(root);
    for_each_patient("register", &root.join(cohort::SORTED_NII), true, |pid| {
        let summary = run_job(&patient_job(&cohort, pid), settings, &|e| events(pid, e))?;
        done(pid, &summary);
        Ok(summary.written)
    })
}

/// The pipeline's `register` stage: [`patient_job`] with the given settings.
#[derive(Debug, Clone)]
pub struct RegisterStage {
    /// The registration settings (validated).
    settings: Settings,
}

impl RegisterStage {
    /// The stage registering with `settings`, refused when they are invalid.
    pub fn new(settings: Settings) -> Result<Self> {
        settings.validate()?;
        Ok(RegisterStage { settings })
    }
}

impl PatientStage for RegisterStage {
    fn settings(&self) -> String {
        serde_json::to_string(&self.settings).expect("settings serialise")
    }

    fn patients(&self, c: &Cohort) -> PathBuf {
        c.root.join(cohort::SORTED_NII)
    }

    fn inputs(&self, c: &Cohort, pid: &str) -> Result<Vec<StagePath>> {
        let job = patient_job(c, pid);
        let mut files = [job.fixed, job.moving].into_iter().chain(job.apply).collect::<Vec<_>>();
        // In the order of the modalities (the manifests of earlier versions list them so).
        files.sort_by_key(|f| cohort::MODALITIES.iter().position(|m| *f == c.sorted_nii(pid, m)));
        Ok(files.into_iter().map(StagePath::File).collect())
    }

    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath> {
        let job = patient_job(c, pid);
        job.outputs.into_iter().chain(job.fixed_copy).chain([job.transform_out, job.report_out]).map(StagePath::File).collect()
    }

    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun> {
        let s = run_job(&patient_job(c, pid), &self.settings, &|_| {})?;
        let note = s.registration.as_ref().map(|r| format!("similarity {:.3}, min det J {:.3}", r.similarity, r.min_jacobian));
        Ok(StageRun { written: s.written, note })
    }
}
