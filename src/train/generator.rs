//! The generator's training task (pix2pix's, in 3-D) for the [`engine`](super::engine): per
//! step an optional discriminator update, then a generator update on λ_L1·L1 + λ_mask·masked
//! L1 + λ_GAN·GAN; per epoch a validation of the held-out cases in both norm modes.

use super::engine::{self, Monitored, RunReport, Save, Task};
use super::loss::{gan_loss, l1, masked_l1};
use super::metrics::{LossTerm, Losses};
use super::parallel;
use super::run::{Setup, TaskConfig, TrainRequest, scalar};
use super::tensorboard::EventWriter;
use super::validate::{CaseMetrics, evaluate_case};
use crate::analysis::{ColorMap, Window, axial_slice};
use crate::config::TrainConfig;
use crate::data::{Pair, PairPattern, Sample, augment, tensor_to_array, volume_to_tensor};
use crate::distributed::Group;
use crate::error::{Error, Result};
use crate::models::init::Initializer;
use crate::models::{Discriminator, Generator, NormMode};
use crate::store::generator::{self as checkpoint, CheckpointParts, TrainState};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Salt separating the discriminator's initialization stream from the generator's.
const DISCRIMINATOR_SEED_SALT: u64 = 0x0D15C;

/// The generator's loss terms (network units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GenLoss {
    /// Generator L1 over the crop.
    L1,
    /// Masked L1 (when `lambda_mask` > 0).
    Mask,
    /// Generator GAN term (with a discriminator).
    Gan,
    /// Discriminator loss (with a discriminator).
    D,
}

impl LossTerm for GenLoss {
    const TERMS: &'static [(Self, &'static str, &'static str)] =
        &[(GenLoss::L1, "G_L1", "loss_g_l1"), (GenLoss::Mask, "G_mask", "loss_g_mask"), (GenLoss::Gan, "G_GAN", "loss_g_gan"), (GenLoss::D, "D", "loss_d")];
}

/// The generator's validation after an epoch (in `metrics.jsonl` after the mean losses).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EpochMetrics {
    /// Validation in train norm mode (mean over held-out cases), image units.
    pub val_train_mode: Option<CaseMetrics>,
    /// Validation in eval norm mode.
    pub val_eval_mode: Option<CaseMetrics>,
}

/// The networks and optimizers being trained.
struct Trainer {
    g: Generator,
    d: Option<Discriminator>,
    optim_g: ModuleOptimizer,
    optim_d: Option<ModuleOptimizer>,
    cfg: TrainConfig,
    /// The training devices (autodiff), one per share of a step; the first holds the networks.
    replicas: Vec<Device>,
    /// The ranks that average their gradients with this one's.
    group: Group,
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
    losses: Losses<GenLoss>,
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
    fn step(mut self, batch: &[Sample], lr: f64) -> (Self, Losses<GenLoss>, Tensor<5>) {
        let cfg = self.cfg.clone();
        let map = cfg.intensity;
        let devices = self.replicas.clone();
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
                    losses: Losses::default(),
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
                sh.losses.set(GenLoss::D, scalar(&loss_d));
                GradientsParams::from_grads(loss_d.mul_scalar(sh.weight).backward(), &d)
            });
            (sh, grads)
        });
        let (shards, grads_d): (Vec<Shard>, Vec<Option<GradientsParams>>) = shards.into_iter().unzip();
        let d = match (d, self.optim_d.as_mut()) {
            (Some(d), Some(optim)) => Some(parallel::optimizer_step(optim, lr, d, grads_d.into_iter().flatten().zip(devices.iter().cloned()).collect(), &self.group)),
            (d, _) => d,
        };
        // The generator's losses against the updated discriminator, and its gradients.
        let results: Vec<(Shard, GradientsParams)> = parallel::on_devices(shards, |mut sh| {
            let loss_l1 = l1(sh.fake.clone(), sh.real_b.clone());
            sh.losses.set(GenLoss::L1, scalar(&loss_l1));
            let mut loss_g = loss_l1.mul_scalar(cfg.lambda_l1);
            if let Some(m) = &sh.mask {
                let loss_mask = masked_l1(sh.fake.clone(), sh.real_b.clone(), m.clone());
                sh.losses.set(GenLoss::Mask, scalar(&loss_mask));
                loss_g = loss_g + loss_mask.mul_scalar(cfg.lambda_mask);
            }
            if let Some(d) = &d {
                let d = parallel::replica(d, &sh.device, parallel);
                let loss_gan = gan_loss(cfg.gan_mode, d.forward(Tensor::cat(vec![sh.real_a.clone(), sh.fake.clone()], 1)), true);
                sh.losses.set(GenLoss::Gan, scalar(&loss_gan));
                loss_g = loss_g + loss_gan.mul_scalar(cfg.lambda_gan);
            }
            let grads = GradientsParams::from_grads(loss_g.mul_scalar(sh.weight).backward(), &sh.g);
            (sh, grads)
        });
        let mut losses = Losses::default();
        let mut fake = None;
        let mut grads_g = Vec::with_capacity(n_shards);
        for ((sh, grads), device) in results.into_iter().zip(&devices) {
            losses.add_weighted(sh.weight, &sh.losses);
            fake.get_or_insert(sh.fake.detach());
            grads_g.push((grads, device.clone()));
        }
        self.g = parallel::optimizer_step(&mut self.optim_g, lr, self.g, grads_g, &self.group);
        self.d = d;
        (self, losses, fake.expect("at least one shard"))
    }
}

impl TaskConfig for TrainConfig {
    fn check(&self, on_host: bool) -> Result<()> {
        self.validate()?;
        self.check_memory(on_host)
    }

