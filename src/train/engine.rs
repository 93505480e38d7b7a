//! The training engine: what every training run does, written once — the run folder (one
//! process at a time, fresh or resumed, the effective `config.json`, `metrics.jsonl` trimmed
//! back on resume), the epoch loop over shuffled, seeded, prefetched samples, the
//! learning-rate schedule, TensorBoard scalars, images and weight histograms, progress,
//! validation after every epoch and the checkpoint policy (`latest` every epoch, a numbered folder every
//! `save_epoch_freq` epochs and at the end, `best` by the monitored value when the task keeps
//! one). A network plugs in as a [`Task`]: how to prepare a sample, one optimization step,
//! how to validate, what an epoch's metrics are and what a checkpoint holds (docs/design.md
//! §4, §5, §8).

use super::progress::{Log, Progress};
use super::run::{append_metrics, stream_seed, trim_metrics};
use super::tensorboard::EventWriter;
use crate::config::{RunConfig, RunSettings};
use crate::data::{Pair, Prefetcher};
use crate::error::{Error, Result};
use crate::io::lock::FolderLock;
use crate::store::{BEST, LATEST, RunState, epoch_dir_name, resolve};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use burn::tensor::Tensor;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Where a run's checkpoints go and how it reports.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parent of the run folder.
    pub checkpoints_dir: PathBuf,
    /// Resume from `<run>/latest`.
    pub continue_train: bool,
    /// No progress bar (the epoch lines are still printed).
    pub quiet: bool,
    /// Prefix of the printed lines, when several runs share one terminal.
    pub tag: Option<String>,
    /// Where the epoch lines go.
    pub log: Log,
}

/// The run folder of a training, locked for this process.
pub struct RunFolder {
    /// `<checkpoints-dir>/<name>`.
    pub dir: PathBuf,
    /// The checkpoint to resume from (`--continue-train`), `None` for a fresh run.
    pub resume: Option<PathBuf>,
    _lock: FolderLock,
}

impl RunFolder {
    /// Lock `<checkpoints-dir>/<name>` (a second process on it is refused, naming the holder)
    /// and find the checkpoint to resume from; a fresh run on a folder that already has
    /// checkpoints is refused.
    pub fn open(opts: &RunOptions, name: &str) -> Result<RunFolder> {
        let dir = opts.checkpoints_dir.join(name);
        let lock = FolderLock::acquire(&dir)?;
        let resume = if opts.continue_train {
            Some(resolve(&dir)?)
        } else {
            if resolve(&dir).is_ok() {
                return Err(Error::format(&dir, "a run with this name already has checkpoints: pass --continue-train to resume it, or choose another --name"));
            }
            None
        };
        Ok(RunFolder { dir, resume, _lock: lock })
    }
}

/// The loop settings a task takes from its configuration.
#[derive(Debug, Clone, Copy)]
pub struct LoopSettings {
    /// Seed of case order and augmentation streams.
    pub seed: u64,
    /// Last epoch.
    pub total_epochs: usize,
    /// Samples drawn from each training case per epoch.
    pub samples_per_volume: usize,
    /// Samples per optimization step (over all devices).
    pub step_batch: usize,
    /// Loader threads.
    pub workers: usize,
    /// Loaded steps waiting ahead of the device.
    pub prefetch: usize,
    /// TensorBoard images and weight histograms every this many steps.
    pub display_freq: usize,
    /// A numbered checkpoint every this many epochs.
    pub save_epoch_freq: usize,
}

impl LoopSettings {
    /// The loop settings of a run's shared settings, with `step_batch` samples per step.
    pub fn new(run: &RunSettings, step_batch: usize) -> Self {
        LoopSettings {
            seed: run.seed,
            total_epochs: run.total_epochs(),
            samples_per_volume: run.samples_per_volume,
            step_batch,
            workers: run.workers,
            prefetch: run.prefetch,
            display_freq: run.display_freq,
            save_epoch_freq: run.save_epoch_freq,
        }
    }
}

/// The value a task monitors for the `best` checkpoint and the plateau schedule.
#[derive(Debug, Clone, Copy)]
pub struct Monitored {
    /// The value.
    pub value: f64,
    /// Larger is better (a Dice), else smaller is (an error).
    pub higher_is_better: bool,
}

/// The kind of checkpoint being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    /// `latest` or a numbered folder: everything needed to resume.
    Resume,
    /// `best`: the network as inference uses it.
    Best,
}

