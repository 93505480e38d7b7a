//! The one-command demo on the embedded default: a phantom cohort, the generator trained
//! twice (train-mode and eval-mode normalization), the three inference variants of docs/design.md §6
//! on held-out cases, their scores side by side, and slice maps to browse.

use crate::analysis::report::{ANALYSIS_FOLDER, Comparison, MaskSource, analyze_folder, default_csv_path, write_csv};
use crate::analysis::slicemap::{SlicemapStyle, VariantSlices, write_index, write_variant};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::cohort::inference_folder_name;
use crate::infer::{InferJob, TrainedGenerator, infer_cohort};
use crate::io::atomic::write_bytes_atomically;
use crate::models::NormMode;
use crate::phantom::{PhantomOptions, write_cohort};
use crate::train::progress::Log;
use crate::train::{RunOptions, TrainConfig, TrainOptions, train};
use std::path::PathBuf;
use std::time::Instant;

/// The demo's training config, `configs/phantom_demo.json`, built into the binary.
pub const DEMO_CONFIG: &str = include_str!("../configs/phantom_demo.json");

/// The demo phantom's CTA grid.
pub const DEMO_SIZE: [usize; 3] = [64, 64, 48];
/// The demo phantom's field of view, mm: centred on the heart, so that the myocardial wall
/// (8–12 mm) is several voxels thick.
pub const DEMO_FOV_MM: [f64; 3] = [128.0, 128.0, 96.0];

/// The file that marks a folder as a demo's output, so that a new demo may replace it.
pub const DEMO_MARKER: &str = "cta2mbf-demo.json";

/// The folder of the slice maps: `6.inference_slicemap`.
pub const SLICEMAP_FOLDER: &str = crate::cohort::SLICEMAP;

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Cohort root to create: absent, empty, or an earlier demo's output (replaced).
    pub out: PathBuf,
    /// Phantom patients.
    pub cases: usize,
    /// How many of them (the last by id) are held out of training and predicted.
    pub held_out: usize,
    /// Phantom CTA grid.
    pub size: [usize; 3],
    /// Phantom field of view, mm.
    pub fov_mm: [f64; 3],
    /// Phantom seed.
    pub seed: u64,
    /// Training config (both runs; the norm mode is set per run).
    pub config: TrainConfig,
    /// Backend.
    pub device: DeviceChoice,
    /// No progress bars (the stage lines are still reported).
    pub quiet: bool,
    /// Where the stage lines and the training runs' epoch lines go.
    pub log: Log,
}

impl DemoOptions {
    /// The defaults: 30 patients of 64×64×48 over 128×128×96 mm, 6 held out, seed 1,
    /// `phantom_demo.json`, CPU.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            cases: 30,
            held_out: 6,
            size: DEMO_SIZE,
            fov_mm: DEMO_FOV_MM,
            seed: 1,
            config: serde_json::from_str(DEMO_CONFIG).expect("the embedded phantom_demo.json parses"),
            device: DeviceChoice::Cpu,
            quiet: false,
            log: Log::none(),
        }
    }
}

/// One inference variant of docs/design.md §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// Norm mode the generator was trained in.
    pub trained: NormMode,
    /// Norm mode of inference.
    pub inferred: NormMode,
    /// Folder-name suffix after `6.inference_<block>` (the reference's names).
    pub suffix: Option<&'static str>,
}

/// The reference's three variants: train→eval (`6.inference_<block>`), train→train
/// (`_train`), eval→eval (`_eval`).
pub const VARIANTS: [Variant; 3] = [
    Variant { trained: NormMode::Train, inferred: NormMode::Eval, suffix: None },
    Variant { trained: NormMode::Train, inferred: NormMode::Train, suffix: Some("train") },
    Variant { trained: NormMode::Eval, inferred: NormMode::Eval, suffix: Some("eval") },
];

/// What the demo produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The three variants' scores side by side.
    pub comparison: Comparison,
    /// The comparison as Markdown, also written to `7.analysis_result/compare.md`.
    pub table: String,
    /// The slice-map browser page.
    pub index: PathBuf,
    /// The per-variant CSVs.
    pub csvs: Vec<PathBuf>,
    /// Held-out case ids.
    pub held_out: Vec<String>,
    /// The predict-the-training-mean baseline: mean over held-out cases of the MAE inside the
    /// myocardium when every voxel is predicted as the mean training myocardium MBF.
    pub baseline_mae_myocardium: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

