//! The generator's training task (pix2pix's, in 3-D) for the [`engine`](super::engine): per
//! step an optional discriminator update, then a generator update on λ_L1·L1 + λ_mask·masked
//! L1 + λ_GAN·GAN; per epoch a validation of the held-out cases in both norm modes.

use super::engine::{self, Losses, Monitored, RunFolder, RunOptions, Save, Task, loss};
use super::loss::{gan_loss, l1, masked_l1};
use super::parallel;
use super::run::scalar;
use super::tensorboard::EventWriter;
use super::validate::{CaseMetrics, evaluate_case};
use crate::analysis::{ColorMap, Window, axial_slice};
use crate::config::TrainConfig;
use crate::data::{Pair, PairedDataset, Sample, augment, tensor_to_array, volume_to_tensor};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::models::init::Initializer;
use crate::models::{Discriminator, Generator, NormMode};
use crate::store::generator::{self as checkpoint, CheckpointParts, TrainState};
use crate::store::folder::load_optimizer;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Salt separating the discriminator's initialization stream from the generator's.
const DISCRIMINATOR_SEED_SALT: u64 = 0x0D15C;

/// How to run a training.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The effective configuration (file plus command-line overrides).
    pub config: TrainConfig,
    /// Backend.
    pub device: DeviceChoice,
    /// Data-parallel training on these devices (two or more; the first holds the networks and
    /// validates); empty to train on `device` alone.
    pub devices: Vec<Device>,
    /// The run folder and reporting.
    pub run: RunOptions,
}

