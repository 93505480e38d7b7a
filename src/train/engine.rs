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
//!
//! In a group of several ranks (MPI, [`crate::distributed`]) every rank runs this loop over
//! the same seeded sample order: a step's global batch is `ranks × batch_size × devices`
//! samples, each rank takes its equal contiguous share (the order padded with its first samples
//! to a multiple of the ranks, as PyTorch's `DistributedSampler`), the task averages the
//! gradients over the ranks, and the step's losses are averaged too. Rank 0 alone validates
//! (and tells the others the monitored value, which the schedule needs), writes checkpoints,
//! `metrics.jsonl` and TensorBoard, and prints; the ranks compare a hash of their parameters
//! at the end (and after every epoch in debug builds).

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
    /// Validation every this many epochs (and after the last).
    pub val_every: usize,
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
            val_every: run.val_every,
        }
    }

    /// Whether the held-out cases are evaluated after `epoch`: every `val_every`-th epoch and
    /// the last.
    pub fn validates(&self, epoch: usize) -> bool {
        epoch % self.val_every == 0 || epoch == self.total_epochs
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
    /// line of `metrics.jsonl` between the mean losses and `seconds`; the default is an
    /// epoch without validation.
    type Metrics: Serialize + Clone + Default;
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
    /// A hash of the trained networks' parameters and running statistics (equal exactly when
    /// they are bit-identical: [`super::parallel::fingerprint`]).
    fn fingerprint(&self, model: &Self::Model) -> u64;
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
    /// The line of the last epoch (on rank 0 of a group; `None` on the others).
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
    let (run_dir, opts, group) = (&setup.folder.dir, &setup.options, &setup.group);
    let (root, ranks, rank) = (group.is_root(), group.size(), group.rank());
    let run = state.config.run();
    let s = LoopSettings::new(run, run.batch_size * setup.replicas.len() * ranks);
    let mut tb = None;
    if root {
        trim_metrics(run_dir, state.epoch)?;
        crate::io::atomic::write_bytes_atomically(&run_dir.join("config.json"), state.config.to_json().as_bytes())?;
        tb = Some(EventWriter::create(&run_dir.join("tb"))?);
    }
    let samples_per_epoch = setup.train_pairs.len() * s.samples_per_volume;
    // Padded so that every rank takes the same number of samples at every step.
    let padded_per_epoch = samples_per_epoch.next_multiple_of(ranks);
    let steps_per_epoch = padded_per_epoch.div_ceil(s.step_batch);
    let (quiet, log) = if root { (opts.quiet, opts.log.clone()) } else { (true, super::progress::Log::none()) };
    let progress = Progress::new((s.total_epochs * steps_per_epoch) as u64, (state.epoch * steps_per_epoch) as u64, quiet, log).tagged(opts.tag.as_deref());
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
        let communicated = group.communication_seconds();
        progress.set_epoch(epoch, s.total_epochs);
        task.begin_epoch(epoch);
        let lr = state.schedule.lr(epoch);
        let mut order: Vec<usize> = (0..samples_per_epoch).map(|i| i % pairs.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream_seed(s.seed, epoch, usize::MAX)));
        for k in 0..padded_per_epoch - samples_per_epoch {
            order.push(order[k % samples_per_epoch]);
        }
        let loader = {
            let (pairs, prepare) = (pairs.clone(), prepare.clone());
            Prefetcher::spawn(steps_per_epoch, s.workers, s.prefetch, move |step| -> Result<Vec<T::Sample>> {
                // This rank's share of the step's global batch; an item's random stream is
                // that of its place in the epoch, whatever the number of ranks.
                let start = step * s.step_batch;
                let share = (((step + 1) * s.step_batch).min(order.len()) - start) / ranks;
                let first = start + rank * share;
                order[first..first + share]
                    .iter()
                    .enumerate()
                    .map(|(j, &i)| prepare(&pairs[i], &mut ChaCha8Rng::seed_from_u64(stream_seed(s.seed, epoch, first + j))))
                    .collect()
            })
        };
        let mut sums = Losses::default();
        for (step, batch) in loader.enumerate() {
            let batch = batch?;
            let (updated, losses, output) = task.step(model, &batch, lr);
            let losses = losses.averaged(group);
            model = updated;
            state.global_step += 1;
            let gs = state.global_step;
            sums.accumulate(&losses);
            if let Some(tb) = tb.as_mut() {
                for (name, value) in losses.named() {
                    tb.scalar(&format!("loss/{name}"), value as f32, gs)?;
                }
                tb.scalar("lr", lr as f32, gs)?;
                if gs % s.display_freq == 0 || (epoch == 1 && step == 0) {
                    task.log_images(tb, &batch[0], output, gs)?;
                    task.log_weights(tb, &model, gs)?;
                }
            }
            progress.step(losses.message());
        }
        let means = sums.divided(steps_per_epoch as f64);
        state.epoch = epoch;
        if group.is_distributed() && (cfg!(debug_assertions) || epoch == s.total_epochs) {
            group.check_equal(task.fingerprint(&model), &format!("after epoch {epoch}, a hash of the network's parameters"))?;
        }
        let Some(tb) = tb.as_mut() else {
            // The other ranks wait for the value rank 0's validation gives the schedule.
            let monitored = share_monitored(group, None);
            end_epoch(&mut state, monitored);
            continue;
        };
        let (metrics, monitored) = if s.validates(epoch) {
            let metrics = task.validate(&model, tb, state.global_step)?;
            let monitored = task.monitored(&metrics, &means);
            (metrics, monitored)
        } else {
            (T::Metrics::default(), None)
        };
        let monitored = share_monitored(group, monitored);
        let improved = end_epoch(&mut state, monitored);
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
        let communication = if group.is_distributed() {
            format!(", {:.2}s in all-reduce on rank 0", group.communication_seconds() - communicated)
        } else {
            String::new()
        };
        progress.line(&format!("epoch {epoch}/{} lr {lr:.2e} {summary} [{:.1}s{communication}]", s.total_epochs, line.seconds));
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

/// The value rank 0's validation gave the schedule (`mine` on rank 0), on every rank.
fn share_monitored(group: &crate::distributed::Group, mine: Option<Monitored>) -> Option<Monitored> {
    if !group.is_distributed() {
        return mine;
    }
    let bytes = match mine {
        Some(m) => [&[1u8, m.higher_is_better as u8][..], &m.value.to_le_bytes()].concat(),
        None => vec![0u8],
    };
    let got = group.broadcast(0, bytes);
    (got[0] == 1).then(|| Monitored { value: f64::from_le_bytes(got[2..10].try_into().expect("8 bytes")), higher_is_better: got[1] == 1 })
}

/// The epoch's end for the schedule and `best`: the plateau policy sees the monitored value (to
/// minimize); returns whether it improved on the best so far.
fn end_epoch<C>(state: &mut RunState<C>, monitored: Option<Monitored>) -> bool {
    let Some(m) = monitored else { return false };
    state.schedule.end_epoch(if m.higher_is_better { -m.value } else { m.value });
    let improved = state.best.is_none_or(|(b, _)| if m.higher_is_better { m.value > b } else { m.value < b });
    if improved {
        state.best = Some((m.value, state.epoch));
    }
    improved
}
