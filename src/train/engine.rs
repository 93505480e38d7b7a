//! The training engine: what every training run does, written once — the epoch loop over
//! shuffled, seeded, prefetched samples, the learning-rate schedule, TensorBoard scalars,
//! images and weight histograms, progress, validation after every epoch, the mean of every
//! loss term, the epoch's line of `metrics.jsonl` (`epoch`, `lr`, the mean losses, the task's
//! metrics, `seconds`; trimmed back on resume) and the checkpoint policy (`latest` every epoch,
//! a numbered folder every `save_epoch_freq` epochs and at the end, `best` by the monitored
//! value when the task keeps one). The run's setup (configuration, cases, run folder, devices,
//! state and optimizers) is [`Setup`]. A network plugs in as a [`Task`]: how to prepare a
//! sample, one optimization step with its typed losses, how to validate, what it monitors and
//! what a checkpoint holds (docs/design.md §4, §5, §8).

use super::metrics::{Epoch, LossTerm, Losses, append_metrics, trim_metrics};
use super::progress::Progress;
use super::run::{Setup, TaskConfig, stream_seed};
use super::tensorboard::EventWriter;
use crate::config::{RunConfig, RunSettings};
use crate::data::{Pair, Prefetcher};
use crate::error::Result;
use crate::store::{BEST, LATEST, RunState, epoch_dir_name};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use burn::tensor::Tensor;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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

/// One network's part of a training run; the engine does the rest (module docs).
pub trait Task {
    /// The run's configuration (written as `config.json` and into every `state.json`).
    type Config: TaskConfig;
    /// What is trained: the networks (and whatever the optimizer step consumes with them).
    type Model;
    /// One prepared training sample.
    type Sample: Send + 'static;
    /// The loss terms of a step.
    type Loss: LossTerm;
    /// What the task measures after an epoch (its validation), flattened into the epoch's
    /// line of `metrics.jsonl` between the mean losses and `seconds`.
    type Metrics: Serialize + Clone;
    /// Whether a `best` checkpoint of the monitored value is kept.
    const SAVES_BEST: bool = false;