    fn case_files(&self) -> PairPattern {
        self.data.clone()
    }

    fn beta1(&self) -> f64 {
        self.beta1
    }
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
    type Loss = GenLoss;
    type Metrics = EpochMetrics;

    fn preparer(&self) -> Arc<dyn Fn(&Pair, &mut ChaCha8Rng) -> Result<Sample> + Send + Sync> {
        let (crop, aug) = (self.cfg.crop_size, self.cfg.augment.clone());
        Arc::new(move |pair, rng| Ok(augment(pair.load()?, crop, &aug, rng)))
    }

    fn step(&mut self, trainer: Trainer, batch: &[Sample], lr: f64) -> (Trainer, Losses<GenLoss>, Tensor<5>) {
        trainer.step(batch, lr)
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

    fn validate(&mut self, trainer: &Trainer, tb: &mut EventWriter, step: usize) -> Result<EpochMetrics> {
        let (val_train_mode, val_eval_mode) = validate(&trainer.g, &self.val_pairs, &self.cfg, &self.device)?;
        for (tag, m) in [("val_train_mode", val_train_mode), ("val_eval_mode", val_eval_mode)] {
            if let Some(m) = m {
                tb.scalar(&format!("{tag}/mae"), m.mae as f32, step)?;
                if let Some(x) = m.mae_mask {
                    tb.scalar(&format!("{tag}/mae_mask"), x as f32, step)?;
                }
            }
        }
        Ok(EpochMetrics { val_train_mode, val_eval_mode })
    }

    /// The held-out MAE in the training norm mode, else the training L1.
    fn monitored(&self, m: &EpochMetrics, means: &Losses<GenLoss>) -> Option<Monitored> {
        let val = match self.cfg.norm_mode {
            NormMode::Train => m.val_train_mode,
            NormMode::Eval => m.val_eval_mode,
        };
        Some(Monitored { value: val.map(|v| v.mae).unwrap_or(means.or_zero(GenLoss::L1)), higher_is_better: false })
    }

    fn fingerprint(&self, t: &Trainer) -> u64 {
        parallel::fingerprint(&t.g) ^ t.d.as_ref().map_or(0, |d| parallel::fingerprint(d).rotate_left(1))
    }

    fn save(&self, t: &Trainer, run_dir: &Path, label: &str, _kind: Save, state: &TrainState) -> Result<()> {
        let parts = CheckpointParts { generator: &t.g, discriminator: t.d.as_ref(), optim_g: &t.optim_g, optim_d: t.optim_d.as_ref(), state };
        checkpoint::save(run_dir, label, &parts).map(drop)
    }

    fn summary(&self, means: &Losses<GenLoss>, m: &EpochMetrics, _best: bool) -> String {
        let mut s = format!("L1 {:.4}", means.or_zero(GenLoss::L1));
        if means.or_zero(GenLoss::Mask) > 0.0 {
            s += &format!(" mask {:.4}", means.or_zero(GenLoss::Mask));
        }
        if means.or_zero(GenLoss::D) > 0.0 {
            s += &format!(" G_GAN {:.3} D {:.3}", means.or_zero(GenLoss::Gan), means.or_zero(GenLoss::D));
        }
        for (name, v) in [("train", m.val_train_mode), ("eval", m.val_eval_mode)] {
            if let Some(v) = v {
                s += &format!(" | val {name}-mode MAE {:.2}", v.mae);
                if let Some(x) = v.mae_mask {
                    s += &format!(" (mask {x:.2})");
                }
            }
        }
        s
    }
}

/// How to run a generator training.
pub type TrainOptions = TrainRequest<TrainConfig>;

/// What a finished generator training produced.
pub type TrainReport = RunReport<GenLoss, EpochMetrics>;

/// Train a generator as `opts` says; returns where the checkpoints are.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let setup = Setup::open(opts, |cfg, train_pairs| {
        if cfg.intensity.dst_standardize {
            (cfg.intensity.dst_offset, cfg.intensity.dst_scale) = target_statistics(train_pairs, cfg)?;
        }
        Ok(())
    })?;
    let (cfg, device) = (&setup.config, &setup.replicas[0]);
    let (g, d, state) = match setup.resume() {
        Some(dir) => {
            let (g, state) = checkpoint::load_generator(dir, device)?;
            if state.config.generator != cfg.generator || state.config.discriminator != cfg.discriminator {
                return Err(Error::format(dir, "the checkpoint's generator/discriminator architecture differs from the configuration; resume with the run's own config.json"));
            }
            let d = checkpoint::load_discriminator(dir, &state, device)?;
            (g.train(), d.map(|d| d.train()), setup.state(Some(state)))
        }
        None => {
            let g = cfg.generator.init(&mut Initializer::new(cfg.run.seed, device));
            let d = cfg.discriminator.as_ref().map(|dc| dc.init(&mut Initializer::new(cfg.run.seed ^ DISCRIMINATOR_SEED_SALT, device), 2));
            (g, d, setup.state(None))
        }
    };
    let optim_g = setup.optimizer(checkpoint::OPTIM_G)?;
    let optim_d = d.as_ref().map(|_| setup.optimizer(checkpoint::OPTIM_D)).transpose()?;
    let trainer = Trainer { g, d, optim_g, optim_d, cfg: cfg.clone(), replicas: setup.replicas.clone(), group: setup.group.clone() };
    let task = GeneratorTask { cfg: cfg.clone(), val_pairs: setup.val_pairs.clone(), device: setup.device.clone() };
    engine::run(&setup, task, trainer, state, &[])
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
