//! The training loop (pix2pix's, in 3-D): per step an optional discriminator update, then a
//! generator update on λ_L1·L1 + λ_mask·masked L1 + λ_GAN·GAN; per epoch a validation, the
//! learning-rate schedule, `latest` and numbered checkpoints, TensorBoard events and a line in
//! `metrics.jsonl`.

use crate::store::generator::{self as checkpoint, CheckpointParts, TrainState};
use super::parallel;
use crate::config::TrainConfig;
use super::loss::{gan_loss, l1, masked_l1};
use super::progress::Progress;
use super::run::{append_metrics, scalar, stream_seed, trim_metrics};
use super::tensorboard::EventWriter;
use super::validate::{CaseMetrics, evaluate_case};
use crate::analysis::{ColorMap, Window, axial_slice};
use crate::data::{Pair, PairedDataset, Prefetcher, Sample, augment, tensor_to_array, volume_to_tensor};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::models::init::Initializer;
use crate::models::{Discriminator, Generator, NormMode};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// PyTorch's Adam ε.
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
    /// Parent of the run folder.
    pub checkpoints_dir: PathBuf,
    /// Resume from `<run>/latest`.
    pub continue_train: bool,
    /// No progress bar (the epoch lines are still printed).
    pub quiet: bool,
    /// Prefix of the printed lines, when several runs share one terminal.
    pub tag: Option<String>,
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
    super::run::adam(cfg.beta1, cfg.beta2)
}