    /// Load and augment one training case with its own random stream (runs on loader threads).
    fn preparer(&self) -> Arc<dyn Fn(&Pair, &mut ChaCha8Rng) -> Result<Self::Sample> + Send + Sync>;
    /// Called before an epoch's first step.
    fn begin_epoch(&mut self, _epoch: usize) {}
    /// One optimization step of `model` at learning rate `lr`: the updated model, the step's
    /// losses and the output for images.
    fn step(&mut self, model: Self::Model, batch: &[Self::Sample], lr: f64) -> (Self::Model, Losses<Self::Loss>, Tensor<5>);
    /// TensorBoard images of a sample and its prediction.
    fn log_images(&self, _tb: &mut EventWriter, _sample: &Self::Sample, _output: Tensor<5>, _step: usize) -> Result<()> {
        Ok(())
    }
    /// TensorBoard histograms of the networks' weights ([`EventWriter::weights`]).
    fn log_weights(&self, _tb: &mut EventWriter, _model: &Self::Model, _step: usize) -> Result<()> {
        Ok(())
    }
    /// Evaluate the held-out cases after an epoch (writing their TensorBoard scalars at `step`).
    fn validate(&mut self, model: &Self::Model, tb: &mut EventWriter, step: usize) -> Result<Self::Metrics>;
    /// The value watched by the plateau schedule and for `best` (`None`: nothing is watched).
    fn monitored(&self, _metrics: &Self::Metrics, _means: &Losses<Self::Loss>) -> Option<Monitored> {
        None
    }
    /// Write a checkpoint folder `run_dir/label` of `kind` with `model` and `state`.
    fn save(&self, model: &Self::Model, run_dir: &Path, label: &str, kind: Save, state: &RunState<Self::Config>) -> Result<()>;
    /// The epoch's line between `epoch e/n lr x` and `[seconds]` (`best`: the epoch improved
    /// the monitored value); by default the mean losses.
    fn summary(&self, means: &Losses<Self::Loss>, _metrics: &Self::Metrics, _best: bool) -> String {
        means.message()
    }
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunReport<K: LossTerm, M: Serialize> {
    /// `<checkpoints-dir>/<name>`.
    pub run_dir: PathBuf,
    /// Epoch the run started after (0 for a fresh run).
    pub start_epoch: usize,
    /// Last finished epoch.
    pub epoch: usize,
    /// The line of the last epoch.
    pub last: Option<Epoch<K, M>>,
    /// Best monitored value and its epoch.
    pub best: Option<(f64, usize)>,
    /// Wall-clock seconds of this invocation's epochs.
    pub seconds: f64,
    /// Training and held-out case ids.
    pub split: (Vec<String>, Vec<String>),
    /// Cases skipped for missing files.
    pub skipped: Vec<(String, String)>,
}

/// Train `model` with `task` on `setup`'s training cases from `state` (fresh or loaded from
/// the checkpoint resumed from) to the last epoch, each step sharing `batch_size` samples per
/// device; `notes` are printed after the skipped cases.
pub fn run<T: Task>(setup: &Setup<T::Config>, mut task: T, mut model: T::Model, mut state: RunState<T::Config>, notes: &[String]) -> Result<RunReport<T::Loss, T::Metrics>> {
    let (run_dir, opts) = (&setup.folder.dir, &setup.options);
    let run = state.config.run();
    let s = LoopSettings::new(run, run.batch_size * setup.replicas.len());
    trim_metrics(run_dir, state.epoch)?;
    crate::io::atomic::write_bytes_atomically(&run_dir.join("config.json"), state.config.to_json().as_bytes())?;
    let mut tb = EventWriter::create(&run_dir.join("tb"))?;
    let samples_per_epoch = setup.train_pairs.len() * s.samples_per_volume;
    let steps_per_epoch = samples_per_epoch.div_ceil(s.step_batch);
    let progress = Progress::new((s.total_epochs * steps_per_epoch) as u64, (state.epoch * steps_per_epoch) as u64, opts.quiet, opts.log.clone()).tagged(opts.tag.as_deref());
    for (pid, why) in &setup.skipped {
        progress.line(&format!("skipped case {pid}: {why}"));
    }
    for note in notes {
        progress.line(note);
    }
    let start_epoch = state.epoch;
    let started_all = Instant::now();
    let pairs = Arc::new(setup.train_pairs.clone());
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
        let mut sums = Losses::default();
        for (step, batch) in loader.enumerate() {
            let batch = batch?;
            let (updated, losses, output) = task.step(model, &batch, lr);
            model = updated;
            state.global_step += 1;
            let gs = state.global_step;
            sums.accumulate(&losses);
            for (name, value) in losses.named() {
                tb.scalar(&format!("loss/{name}"), value as f32, gs)?;
            }
            tb.scalar("lr", lr as f32, gs)?;
            if gs % s.display_freq == 0 || (epoch == 1 && step == 0) {
                task.log_images(&mut tb, &batch[0], output, gs)?;
                task.log_weights(&mut tb, &model, gs)?;
            }
            progress.step(losses.message());
        }
        let means = sums.divided(steps_per_epoch as f64);
        let metrics = task.validate(&model, &mut tb, state.global_step)?;
        state.epoch = epoch;
        let mut improved = false;
        if let Some(m) = task.monitored(&metrics, &means) {
            // The schedule's plateau policy watches a value to minimize.
            state.schedule.end_epoch(if m.higher_is_better { -m.value } else { m.value });
            improved = state.best.is_none_or(|(b, _)| if m.higher_is_better { m.value > b } else { m.value < b });
            if improved {
                state.best = Some((m.value, epoch));
            }
        }
        // The metrics line first, then the checkpoints: a run killed in between resumes from
        // the previous checkpoint and drops the line of the epoch it repeats. The numbered
        // checkpoint before `latest`, so `latest` never runs ahead of it.
        let summary = task.summary(&means, &metrics, improved);
        let line = Epoch { epoch, lr, losses: means, metrics, seconds: started.elapsed().as_secs_f64() };
        append_metrics(run_dir, &line)?;
        if improved && T::SAVES_BEST {
            task.save(&model, run_dir, BEST, Save::Best, &state)?;
        }
        if epoch % s.save_epoch_freq == 0 || epoch == s.total_epochs {
            task.save(&model, run_dir, &epoch_dir_name(epoch), Save::Resume, &state)?;
        }
        task.save(&model, run_dir, LATEST, Save::Resume, &state)?;
        tb.flush()?;
        progress.line(&format!("epoch {epoch}/{} lr {lr:.2e} {summary} [{:.1}s]", s.total_epochs, line.seconds));
        last = Some(line);
    }
    progress.finish();
    let ids = |pairs: &[Pair]| pairs.iter().map(|p| p.pid.clone()).collect();
    Ok(RunReport {
        run_dir: run_dir.clone(),
        start_epoch,
        epoch: state.epoch,
        last,
        best: state.best,
        seconds: started_all.elapsed().as_secs_f64(),
        split: (ids(&setup.train_pairs), ids(&setup.val_pairs)),
        skipped: setup.skipped.clone(),
    })
}