/// Named loss values of one step (or means over an epoch), in display order.
pub type Losses = Vec<(&'static str, f64)>;

/// The value of `name` in `losses` (0 when absent).
pub fn loss(losses: &[(&'static str, f64)], name: &str) -> f64 {
    losses.iter().find(|(n, _)| *n == name).map_or(0.0, |(_, v)| *v)
}

/// One network's part of a training run.
pub trait Task {
    /// The run's configuration (written as `config.json` and into every `state.json`).
    type Config: RunConfig + Clone;
    /// What is trained: the networks (and whatever the optimizer step consumes with them).
    type Model;
    /// One prepared training sample.
    type Sample: Send + 'static;
    /// One epoch's line of `metrics.jsonl`.
    type Metrics: Serialize + Clone;

    /// Load and augment one training case with its own random stream (runs on loader threads).
    fn preparer(&self) -> Arc<dyn Fn(&Pair, &mut ChaCha8Rng) -> Result<Self::Sample> + Send + Sync>;
    /// Called before an epoch's first step.
    fn begin_epoch(&mut self, _epoch: usize) {}
    /// One optimization step of `model` at learning rate `lr`: the updated model, the named
    /// losses (each logged as `loss/<name>` and averaged over the epoch) and the output for
    /// images.
    fn step(&mut self, model: Self::Model, batch: &[Self::Sample], lr: f64) -> (Self::Model, Losses, Tensor<5>);
    /// The progress message of a step.
    fn step_message(&self, model: &Self::Model, losses: &[(&'static str, f64)]) -> String;
    /// TensorBoard images of a sample and its prediction.
    fn log_images(&self, tb: &mut EventWriter, sample: &Self::Sample, output: Tensor<5>, step: usize) -> Result<()>;
    /// TensorBoard histograms of the networks' weights ([`EventWriter::weights`]).
    fn log_weights(&self, tb: &mut EventWriter, model: &Self::Model, step: usize) -> Result<()>;
    /// Evaluate the held-out cases after an epoch (writing their TensorBoard scalars at `step`)
    /// and build the epoch's metrics from the mean losses.
    fn end_epoch(&mut self, model: &Self::Model, epoch: usize, lr: f64, means: &[(&'static str, f64)], tb: &mut EventWriter, step: usize) -> Result<Self::Metrics>;
    /// Record the epoch's wall-clock seconds in its metrics.
    fn set_seconds(metrics: &mut Self::Metrics, seconds: f64);
    /// The monitored value of an epoch.
    fn monitored(&self, metrics: &Self::Metrics) -> Monitored;
    /// Whether a `best` checkpoint is kept.
    fn keeps_best(&self) -> bool;
    /// Write a checkpoint folder `run_dir/label` of `kind` with `model` and `state`.
    fn save(&self, model: &Self::Model, run_dir: &Path, label: &str, kind: Save, state: &RunState<Self::Config>) -> Result<()>;
    /// The line printed after an epoch (`best`: the epoch improved the monitored value).
    fn epoch_line(&self, metrics: &Self::Metrics, total_epochs: usize, best: bool) -> String;
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunReport<M> {
    /// `<checkpoints-dir>/<name>`.
    pub run_dir: PathBuf,
    /// Epoch the run started after (0 for a fresh run).
    pub start_epoch: usize,
    /// Last finished epoch.
    pub epoch: usize,
    /// Metrics of the last epoch.
    pub last: Option<M>,
    /// Best monitored value and its epoch.
    pub best: Option<(f64, usize)>,
    /// Wall-clock seconds of this invocation's epochs.
    pub seconds: f64,
}

/// Train `model` with `task` on `train_pairs` from `state` (fresh or loaded from
/// `folder.resume`; its configuration is the run's) to the last epoch, each step sharing
/// `batch_size` samples per device over `devices` devices; `notes` are printed first.
pub fn run<T: Task>(
    folder: &RunFolder,
    mut task: T,
    mut model: T::Model,
    mut state: RunState<T::Config>,
    train_pairs: Vec<Pair>,
    devices: usize,
    opts: &RunOptions,
    notes: &[String],
) -> Result<RunReport<T::Metrics>> {
    let run_dir = &folder.dir;
    let run = state.config.run();
    let s = LoopSettings::new(run, run.batch_size * devices);
    trim_metrics(run_dir, state.epoch)?;
    crate::io::atomic::write_bytes_atomically(&run_dir.join("config.json"), state.config.to_json().as_bytes())?;
    let mut tb = EventWriter::create(&run_dir.join("tb"))?;
    let samples_per_epoch = train_pairs.len() * s.samples_per_volume;
    let steps_per_epoch = samples_per_epoch.div_ceil(s.step_batch);
    let progress = Progress::new((s.total_epochs * steps_per_epoch) as u64, (state.epoch * steps_per_epoch) as u64, opts.quiet, opts.log.clone()).tagged(opts.tag.as_deref());
    for note in notes {
        progress.line(note);
    }
    let start_epoch = state.epoch;
    let started_all = Instant::now();
    let pairs = Arc::new(train_pairs);
    let prepare = task.preparer();
    let mut last = None;
    for epoch in state.epoch + 1..=s.total_epochs {
        let started = Instant::now();
        progress.set_epoch(epoch, s.total_epochs);
        task.begin_epoch(epoch);
        let lr = state.schedule.lr(epoch);
        let mut order: Vec<usize> = (0..samples_per_epoch).map(|i| i % pairs.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream_seed(s.seed, epoch, usize::MAX)));
        let loader = {
            let (pairs, prepare) = (pairs.clone(), prepare.clone());
            Prefetcher::spawn(steps_per_epoch, s.workers, s.prefetch, move |step| -> Result<Vec<T::Sample>> {
                order[step * s.step_batch..((step + 1) * s.step_batch).min(order.len())]
                    .iter()
                    .enumerate()
                    .map(|(j, &i)| prepare(&pairs[i], &mut ChaCha8Rng::seed_from_u64(stream_seed(s.seed, epoch, step * s.step_batch + j))))
                    .collect()
            })
        };
        let mut sums: Losses = Vec::new();
        for (step, batch) in loader.enumerate() {
            let batch = batch?;
            let (updated, losses, output) = task.step(model, &batch, lr);
            model = updated;
            state.global_step += 1;
            let gs = state.global_step;
            for &(name, value) in &losses {
                match sums.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, sum)) => *sum += value,
                    None => sums.push((name, value)),
                }
                tb.scalar(&format!("loss/{name}"), value as f32, gs)?;
            }
            tb.scalar("lr", lr as f32, gs)?;
            if gs % s.display_freq == 0 || (epoch == 1 && step == 0) {
                task.log_images(&mut tb, &batch[0], output, gs)?;
                task.log_weights(&mut tb, &model, gs)?;
            }
            progress.step(task.step_message(&model, &losses));
        }
        let means: Losses = sums.into_iter().map(|(n, sum)| (n, sum / steps_per_epoch as f64)).collect();
        let mut metrics = task.end_epoch(&model, epoch, lr, &means, &mut tb, state.global_step)?;
        let m = task.monitored(&metrics);
        // The schedule's plateau policy watches a value to minimize.
        state.schedule.end_epoch(if m.higher_is_better { -m.value } else { m.value });
        state.epoch = epoch;
        let improved = state.best.is_none_or(|(b, _)| if m.higher_is_better { m.value > b } else { m.value < b });
        if improved {
            state.best = Some((m.value, epoch));
        }
        // The metrics line first, then the checkpoints: a run killed in between resumes from
        // the previous checkpoint and drops the line of the epoch it repeats. The numbered
        // checkpoint before `latest`, so `latest` never runs ahead of it.
        T::set_seconds(&mut metrics, started.elapsed().as_secs_f64());
        append_metrics(run_dir, &metrics)?;
        if improved && task.keeps_best() {
            task.save(&model, run_dir, BEST, Save::Best, &state)?;
        }
        if epoch % s.save_epoch_freq == 0 || epoch == s.total_epochs {
            task.save(&model, run_dir, &epoch_dir_name(epoch), Save::Resume, &state)?;
        }
        task.save(&model, run_dir, LATEST, Save::Resume, &state)?;
        tb.flush()?;
        progress.line(&task.epoch_line(&metrics, s.total_epochs, improved));
        last = Some(metrics);
    }
    progress.finish();
    Ok(RunReport { run_dir: run_dir.clone(), start_epoch, epoch: state.epoch, last, best: state.best, seconds: started_all.elapsed().as_secs_f64() })
}