fn stage(log: &Log, started: &Instant, text: &str) {
    log.line(&format!("demo [{:6.1} s] {text}", started.elapsed().as_secs_f64()));
}

/// Run the whole demo.
pub fn run_demo(opts: &DemoOptions) -> Result<DemoReport> {
    let started = Instant::now();
    if opts.held_out == 0 || opts.held_out >= opts.cases {
        return Err(Error::invalid(format!("--held-out must be between 1 and cases − 1 ({}), got {}", opts.cases - 1, opts.held_out)));
    }
    let root = &opts.out;
    if root.join(DEMO_MARKER).is_file() {
        // An earlier demo's output: replaced as a whole.
        std::fs::remove_dir_all(root).map_err(|e| Error::io(root, e))?;
    } else if root.is_dir() && std::fs::read_dir(root).map_err(|e| Error::io(root, e))?.next().is_some() {
        return Err(Error::format(root, "exists, is not empty and is not an earlier demo's output: choose another --out"));
    }
    let marker = serde_json::json!({ "cases": opts.cases, "held_out": opts.held_out, "size": opts.size, "seed": opts.seed });
    write_bytes_atomically(&root.join(DEMO_MARKER), marker.to_string().as_bytes())?;
    stage(&opts.log, &started, &format!("phantom: {} patients of {}x{}x{} → {}", opts.cases, opts.size[0], opts.size[1], opts.size[2], root.display()));
    let phantom = PhantomOptions { cases: opts.cases, size: opts.size, fov_mm: opts.fov_mm, seed: opts.seed };
    let mut ids = write_cohort(root, &phantom, |_, _| {})?;
    ids.sort();
    let held_out: Vec<String> = ids[ids.len() - opts.held_out..].to_vec();
    let data_root = root.join(crate::cohort::MBF_MYOCARDIUM);
    let checkpoints = root.join("checkpoints");

    // The two runs are independent and each keeps about one CPU core busy: they train side
    // by side, each deterministic for its seed as when run alone.
    stage(&opts.log, &started, &format!("train: norm modes train and eval side by side, {} epochs each, held out {}", opts.config.run.total_epochs(), held_out.join(", ")));
    let runs: Vec<TrainOptions> = [NormMode::Train, NormMode::Eval]
        .map(|mode| {
            let mut cfg = opts.config.clone();
            cfg.run.name = format!("demo_{mode}");
            cfg.norm_mode = mode;
            cfg.run.data_root = Some(data_root.clone());
            cfg.run.val_cases = held_out.clone();
            TrainOptions {
                run: RunOptions { tag: Some(cfg.run.name.clone()), checkpoints_dir: checkpoints.clone(), continue_train: false, quiet: true, log: opts.log.clone() },
                config: cfg,
                device: opts.device,
                devices: Vec::new(),
                group: crate::distributed::Group::solo(),
            }
        })
        .into();
    // Each run gets its own share of the cores as its own thread pool: sharing the global pool,
    // each run's parallel loops waited behind the other's and the cores sat idle a tenth of
    // the time.
    let threads = (rayon::current_num_threads() / runs.len()).max(1);
    let reports: Vec<Result<crate::train::TrainReport>> = std::thread::scope(|s| {
        runs.iter()
            .map(|run| {
                s.spawn(move || {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| Error::invalid(format!("cannot start a thread pool: {e}")))?;
                    pool.install(|| train(run))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("training thread panicked"))
            .collect()
    });
    let mut models = Vec::new();
    for (run, report) in runs.iter().zip(reports) {
        models.push((run.config.norm_mode, report?.run_dir));
    }

    let device = opts.device.device()?;
    let block = opts.config.crop_size;
    let mut dirs = Vec::new();
    for v in VARIANTS {
        let run = &models.iter().find(|(m, _)| *m == v.trained).expect("both modes trained").1;
        let model = TrainedGenerator::load(run, &device)?;
        let out = root.join(inference_folder_name(block, v.suffix));
        stage(&opts.log, &started, &format!("infer: trained {} → inferred {} → {}", v.trained, v.inferred, out.display()));
        let job = InferJob {
            data_root: data_root.clone(),
            pattern: crate::data::PairPattern::default(),
            out: out.clone(),
            block,
            mode: v.inferred,
            tiling: opts.config.tiling(),
            cases: Some(held_out.clone()),
        };
        let report = infer_cohort(&model, &job, &device, |_, _, _| {})?;
        if let Some((pid, why)) = report.failed.first() {
            return Err(Error::invalid(format!("infer failed on case {pid}: {why}")));
        }
        dirs.push(out);
    }

    stage(&opts.log, &started, "analyze and slice maps");
    let mut variants = Vec::new();
    let mut csvs = Vec::new();
    let mut slices = Vec::new();
    let slicemap_root = root.join(SLICEMAP_FOLDER);
    // Without a whole-block L1 term the generator is trained on the myocardium only: its
    // output elsewhere is untrained, so the maps show fake_b where MBF was measured.
    let style = SlicemapStyle { fake_where_measured: opts.config.lambda_l1 == 0.0, ..SlicemapStyle::default() };
    for dir in &dirs {
        let scores = analyze_folder(dir, &MaskSource::PositiveTarget)?;
        let csv = default_csv_path(dir);
        write_csv(&scores, &csv)?;
        csvs.push(csv);
        let name = dir.file_name().expect("variant folder has a name").to_string_lossy().into_owned();
        let (cases, failed) = write_variant(dir, &slicemap_root.join(&name), &style)?;
        slices.push(VariantSlices { label: scores.label.clone(), rel_dir: name, cases, failed, scores: Some(scores.clone()) });
        variants.push(scores);
    }
    let comparison = Comparison::new(variants);
    let train_targets: Vec<PathBuf> =
        ids.iter().filter(|p| !held_out.contains(p)).map(|p| data_root.join(p).join(crate::cohort::cropped::MBF)).collect();
    let held_out_targets: Vec<PathBuf> = held_out.iter().map(|p| dirs[0].join(p).join(crate::cohort::inference::REAL_B)).collect();
    let baseline = training_mean_baseline(&train_targets, &held_out_targets)?;
    let mut curves = Vec::new();
    for (_, run) in &models {
        // A config without a mask has no held-out myocardium MAE to plot: the page goes
        // without that run's curves, and says why here.
        match crate::analysis::curve::read_learning_curves(run) {
            Ok(c) => curves.extend(c),
            Err(e) => stage(&opts.log, &started, &format!("no learning curve on the page: {e}")),
        }
    }
    let index = write_index(&slicemap_root, &slices, &style, &crate::analysis::slicemap::IndexExtras { baseline: Some(baseline), curves })?;
    let mut table = comparison.to_markdown();
    table += &format!("\nPredict-the-training-mean baseline, MAE inside the myocardium: {baseline:.3}\n");
    let analysis = root.join(ANALYSIS_FOLDER);
    write_bytes_atomically(&analysis.join("compare.md"), table.as_bytes())?;
    write_bytes_atomically(&analysis.join("compare.csv"), comparison.to_csv().as_bytes())?;
    Ok(DemoReport {
        comparison,
        table,
        index,
        csvs,
        held_out,
        baseline_mae_myocardium: baseline,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The predict-the-training-mean baseline: every myocardium voxel (MBF > 0) of each
/// held-out target predicted as the mean myocardium MBF of the training targets; the MAE
/// inside the myocardium, averaged over the held-out cases.
pub fn training_mean_baseline(train_targets: &[PathBuf], held_out_targets: &[PathBuf]) -> Result<f64> {
    let myocardium = |path: &PathBuf| -> Result<Vec<f64>> {
        let v = crate::io::nifti::read_nifti(path)?;
        Ok(v.data.iter().filter(|&&x| x > 0.0).map(|&x| x as f64).collect())
    };
    let (mut sum, mut n) = (0.0, 0usize);
    for path in train_targets {
        let values = myocardium(path)?;
        sum += values.iter().sum::<f64>();
        n += values.len();
    }
    if n == 0 {
        return Err(Error::invalid("no myocardium voxel in the training targets"));
    }
    let mean = sum / n as f64;
    let mut maes = Vec::new();
    for path in held_out_targets {
        let values = myocardium(path)?;
        if !values.is_empty() {
            maes.push(values.iter().map(|v| (v - mean).abs()).sum::<f64>() / values.len() as f64);
        }
    }
    Ok(maes.iter().sum::<f64>() / maes.len().max(1) as f64)
}