/// What a finished training produced.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// `<checkpoints-dir>/<name>`.
    pub run_dir: PathBuf,
    /// Epoch the run started after (0 for a fresh run).
    pub start_epoch: usize,
    /// Last finished epoch.
    pub epoch: usize,
    /// Metrics of the last epoch.
    pub last: Option<EpochMetrics>,
    /// Cases skipped for missing files.
    pub skipped: Vec<(String, String)>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct EpochMetrics {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean generator L1 over the epoch's steps (network units).
    pub loss_g_l1: f64,
    /// Mean masked L1.
    pub loss_g_mask: f64,
    /// Mean generator GAN term.
    pub loss_g_gan: f64,
    /// Mean discriminator loss.
    pub loss_d: f64,
    /// Validation in train norm mode (mean over held-out cases), image units.
    pub val_train_mode: Option<CaseMetrics>,
    /// Validation in eval norm mode.
    pub val_eval_mode: Option<CaseMetrics>,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// Losses of one step (network units).
#[derive(Debug, Default, Clone, Copy)]
struct StepLosses {
    l1: f64,
    mask: f64,
    gan: f64,
    d: f64,
}

/// The networks and optimizers being trained.
struct Trainer {
    g: Generator,
    d: Option<Discriminator>,
    optim_g: ModuleOptimizer,
    optim_d: Option<ModuleOptimizer>,
    cfg: TrainConfig,
    /// Where the networks live (autodiff).
    device: Device,
    /// Data-parallel devices (autodiff), two or more; empty for training on `device` alone.
    replicas: Vec<Device>,
}

/// One device's share of a step: its inputs, its generator copy and prediction, its losses.
struct Shard {
    device: Device,
    /// This shard's fraction of the batch (its loss is scaled by it, so gradients sum to the batch mean).
    weight: f64,
    g: Generator,
    real_a: Tensor<5>,
    real_b: Tensor<5>,
    mask: Option<Tensor<5>>,
    fake: Tensor<5>,
    losses: StepLosses,
}

impl Trainer {
    /// One optimization step on `batch`; returns the updated trainer, the losses and the
    /// (detached) prediction of the first device's share.
    ///
    /// With several devices the batch is cut into one contiguous share per device; each
    /// device runs the forward and backward passes of its share on its own copy of the
    /// networks, and the optimizer steps once on the gradients of all devices (summed, each
    /// loss scaled by its share of the batch), first the discriminator's, then the
    /// generator's — the same update as one device on the whole batch wherever the maths
    /// allows (train-mode batch norm sees each device's own samples, as under DDP).
    fn step(mut self, batch: &[Sample], lr: f64) -> (Self, StepLosses, Tensor<5>) {
        let cfg = self.cfg.clone();
        let map = cfg.intensity;
        let devices = if self.replicas.is_empty() { vec![self.device.clone()] } else { self.replicas.clone() };
        let parallel = devices.len() > 1;
        let shards: Vec<Shard> = parallel::shares(batch, &devices)
            .into_iter()
            .map(|(part, device, weight)| {
                let srcs: Vec<_> = part.iter().map(|s| s.src.map(|v| map.src(v))).collect();
                let dsts: Vec<_> = part.iter().map(|s| s.dst.map(|v| map.dst(v))).collect();
                let mask = (cfg.lambda_mask > 0.0).then(|| {
                    let label = cfg.mask_label as f32;
                    let masks: Vec<_> = part.iter().map(|s| s.mask.as_ref().expect("config requires a mask").map(|v| if v == label { 1.0 } else { 0.0 })).collect();
                    volume_to_tensor(&masks.iter().collect::<Vec<_>>(), device)
                });
                let real_a = volume_to_tensor(&srcs.iter().collect::<Vec<_>>(), device);
                Shard {
                    device: device.clone(),
                    weight,
                    g: parallel::replica(&self.g, device, parallel),
                    fake: real_a.clone(),
                    real_a,
                    real_b: volume_to_tensor(&dsts.iter().collect::<Vec<_>>(), device),
                    mask,
                    losses: StepLosses::default(),
                }
            })
            .collect();
        let n_shards = shards.len();
        // Forward passes, and the discriminator's gradients on the detached predictions.
        let d = self.d.take();
        let shards: Vec<(Shard, Option<GradientsParams>)> = parallel::on_devices(shards, |mut sh| {
            sh.fake = sh.g.forward(sh.real_a.clone(), cfg.norm_mode);
            let grads = d.as_ref().map(|d| {
                let d = parallel::replica(d, &sh.device, parallel);
                let fake_ab = Tensor::cat(vec![sh.real_a.clone(), sh.fake.clone().detach()], 1);
                let real_ab = Tensor::cat(vec![sh.real_a.clone(), sh.real_b.clone()], 1);
                let loss_d = (gan_loss(cfg.gan_mode, d.forward(fake_ab), false) + gan_loss(cfg.gan_mode, d.forward(real_ab), true)).mul_scalar(0.5);
                sh.losses.d = scalar(&loss_d);
                GradientsParams::from_grads(loss_d.mul_scalar(sh.weight).backward(), &d)
            });
            (sh, grads)
        });
        let (shards, grads_d): (Vec<Shard>, Vec<Option<GradientsParams>>) = shards.into_iter().unzip();
        let d = match (d, self.optim_d.as_mut()) {
            (Some(d), Some(optim)) => Some(parallel::optimizer_step(optim, lr, d, grads_d.into_iter().flatten().zip(devices.iter().cloned()).collect())),
            (d, _) => d,
        };
        // The generator's losses against the updated discriminator, and its gradients.
        let results: Vec<(Shard, GradientsParams)> = parallel::on_devices(shards, |mut sh| {
            let loss_l1 = l1(sh.fake.clone(), sh.real_b.clone());
            sh.losses.l1 = scalar(&loss_l1);
            let mut loss_g = loss_l1.mul_scalar(cfg.lambda_l1);
            if let Some(m) = &sh.mask {
                let loss_mask = masked_l1(sh.fake.clone(), sh.real_b.clone(), m.clone());
                sh.losses.mask = scalar(&loss_mask);
                loss_g = loss_g + loss_mask.mul_scalar(cfg.lambda_mask);
            }
            if let Some(d) = &d {
                let d = parallel::replica(d, &sh.device, parallel);
                let loss_gan = gan_loss(cfg.gan_mode, d.forward(Tensor::cat(vec![sh.real_a.clone(), sh.fake.clone()], 1)), true);
                sh.losses.gan = scalar(&loss_gan);
                loss_g = loss_g + loss_gan.mul_scalar(cfg.lambda_gan);
            }
            let grads = GradientsParams::from_grads(loss_g.mul_scalar(sh.weight).backward(), &sh.g);
            (sh, grads)
        });
        let mut losses = StepLosses::default();
        let mut fake = None;
        let mut grads_g = Vec::with_capacity(n_shards);
        for ((sh, grads), device) in results.into_iter().zip(&devices) {
            losses.l1 += sh.weight * sh.losses.l1;
            losses.mask += sh.weight * sh.losses.mask;
            losses.gan += sh.weight * sh.losses.gan;
            losses.d += sh.weight * sh.losses.d;
            fake.get_or_insert(sh.fake.detach());
            grads_g.push((grads, device.clone()));
        }
        self.g = parallel::optimizer_step(&mut self.optim_g, lr, self.g, grads_g);
        self.d = d;
        (self, losses, fake.expect("at least one shard"))
    }
}

fn adam(cfg: &TrainConfig) -> AdamConfig {
    cfg.run.adam(cfg.beta1)
}

/// The generator's part of a training run.
struct GeneratorTask {
    cfg: TrainConfig,
    val_pairs: Vec<Pair>,
    /// Where validation runs (the first device).
    device: Device,
}

impl Task for GeneratorTask {
    type Config = TrainConfig;
    type Model = Trainer;
    type Sample = Sample;
    type Metrics = EpochMetrics;

    fn preparer(&self) -> Arc<dyn Fn(&Pair, &mut ChaCha8Rng) -> Result<Sample> + Send + Sync> {
        let (crop, aug) = (self.cfg.crop_size, self.cfg.augment.clone());
        Arc::new(move |pair, rng| Ok(augment(pair.load()?, crop, &aug, rng)))
    }

    fn step(&mut self, trainer: Trainer, batch: &[Sample], lr: f64) -> (Trainer, Losses, Tensor<5>) {
        let (trainer, l, fake) = trainer.step(batch, lr);
        let mut losses = vec![("G_L1", l.l1)];
        if self.cfg.lambda_mask > 0.0 {
            losses.push(("G_mask", l.mask));
        }
        if trainer.d.is_some() {
            losses.extend([("G_GAN", l.gan), ("D", l.d)]);
        }
        (trainer, losses, fake)
    }

    fn step_message(&self, trainer: &Trainer, l: &[(&'static str, f64)]) -> String {
        let gan = if trainer.d.is_some() { format!(" G_GAN {:.3} D {:.3}", loss(l, "G_GAN"), loss(l, "D")) } else { String::new() };
        format!("L1 {:.4} mask {:.4}{gan}", loss(l, "G_L1"), loss(l, "G_mask"))
    }

    fn log_images(&self, tb: &mut EventWriter, sample: &Sample, fake: Tensor<5>, step: usize) -> Result<()> {
        log_images(tb, sample, fake, &self.cfg, step)
    }

    fn log_weights(&self, tb: &mut EventWriter, trainer: &Trainer, step: usize) -> Result<()> {
        tb.weights("G", &trainer.g, step)?;
        match &trainer.d {
            Some(d) => tb.weights("D", d, step),
            None => Ok(()),
        }
    }

    fn end_epoch(&mut self, trainer: &Trainer, epoch: usize, lr: f64, means: &[(&'static str, f64)], tb: &mut EventWriter, step: usize) -> Result<EpochMetrics> {
        let (val_train, val_eval) = validate(&trainer.g, &self.val_pairs, &self.cfg, &self.device)?;
        for (tag, m) in [("val_train_mode", val_train), ("val_eval_mode", val_eval)] {
            if let Some(m) = m {
                tb.scalar(&format!("{tag}/mae"), m.mae as f32, step)?;
                if let Some(x) = m.mae_mask {
                    tb.scalar(&format!("{tag}/mae_mask"), x as f32, step)?;
                }
            }
        }
        Ok(EpochMetrics {
            epoch,
            lr,
            loss_g_l1: loss(means, "G_L1"),
            loss_g_mask: loss(means, "G_mask"),
            loss_g_gan: loss(means, "G_GAN"),
            loss_d: loss(means, "D"),
            val_train_mode: val_train,
            val_eval_mode: val_eval,
            seconds: 0.0,
        })
    }

    fn set_seconds(metrics: &mut EpochMetrics, seconds: f64) {
        metrics.seconds = seconds;
    }

    /// The held-out MAE in the training norm mode, else the training L1.
    fn monitored(&self, m: &EpochMetrics) -> Monitored {
        let val = match self.cfg.norm_mode {
            NormMode::Train => m.val_train_mode,
            NormMode::Eval => m.val_eval_mode,
        };
        Monitored { value: val.map(|v| v.mae).unwrap_or(m.loss_g_l1), higher_is_better: false }
    }

    fn keeps_best(&self) -> bool {
        false
    }

    fn save(&self, t: &Trainer, run_dir: &Path, label: &str, _kind: Save, state: &TrainState) -> Result<()> {
        let parts = CheckpointParts { generator: &t.g, discriminator: t.d.as_ref(), optim_g: &t.optim_g, optim_d: t.optim_d.as_ref(), state };
        checkpoint::save(run_dir, label, &parts).map(drop)
    }

    fn epoch_line(&self, m: &EpochMetrics, total: usize, _best: bool) -> String {
        epoch_line(m, total)
    }
}

/// Train a generator as `opts` says; returns where the checkpoints are.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let mut cfg = opts.config.clone();
    cfg.validate()?;
    cfg.check_memory(opts.device.is_cpu() && opts.devices.is_empty())?;
    if opts.devices.len() == 1 {
        return Err(Error::invalid("data-parallel training needs two or more devices (one device: use --device)"));
    }
    let root = cfg.run.data_root.clone().ok_or_else(|| Error::invalid("no data root: set data_root in the config or pass --data-root"))?;
    if !root.is_dir() {
        return Err(Error::format(&root, "data root is not a folder"));
    }
    let dataset = PairedDataset::scan(&root, &cfg.data)?;
    let skipped = dataset.skipped.clone();
    let (train_pairs, val_pairs) = dataset.split(&cfg.run.val_cases)?;
    if train_pairs.is_empty() {
        return Err(Error::format(&root, format!("no complete training case (need {} and {} in each case folder)", cfg.data.src, cfg.data.dst)));
    }
    if cfg.intensity.dst_standardize {
        let (mean, sd) = target_statistics(&train_pairs, &cfg)?;
        cfg.intensity.dst_offset = mean;
        cfg.intensity.dst_scale = sd;
    }
    let folder = RunFolder::open(&opts.run, &cfg.run.name)?;
    let device = match opts.devices.first() {
        Some(d) => d.clone(),
        None => opts.device.device()?,
    };
    let ad = device.clone().autodiff();
    let (mut trainer, state) = match &folder.resume {
        Some(dir) => resume(dir, &cfg, &ad)?,
        None => fresh(&cfg, &ad),
    };
    trainer.replicas = opts.devices.iter().map(|d| d.clone().autodiff()).collect();
    let notes: Vec<String> = skipped.iter().map(|(pid, why)| format!("skipped case {pid}: {why}")).collect();
    let task = GeneratorTask { cfg, val_pairs, device };
    let report = engine::run(&folder, task, trainer, state, train_pairs, opts.devices.len().max(1), &opts.run, &notes)?;
    Ok(TrainReport { run_dir: report.run_dir, start_epoch: report.start_epoch, epoch: report.epoch, last: report.last, skipped })
}

/// Mean and standard deviation of the training targets inside the loss mask (`mask ==
/// mask_label` when the config names a mask, else every voxel), one case in memory at a time.
fn target_statistics(pairs: &[Pair], cfg: &TrainConfig) -> Result<(f32, f32)> {
    let label = cfg.mask_label as f32;
    let mut failure = None;
    let values = pairs.iter().map_while(|pair| pair.load().map_err(|e| failure = Some(e)).ok()).flat_map(|s| {
        let inside: Option<Vec<bool>> = s.mask.map(|m| m.data.iter().map(|&v| v == label).collect());
        s.dst.data.into_iter().enumerate().filter(move |(i, _)| inside.as_ref().is_none_or(|m| m[*i])).map(|(_, v)| v)
    });
    let stats = crate::data::IntensityMap::mean_sd(values);
    if let Some(e) = failure {
        return Err(e);
    }
    stats.ok_or_else(|| Error::invalid("intensity.dst_standardize: the training targets inside the mask have no spread (fewer than two voxels, or all equal)"))
}

fn fresh(cfg: &TrainConfig, device: &Device) -> (Trainer, TrainState) {
    let g = cfg.generator.init(&mut Initializer::new(cfg.run.seed, device));
    let d = cfg.discriminator.as_ref().map(|dc| dc.init(&mut Initializer::new(cfg.run.seed ^ DISCRIMINATOR_SEED_SALT, device), 2));
    let trainer = Trainer {
        g,
        optim_d: d.as_ref().map(|_| adam(cfg).init()),
        d,
        optim_g: adam(cfg).init(),
        cfg: cfg.clone(),
        device: device.clone(),
        replicas: Vec::new(),
    };
    let state = TrainState { epoch: 0, global_step: 0, schedule: cfg.run.schedule(), best: None, config: cfg.clone() };
    (trainer, state)
}

fn resume(dir: &Path, cfg: &TrainConfig, device: &Device) -> Result<(Trainer, TrainState)> {
    let (g, mut state) = checkpoint::load_generator(dir, device)?;
    let old = &state.config;
    if old.generator != cfg.generator || old.discriminator != cfg.discriminator {
        return Err(Error::format(dir, "the checkpoint's generator/discriminator architecture differs from the configuration; resume with the run's own config.json"));
    }
    let d = checkpoint::load_discriminator(dir, &state, device)?;
    let optim_g = load_optimizer(&dir.join(checkpoint::OPTIM_G), &adam(cfg))?;
    let optim_d = match d {
        Some(_) => Some(load_optimizer(&dir.join(checkpoint::OPTIM_D), &adam(cfg))?),
        None => None,
    };
    // The schedule continues (its state and base rate from the checkpoint); a changed number
    // of epochs extends or shortens it.
    state.schedule.n_epochs = cfg.run.n_epochs;
    state.schedule.n_epochs_decay = cfg.run.n_epochs_decay;
    state.config = cfg.clone();
    let g = g.train();
    let d = d.map(|d| d.train());
    Ok((Trainer { g, d, optim_g, optim_d, cfg: cfg.clone(), device: device.clone(), replicas: Vec::new() }, state))
}

/// Mean validation metrics over the held-out cases in train and eval norm modes.
fn validate(g: &Generator, pairs: &[Pair], cfg: &TrainConfig, device: &Device) -> Result<(Option<CaseMetrics>, Option<CaseMetrics>)> {
    if pairs.is_empty() {
        return Ok((None, None));
    }
    let mut per_mode: [Vec<CaseMetrics>; 2] = [Vec::new(), Vec::new()];
    for pair in pairs {
        // A fresh copy per case: train-mode passes must not touch the trained statistics.
        let copy = g.valid();
        let m = evaluate_case(&copy, pair, cfg, &[NormMode::Eval, NormMode::Train], device)?;
        per_mode[0].push(m[1]);
        per_mode[1].push(m[0]);
    }
    let mean = |v: &[CaseMetrics]| {
        let n = v.len() as f64;
        let masked: Vec<f64> = v.iter().filter_map(|m| m.mae_mask).collect();
        CaseMetrics {
            mae: v.iter().map(|m| m.mae).sum::<f64>() / n,
            mae_mask: (!masked.is_empty()).then(|| masked.iter().sum::<f64>() / masked.len() as f64),
        }
    };
    Ok((Some(mean(&per_mode[0])), Some(mean(&per_mode[1]))))
}

fn log_images(tb: &mut EventWriter, sample: &Sample, fake: Tensor<5>, cfg: &TrainConfig, step: usize) -> Result<()> {
    let z = sample.src.shape()[2] / 2;
    let mut fake = tensor_to_array(fake, 0);
    fake.mapv_inplace(|v| cfg.intensity.dst_inverse(v));
    let w = Window::REFERENCE;
    tb.image("real_a", &axial_slice(&sample.src.data, z, w, ColorMap::Gray), step)?;
    tb.image("fake_b", &axial_slice(&fake, z, w, ColorMap::Jet), step)?;
    tb.image("real_b", &axial_slice(&sample.dst.data, z, w, ColorMap::Jet), step)
}

fn epoch_line(m: &EpochMetrics, total: usize) -> String {
    let mut s = format!("epoch {}/{} lr {:.2e} L1 {:.4}", m.epoch, total, m.lr, m.loss_g_l1);
    if m.loss_g_mask > 0.0 {
        s += &format!(" mask {:.4}", m.loss_g_mask);
    }
    if m.loss_d > 0.0 {
        s += &format!(" G_GAN {:.3} D {:.3}", m.loss_g_gan, m.loss_d);
    }
    for (name, v) in [("train", m.val_train_mode), ("eval", m.val_eval_mode)] {
        if let Some(v) = v {
            s += &format!(" | val {name}-mode MAE {:.2}", v.mae);
            if let Some(x) = v.mae_mask {
                s += &format!(" (mask {x:.2})");
            }
        }
    }
    s + &format!(" [{:.1}s]", m.seconds)
}