/// Train a generator as `opts` says; returns where the checkpoints are.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let mut cfg = opts.config.clone();
    cfg.validate()?;
    cfg.check_memory(opts.device.is_cpu() && opts.devices.is_empty())?;
    if opts.devices.len() == 1 {
        return Err(Error::invalid("data-parallel training needs two or more devices (one device: use --device)"));
    }
    let root = cfg.data_root.clone().ok_or_else(|| Error::invalid("no data root: set data_root in the config or pass --data-root"))?;
    if !root.is_dir() {
        return Err(Error::format(&root, "data root is not a folder"));
    }
    let dataset = PairedDataset::scan(&root, &cfg.data)?;
    let skipped = dataset.skipped.clone();
    let (train_pairs, val_pairs) = dataset.split(&cfg.val_cases)?;
    if train_pairs.is_empty() {
        return Err(Error::format(&root, format!("no complete training case (need {} and {} in each case folder)", cfg.data.src, cfg.data.dst)));
    }
    if cfg.intensity.dst_standardize {
        let (mean, sd) = target_statistics(&train_pairs, &cfg)?;
        cfg.intensity.dst_offset = mean;
        cfg.intensity.dst_scale = sd;
    }
    let run_dir = opts.checkpoints_dir.join(&cfg.name);
    // One process per run folder: a second `train` on it is refused, naming the holder.
    let _lock = crate::io::lock::FolderLock::acquire(&run_dir)?;
    let resume_dir = if opts.continue_train {
        Some(checkpoint::resolve(&run_dir)?)
    } else {
        if checkpoint::resolve(&run_dir).is_ok() {
            return Err(Error::format(&run_dir, "a run with this name already has checkpoints: pass --continue-train to resume it, or choose another --name"));
        }
        None
    };
    let device = match opts.devices.first() {
        Some(d) => d.clone(),
        None => opts.device.device()?,
    };
    let ad = device.clone().autodiff();
    let (mut trainer, mut state) = match &resume_dir {
        Some(dir) => resume(dir, &cfg, &ad)?,
        None => fresh(&cfg, &ad),
    };
    trainer.replicas = opts.devices.iter().map(|d| d.clone().autodiff()).collect();
    // Each step takes batch_size samples per device.
    let step_batch = cfg.batch_size * opts.devices.len().max(1);
    trim_metrics(&run_dir, state.epoch)?;
    crate::io::atomic::write_bytes_atomically(&run_dir.join("config.json"), cfg.to_json().as_bytes())?;
    let mut tb = EventWriter::create(&run_dir.join("tb"))?;
    let progress = Progress::new(0, 0, opts.quiet).tagged(opts.tag.as_deref());
    for (pid, why) in &skipped {
        progress.line(&format!("skipped case {pid}: {why}"));
    }
    let total_epochs = cfg.total_epochs();
    let samples_per_epoch = train_pairs.len() * cfg.samples_per_volume;
    let steps_per_epoch = samples_per_epoch.div_ceil(step_batch);
    let progress = Progress::new((total_epochs * steps_per_epoch) as u64, (state.epoch * steps_per_epoch) as u64, opts.quiet).tagged(opts.tag.as_deref());
    let start_epoch = state.epoch;
    let train_pairs = Arc::new(train_pairs);
    let mut last = None;
    for epoch in state.epoch + 1..=total_epochs {
        let started = Instant::now();
        progress.set_epoch(epoch, total_epochs);
        let lr = state.schedule.lr(epoch);
        let mut order: Vec<usize> = (0..samples_per_epoch).map(|i| i % train_pairs.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream_seed(cfg.seed, epoch, usize::MAX)));
        let loader = {
            let (pairs, order, cfg) = (train_pairs.clone(), order.clone(), cfg.clone());
            Prefetcher::spawn(steps_per_epoch, cfg.workers, cfg.prefetch, move |step| -> Result<Vec<Sample>> {
                order[step * step_batch..((step + 1) * step_batch).min(order.len())]
                    .iter()
                    .enumerate()
                    .map(|(j, &i)| {
                        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(cfg.seed, epoch, step * step_batch + j));
                        Ok(augment(pairs[i].load()?, cfg.crop_size, &cfg.augment, &mut rng))
                    })
                    .collect()
            })
        };
        let mut sum = StepLosses::default();
        for (step, batch) in loader.enumerate() {
            let batch = batch?;
            let (t, l, fake) = trainer.step(&batch, lr);
            trainer = t;
            state.global_step += 1;
            let gs = state.global_step;
            sum.l1 += l.l1;
            sum.mask += l.mask;
            sum.gan += l.gan;
            sum.d += l.d;
            tb.scalar("loss/G_L1", l.l1 as f32, gs)?;
            if cfg.lambda_mask > 0.0 {
                tb.scalar("loss/G_mask", l.mask as f32, gs)?;
            }
            if trainer.d.is_some() {
                tb.scalar("loss/G_GAN", l.gan as f32, gs)?;
                tb.scalar("loss/D", l.d as f32, gs)?;
            }
            tb.scalar("lr", lr as f32, gs)?;
            if gs % cfg.display_freq == 0 || (epoch == 1 && step == 0) {
                log_images(&mut tb, &batch[0], fake, &cfg, gs)?;
            }
            progress.step(format!("L1 {:.4} mask {:.4}{}", l.l1, l.mask, if trainer.d.is_some() { format!(" G_GAN {:.3} D {:.3}", l.gan, l.d) } else { String::new() }));
        }
        let n = steps_per_epoch as f64;
        let (val_train, val_eval) = validate(&trainer.g, &val_pairs, &cfg, &device)?;
        let mut metrics = EpochMetrics {
            epoch,
            lr,
            loss_g_l1: sum.l1 / n,
            loss_g_mask: sum.mask / n,
            loss_g_gan: sum.gan / n,
            loss_d: sum.d / n,
            val_train_mode: val_train,
            val_eval_mode: val_eval,
            seconds: 0.0,
        };
        for (tag, m) in [("val_train_mode", val_train), ("val_eval_mode", val_eval)] {
            if let Some(m) = m {
                tb.scalar(&format!("{tag}/mae"), m.mae as f32, state.global_step)?;
                if let Some(x) = m.mae_mask {
                    tb.scalar(&format!("{tag}/mae_mask"), x as f32, state.global_step)?;
                }
            }
        }
        let monitored = match cfg.norm_mode {
            NormMode::Train => val_train.map(|m| m.mae),
            NormMode::Eval => val_eval.map(|m| m.mae),
        }
        .unwrap_or(metrics.loss_g_l1);
        state.schedule.end_epoch(monitored);
        state.epoch = epoch;
        // The metrics line first, then the checkpoint: a run killed in between resumes from the
        // previous checkpoint and drops the line of the epoch it repeats.
        metrics.seconds = started.elapsed().as_secs_f64();
        append_metrics(&run_dir, &metrics)?;
        let parts = CheckpointParts {
            generator: &trainer.g,
            discriminator: trainer.d.as_ref(),
            optim_g: &trainer.optim_g,
            optim_d: trainer.optim_d.as_ref(),
            state: &state,
        };
        // The numbered checkpoint before `latest`, so `latest` never runs ahead of it.
        if epoch % cfg.save_epoch_freq == 0 || epoch == total_epochs {
            checkpoint::save(&run_dir, &checkpoint::epoch_dir_name(epoch), &parts)?;
        }
        checkpoint::save(&run_dir, checkpoint::LATEST, &parts)?;
        tb.flush()?;
        progress.line(&epoch_line(&metrics, total_epochs));
        last = Some(metrics);
    }
    progress.finish();
    Ok(TrainReport { run_dir, start_epoch, epoch: state.epoch, last, skipped })
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
    let g = cfg.generator.init(&mut Initializer::new(cfg.seed, device));
    let d = cfg.discriminator.as_ref().map(|dc| dc.init(&mut Initializer::new(cfg.seed ^ DISCRIMINATOR_SEED_SALT, device), 2));
    let trainer = Trainer {
        g,
        optim_d: d.as_ref().map(|_| adam(cfg).init()),
        d,
        optim_g: adam(cfg).init(),
        cfg: cfg.clone(),
        device: device.clone(),
        replicas: Vec::new(),
    };
    let state = TrainState { epoch: 0, global_step: 0, schedule: cfg.schedule(), config: cfg.clone() };
    (trainer, state)
}

fn resume(dir: &Path, cfg: &TrainConfig, device: &Device) -> Result<(Trainer, TrainState)> {
    let (g, mut state) = checkpoint::load_generator(dir, device)?;
    let old = &state.config;
    if old.generator != cfg.generator || old.discriminator != cfg.discriminator {
        return Err(Error::format(dir, "the checkpoint's generator/discriminator architecture differs from the configuration; resume with the run's own config.json"));
    }
    let d = checkpoint::load_discriminator(dir, &state, device)?;
    let optim_g = checkpoint::load_optimizer(&dir.join(checkpoint::OPTIM_G), &adam(cfg))?;
    let optim_d = match d {
        Some(_) => Some(checkpoint::load_optimizer(&dir.join(checkpoint::OPTIM_D), &adam(cfg))?),
        None => None,
    };
    // The schedule continues (its state and base rate from the checkpoint); a changed number
    // of epochs extends or shortens it.
    state.schedule.n_epochs = cfg.n_epochs;
    state.schedule.n_epochs_decay = cfg.n_epochs_decay;
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
