//! Inference over a folder of cases (`5.mbf_myocardium`): each case fitted to the block,
//! predicted in the requested norm mode, and written as `real_a`, `real_b`, `fake_b` under
//! `<out>/<pid>/` with the block's true geometry (docs/design.md §6).

use crate::predict::{Tiling, fit_to_block, predict_tiled};
use crate::data::{PairPattern, PairedDataset};
use crate::cohort::inference as files;
use crate::error::{Error, Result};
use crate::interop::GeneratorSettings;
use crate::io::atomic::write_bytes_atomically;
use crate::io::nifti::{NiftiDtype, lossless_dtype, read_nifti, write_nifti};
use crate::models::{Generator, NormMode};
use crate::store::generator as checkpoint;
use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// File names of an inference case folder, as the reference wrote them.
/// A generator ready for inference, with what is needed to run it as trained.
#[derive(Debug, Clone)]
pub struct TrainedGenerator {
    /// The network.
    pub generator: Generator,
    /// How it was trained: intensity mapping, norm mode, crop (the default inference block),
    /// pad value.
    pub settings: GeneratorSettings,
    /// Train-mode forward passes its batch norms have counted (PyTorch's
    /// `num_batches_tracked`; 0 when unknown).
    pub batches_tracked: i64,
    /// Where it was loaded from.
    pub source: PathBuf,
}

impl TrainedGenerator {
    /// Load a generator from a cta2mbf checkpoint folder (or a run folder: its `latest`; or
    /// the `net_G.bpk` inside one), or from one file: a reference `.pth` state dict, or a
    /// safetensors / burnpack file as `cta2mbf export` writes them (told apart by content).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let folder = if path.is_dir() {
            Some(path.to_path_buf())
        } else if path.file_name().is_some_and(|n| n == checkpoint::NET_G) && path.with_file_name(crate::store::STATE).is_file() {
            path.parent().map(Path::to_path_buf)
        } else {
            None
        };
        if let Some(folder) = folder {
            let dir = crate::store::resolve(&folder)?;
            let (generator, state) = checkpoint::load_generator(&dir, device)?;
            let cfg = state.config;
            return Ok(Self {
                generator,
                settings: GeneratorSettings {
                    intensity: cfg.intensity,
                    trained_norm_mode: cfg.norm_mode,
                    crop_size: cfg.crop_size,
                    sliding_window: cfg.sliding_window,
                    pad_value: cfg.augment.pad_value,
                },
                batches_tracked: if cfg.norm_mode == NormMode::Train { state.global_step as i64 } else { 0 },
                source: dir,
            });
        }
        if !path.exists() {
            return Err(crate::Error::format(path, "no such checkpoint file or folder"));
        }
        let (generator, settings) = crate::interop::load_generator_file(path, device)?;
        Ok(Self { generator, settings, batches_tracked: 0, source: path.to_path_buf() })
    }
}

/// One inference run over a folder of cases.
#[derive(Debug, Clone)]
pub struct InferJob {
    /// Folder of case folders (e.g. `ROOT/5.mbf_myocardium`).
    pub data_root: PathBuf,
    /// Input and target file names in each case folder.
    pub pattern: PairPattern,
    /// Output folder (one sub-folder per case).
    pub out: PathBuf,
    /// The block each case is fitted to (sizes multiples of 8).
    pub block: [usize; 3],
    /// Norm mode of the forward passes.
    pub mode: NormMode,
    /// Centred block or sliding windows.
    pub tiling: Tiling,
    /// Only these cases, when given.
    pub cases: Option<Vec<String>>,
}

/// What an inference run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InferReport {
    /// Cases written.
    pub written: Vec<String>,
    /// `(pid, reason)` for cases that failed; the others went on.
    pub failed: Vec<(String, String)>,
    /// `(pid, reason)` for case folders without the input or target file.
    pub skipped: Vec<(String, String)>,
}

impl std::fmt::Display for InferReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "infer: {} case(s) written", self.written.len())?;
        for (pid, why) in self.skipped.iter().chain(&self.failed) {
            write!(f, "\n  {pid}: {why}")?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Manifest<'a> {
    checkpoint: &'a Path,
    trained_norm_mode: NormMode,
    norm_mode: NormMode,
    block: [usize; 3],
    tiling: Tiling,
    cases: &'a [String],
}

/// Run `model` over the cases of `job`, calling `progress(done, total, pid)` after each.
/// A case that cannot be read or written is reported in the result and the others go on.
pub fn infer_cohort(
    model: &TrainedGenerator,
    job: &InferJob,
    device: &Device,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<InferReport> {
    let m = model.generator.config().size_multiple();
    if job.block.iter().any(|&b| b == 0 || b % m != 0) {
        return Err(Error::invalid(format!("block {:?}: every size must be a positive multiple of {m}", job.block)));
    }
    let data = PairedDataset::scan(&job.data_root, &job.pattern)?;
    let mut report = InferReport { skipped: data.skipped, ..Default::default() };
    let mut pairs = data.pairs;
    if let Some(wanted) = &job.cases {
        if let Some(missing) = wanted.iter().find(|id| !pairs.iter().any(|p| &p.pid == *id)) {
            return Err(Error::invalid(format!("case '{missing}' is not among the complete cases of {}", job.data_root.display())));
        }
        pairs.retain(|p| wanted.contains(&p.pid));
    }
    if pairs.is_empty() {
        return Err(Error::format(&job.data_root, format!("no case folder holds both {} and {}", job.pattern.src, job.pattern.dst)));
    }
    std::fs::create_dir_all(&job.out).map_err(|e| Error::io(&job.out, e))?;
    let total = pairs.len();
    for (i, pair) in pairs.iter().enumerate() {
        let result = crate::error::panic_boundary(|| -> Result<()> {
            let src = fit_to_block(&read_nifti(&pair.src)?, job.block, job.tiling, model.settings.pad_value);
            let dst = fit_to_block(&read_nifti(&pair.dst)?, job.block, job.tiling, model.settings.pad_value);
            if !src.same_grid(&dst, 1e-3) {
                return Err(Error::format(&pair.dst, format!("grid {:?} does not match {}", dst.shape(), pair.src.display())));
            }
            // A fresh copy per case: train-mode passes must not carry statistics across cases.
            let g = model.generator.valid();
            let fake = predict_tiled(&g, &src, job.block, job.tiling, job.mode, &model.settings.intensity, device);
            let dir = job.out.join(&pair.pid);
            write_nifti(dir.join(files::REAL_A), &src, lossless_dtype(&src))?;
            write_nifti(dir.join(files::REAL_B), &dst, lossless_dtype(&dst))?;
            write_nifti(dir.join(files::FAKE_B), &fake, NiftiDtype::F32)
        });
        match result {
            Ok(()) => report.written.push(pair.pid.clone()),
            Err(e) => report.failed.push((pair.pid.clone(), e.to_string())),
        }
        progress(i + 1, total, &pair.pid);
    }
    let manifest = Manifest {
        checkpoint: &model.source,
        trained_norm_mode: model.settings.trained_norm_mode,
        norm_mode: job.mode,
        block: job.block,
        tiling: job.tiling,
        cases: &report.written,
    };
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    write_bytes_atomically(&job.out.join(files::MANIFEST), text.as_bytes())?;
    Ok(report)
}
