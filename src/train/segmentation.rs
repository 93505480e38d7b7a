//! The chamber-segmentation training task (docs/design.md §5) for the
//! [`engine`](super::engine): per step, augmented cases resized to the network's fixed grid
//! (the image trilinearly, the one-hot labels trilinearly into soft targets) and one Adam step
//! on soft Dice (+ cross-entropy); per epoch, every held-out case segmented as inference does
//! it (on its own grid) and scored by Dice per label, `best/` when the mean Dice of labels
//! 1.. improves.

use super::engine::{self, Losses, Monitored, RunFolder, RunOptions, Save, Task, loss};
use super::parallel;
use super::run::{scalar, stream_seed};
use super::seg_loss::{cross_entropy, soft_dice_loss};
use super::tensorboard::EventWriter;
use crate::analysis::{ColorMap, Window, axial_slice, dice_per_label, mean_dice};
use crate::config::segmentation::{SegConfig, read_case_list};
use crate::data::{Pair, PairedDataset, augment_labelled, volume_to_tensor};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::models::UNet3d;
use crate::models::init::Initializer;
use crate::ops::resize_trilinear;
use crate::predict::segment_volume;
use crate::store::folder::load_optimizer;
use crate::store::segmentation::{self as seg_checkpoint, SegState};
use crate::store::write_json;
use crate::volume::Volume;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Index salt of the dropout stream of an epoch.
const DROPOUT_STREAM: usize = usize::MAX - 1;

/// How to run a segmentation training.
#[derive(Debug, Clone)]
pub struct SegTrainOptions {
    /// The effective configuration (file plus command-line overrides).
    pub config: SegConfig,
    /// Backend.
    pub device: DeviceChoice,
    /// Data-parallel training on these devices (two or more; the first holds the network and
    /// validates); empty to train on `device` alone.
    pub devices: Vec<Device>,
    /// The run folder and reporting.
    pub run: RunOptions,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct SegEpochMetrics {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean training loss over the epoch's steps.
    pub loss: f64,
    /// Mean soft-Dice term.
    pub loss_dice: f64,
    /// Mean cross-entropy term (0 when not used).
    pub loss_ce: f64,
    /// Validation Dice of labels 1.. (mean over held-out cases; `None` for a label absent
    /// from every case and prediction).
    pub val_dice: Vec<Option<f64>>,
    /// Mean of `val_dice`.
    pub val_mean_dice: Option<f64>,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// What a finished segmentation training produced.
#[derive(Debug, Clone)]
pub struct SegTrainReport {
    /// `<checkpoints-dir>/<name>`.
    pub run_dir: PathBuf,
    /// Epoch the run started after (0 for a fresh run).
    pub start_epoch: usize,
    /// Last finished epoch.
    pub epoch: usize,
    /// Training and held-out case ids.
    pub split: (Vec<String>, Vec<String>),
    /// Metrics of the last epoch.
    pub last: Option<SegEpochMetrics>,
    /// Best mean validation Dice and its epoch.
    pub best: Option<(f64, usize)>,
    /// Cases skipped for missing files.
    pub skipped: Vec<(String, String)>,
    /// Wall-clock seconds of this invocation's epochs.
    pub seconds: f64,
}

fn adam(cfg: &SegConfig) -> AdamConfig {
    cfg.run.adam(cfg.beta1)
}

/// Training and held-out cases: `val_cases` when given; else the lists `train_list` /
/// `val_list` when they exist (a missing training list means every other case); else the
/// last `val_count` cases by id.
pub fn split_cases(pairs: Vec<Pair>, cfg: &SegConfig) -> Result<(Vec<Pair>, Vec<Pair>)> {
    let known = |ids: &[String], from: &str| -> Result<()> {
        for id in ids {
            if !pairs.iter().any(|p| &p.pid == id) {
                return Err(Error::invalid(format!("case '{id}' named in {from} is not among the complete cases")));
            }
        }
        Ok(())
    };
    let val: Vec<String> = if !cfg.run.val_cases.is_empty() {
        known(&cfg.run.val_cases, "val_cases")?;
        cfg.run.val_cases.clone()
    } else if let Some(list) = read_case_list(&cfg.val_list)? {
        known(&list, &cfg.val_list.display().to_string())?;
        list
    } else {
        let n = pairs.len().saturating_sub(cfg.val_count.min(pairs.len()));
        pairs[n..].iter().map(|p| p.pid.clone()).collect()
    };
    let train: Option<Vec<String>> = match read_case_list(&cfg.train_list)? {
        Some(list) if cfg.run.val_cases.is_empty() => {
            known(&list, &cfg.train_list.display().to_string())?;
            if let Some(id) = list.iter().find(|id| val.contains(id)) {
                return Err(Error::invalid(format!("case '{id}' is both a training and a validation case")));
            }
            Some(list)
        }
        _ => None,
    };
    let (mut train_pairs, mut val_pairs) = (Vec::new(), Vec::new());
    for p in pairs {
        if val.contains(&p.pid) {
            val_pairs.push(p);
        } else if train.as_ref().is_none_or(|t| t.contains(&p.pid)) {
            train_pairs.push(p);
        }
    }
    Ok((train_pairs, val_pairs))
}

/// The label map of a loaded case, checked: integer values in `0..classes`.
fn check_labels(labels: &Volume, classes: usize, path: &Path) -> Result<()> {
    if let Some(v) = labels.data.iter().find(|&&v| v.fract() != 0.0 || v < 0.0 || v >= classes as f32) {
        return Err(Error::format(path, format!("label map holds {v}, not a label in 0..{}", classes - 1)));
    }
    Ok(())
}

/// `[1, classes, x, y, z]` one-hot encoding of a label map.
fn one_hot(labels: &Volume, classes: usize, device: &Device) -> Tensor<5> {
    let [nx, ny, nz] = labels.shape();
    let n = nx * ny * nz;
    let mut values = vec![0.0f32; classes * n];
    for (i, &v) in labels.data.iter().enumerate() {
        values[v as usize * n + i] = 1.0;
    }
    Tensor::from_data(TensorData::new(values, [1, classes, nx, ny, nz]), device)
}

/// One training case ready for the network: image and soft targets on the fixed grid.
struct Prepared {
    image: Volume,
    labels: Volume,
}

/// Loss terms of one step.
#[derive(Default, Clone, Copy)]
struct StepLoss {
    total: f64,
    dice: f64,
    ce: f64,
}

/// One optimization step on `batch`, split over `devices` (one share each, see
/// [`parallel`]); returns the network, the losses (weighted over the shares) and the first
/// share's logits.
fn step(net: UNet3d, optim: &mut ModuleOptimizer, batch: &[Prepared], cfg: &SegConfig, lr: f64, devices: &[Device]) -> (UNet3d, StepLoss, Tensor<5>) {
    let size = cfg.net.input_size;
    let classes = cfg.net.classes;
    let multi = devices.len() > 1;
    let results = parallel::on_devices(parallel::shares(batch, devices), |(part, device, weight)| {
        let net = parallel::replica(&net, device, multi);
        let mut xs = Vec::with_capacity(part.len());
        let mut ts = Vec::with_capacity(part.len());
        for p in part {
            let x = volume_to_tensor(&[&p.image.map(|v| cfg.intensity.apply(v))], device);
            xs.push(resize_trilinear(x, size, true));
            ts.push(resize_trilinear(one_hot(&p.labels, classes, device), size, true));
        }
        let (x, target) = (Tensor::cat(xs, 0), Tensor::cat(ts, 0));
        let logits = net.forward(x, true);
        let dice = soft_dice_loss(logits.clone(), target.clone(), cfg.dice_first_class);
        let mut loss = StepLoss { dice: scalar(&dice), ..Default::default() };
        let mut total = dice;
        if cfg.ce_weight > 0.0 {
            let ce = cross_entropy(logits.clone(), target);
            loss.ce = scalar(&ce);
            total = total + ce.mul_scalar(cfg.ce_weight);
        }
        loss.total = scalar(&total);
        let grads = GradientsParams::from_grads(total.mul_scalar(weight).backward(), &net);
        (loss, weight, logits.detach(), grads, device.clone())
    });
    let mut loss = StepLoss::default();
    let mut first = None;
    let mut grads = Vec::with_capacity(results.len());
    for (l, w, logits, g, device) in results {
        loss.dice += w * l.dice;
        loss.ce += w * l.ce;
        loss.total += w * l.total;
        first.get_or_insert(logits);
        grads.push((g, device));
    }
    let net = parallel::optimizer_step(optim, lr, net, grads);
    (net, loss, first.expect("a non-empty batch"))
}

/// Segment every held-out case on its own grid and return the mean Dice of each label 1..
/// over the cases (`None` where no case has the label in truth or prediction).
pub fn validate(net: &UNet3d, pairs: &[Pair], cfg: &SegConfig, device: &Device) -> Result<Vec<Option<f64>>> {
    let labels = cfg.net.classes - 1;
    let mut sums = vec![(0.0, 0usize); labels];
    for pair in pairs {
        let sample = pair.load()?;
        check_labels(&sample.dst, cfg.net.classes, &pair.dst)?;
        let pred = segment_volume(net, &sample.src, &cfg.intensity, device);
        for (s, d) in sums.iter_mut().zip(dice_per_label(&pred.data, &sample.dst.data, cfg.net.classes)) {
            if let Some(d) = d {
                s.0 += d;
                s.1 += 1;
            }
        }
    }
    Ok(sums.into_iter().map(|(sum, n)| (n > 0).then(|| sum / n as f64)).collect())
}

/// The segmentation network's part of a training run.
struct SegmentationTask {
    optim: ModuleOptimizer,
    cfg: SegConfig,
    val_pairs: Vec<Pair>,
    /// The network's devices (autodiff), one per share of a step.
    replicas: Vec<Device>,
    /// Where validation runs.
    device: Device,
    /// The network as inference runs it, after the last validation (saved as `best`).
    validated: Option<UNet3d>,
}

impl Task for SegmentationTask {
    type Config = SegConfig;
    type Model = UNet3d;
    type Sample = Prepared;
    type Metrics = SegEpochMetrics;

    fn preparer(&self) -> Arc<dyn Fn(&Pair, &mut ChaCha8Rng) -> Result<Prepared> + Send + Sync> {
        let (classes, aug) = (self.cfg.net.classes, self.cfg.augment.clone());
        Arc::new(move |pair, rng| {
            let sample = pair.load()?;
            check_labels(&sample.dst, classes, &pair.dst)?;
            let shape = sample.src.shape();
            let (image, labels) = augment_labelled(sample.src, sample.dst, shape, &aug, rng);
            Ok(Prepared { image, labels })
        })
    }

    fn begin_epoch(&mut self, epoch: usize) {
        self.replicas[0].seed(stream_seed(self.cfg.run.seed, epoch, DROPOUT_STREAM));
    }

    fn step(&mut self, net: UNet3d, batch: &[Prepared], lr: f64) -> (UNet3d, Losses, Tensor<5>) {
        let (net, l, logits) = step(net, &mut self.optim, batch, &self.cfg, lr, &self.replicas);
        let mut losses = vec![("total", l.total), ("dice", l.dice)];
        if self.cfg.ce_weight > 0.0 {
            losses.push(("ce", l.ce));
        }
        (net, losses, logits)
    }

    fn step_message(&self, _net: &UNet3d, l: &[(&'static str, f64)]) -> String {
        format!("loss {:.4} dice {:.4}", loss(l, "total"), loss(l, "dice"))
    }

    fn log_images(&self, tb: &mut EventWriter, sample: &Prepared, logits: Tensor<5>, step: usize) -> Result<()> {
        log_images(tb, sample, logits, &self.cfg, step)
    }

    fn log_weights(&self, tb: &mut EventWriter, net: &UNet3d, step: usize) -> Result<()> {
        tb.weights("seg", net, step)
    }

    fn end_epoch(&mut self, net: &UNet3d, epoch: usize, lr: f64, means: &[(&'static str, f64)], tb: &mut EventWriter, step: usize) -> Result<SegEpochMetrics> {
        let valid_net = net.valid();
        let val_dice = if self.val_pairs.is_empty() { Vec::new() } else { validate(&valid_net, &self.val_pairs, &self.cfg, &self.device)? };
        self.validated = Some(valid_net);
        let val_mean_dice = mean_dice(&val_dice);
        for (l, d) in val_dice.iter().enumerate() {
            if let Some(d) = d {
                tb.scalar(&format!("val_dice/label_{}", l + 1), *d as f32, step)?;
            }
        }
        if let Some(m) = val_mean_dice {
            tb.scalar("val_dice/mean", m as f32, step)?;
        }
        Ok(SegEpochMetrics {
            epoch,
            lr,
            loss: loss(means, "total"),
            loss_dice: loss(means, "dice"),
            loss_ce: loss(means, "ce"),
            val_dice,
            val_mean_dice,
            seconds: 0.0,
        })
    }

    fn set_seconds(metrics: &mut SegEpochMetrics, seconds: f64) {
        metrics.seconds = seconds;
    }

    /// The mean validation Dice; without held-out cases, 1 − the training loss.
    fn monitored(&self, m: &SegEpochMetrics) -> Monitored {
        Monitored { value: m.val_mean_dice.unwrap_or(1.0 - m.loss), higher_is_better: true }
    }

    fn keeps_best(&self) -> bool {
        true
    }

    fn save(&self, net: &UNet3d, run_dir: &Path, label: &str, kind: Save, state: &SegState) -> Result<()> {
        match kind {
            Save::Best => seg_checkpoint::save(run_dir, label, self.validated.as_ref().expect("validated before saving best"), None, state),
            Save::Resume => seg_checkpoint::save(run_dir, label, net, Some(&self.optim), state),
        }
        .map(drop)
    }

    fn epoch_line(&self, m: &SegEpochMetrics, total: usize, best: bool) -> String {
        epoch_line(m, total, best)
    }
}

/// Train a segmentation network as `opts` says; returns where the checkpoints are.
pub fn train_seg(opts: &SegTrainOptions) -> Result<SegTrainReport> {
    let cfg = opts.config.clone();
    cfg.validate()?;
    let root = cfg.run.data_root.clone().ok_or_else(|| Error::invalid("no data root: set data_root in the config or pass --data-root"))?;
    if !root.is_dir() {
        return Err(Error::format(&root, "data root is not a folder"));
    }
    let dataset = PairedDataset::scan(&root, &cfg.pattern())?;
    let skipped = dataset.skipped.clone();
    let (train_pairs, val_pairs) = split_cases(dataset.pairs, &cfg)?;
    if train_pairs.is_empty() {
        return Err(Error::format(&root, format!("no complete training case (need {} and {} in each case folder)", cfg.image, cfg.labels)));
    }
    let split = (train_pairs.iter().map(|p| p.pid.clone()).collect(), val_pairs.iter().map(|p| p.pid.clone()).collect());
    let folder = RunFolder::open(&opts.run, &cfg.run.name)?;
    if opts.devices.len() == 1 {
        return Err(Error::invalid("data-parallel training needs two or more devices (one device: use --device)"));
    }
    let device = match opts.devices.first() {
        Some(d) => d.clone(),
        None => opts.device.device()?,
    };
    let ad = device.clone().autodiff();
    let replicas: Vec<Device> = if opts.devices.is_empty() { vec![ad.clone()] } else { opts.devices.iter().map(|d| d.clone().autodiff()).collect() };
    let (net, optim, state) = match &folder.resume {
        Some(dir) => {
            let (net, mut state) = seg_checkpoint::load(dir, &ad)?;
            if state.config.net != cfg.net {
                return Err(Error::format(dir, "the checkpoint's network differs from the configuration; resume with the run's own config.json"));
            }
            let optim = load_optimizer(&dir.join(seg_checkpoint::OPTIM), &adam(&cfg))?;
            state.schedule.n_epochs = cfg.run.n_epochs;
            state.schedule.n_epochs_decay = cfg.run.n_epochs_decay;
            state.config = cfg.clone();
            (net, optim, state)
        }
        None => {
            let net = cfg.net.init(&mut Initializer::new(cfg.run.seed, &ad));
            (net, adam(&cfg).init(), SegState { epoch: 0, global_step: 0, schedule: cfg.run.schedule(), best: None, config: cfg.clone() })
        }
    };
    let mut notes: Vec<String> = skipped.iter().map(|(pid, why)| format!("skipped case {pid}: {why}")).collect();
    notes.push(format!(
        "train-seg: {} training and {} validation cases, {} parameters, fixed grid {:?}",
        train_pairs.len(),
        val_pairs.len(),
        net.num_params(),
        cfg.net.input_size
    ));
    let devices = replicas.len();
    let task = SegmentationTask { optim, cfg, val_pairs, replicas, device, validated: None };
    let report = engine::run(&folder, task, net, state, train_pairs, devices, &opts.run, &notes)?;
    write_json(&folder.dir.join("split.json"), &split)?;
    Ok(SegTrainReport {
        run_dir: report.run_dir,
        start_epoch: report.start_epoch,
        epoch: report.epoch,
        split,
        last: report.last,
        best: report.best,
        skipped,
        seconds: report.seconds,
    })
}

fn log_images(tb: &mut EventWriter, p: &Prepared, logits: Tensor<5>, cfg: &SegConfig, step: usize) -> Result<()> {
    let [_, _, nx, ny, nz] = logits.dims();
    let first = logits.narrow(0, 0, 1);
    let pred = first.argmax(1).into_data().convert::<f32>().try_to_vec::<f32>().expect("labels");
    let pred = ndarray::Array3::from_shape_vec((nx, ny, nz), pred).expect("shape");
    let labels = Window { width: (cfg.net.classes - 1) as f32, level: (cfg.net.classes - 1) as f32 / 2.0 };
    let image = Window { width: cfg.intensity.clip[1] - cfg.intensity.clip[0], level: (cfg.intensity.clip[1] + cfg.intensity.clip[0]) / 2.0 };
    let z = p.image.shape()[2] / 2;
    tb.image("cta", &axial_slice(&p.image.data, z, image, ColorMap::Gray), step)?;
    tb.image("labels", &axial_slice(&p.labels.data, z, labels, ColorMap::Jet), step)?;
    tb.image("prediction", &axial_slice(&pred, nz / 2, labels, ColorMap::Jet), step)
}

fn epoch_line(m: &SegEpochMetrics, total: usize, best: bool) -> String {
    let mut s = format!("epoch {}/{} lr {:.2e} loss {:.4} (dice {:.4}", m.epoch, total, m.lr, m.loss, m.loss_dice);
    if m.loss_ce > 0.0 {
        s += &format!(", ce {:.4}", m.loss_ce);
    }
    s += ")";
    if let Some(mean) = m.val_mean_dice {
        let per: Vec<String> = m.val_dice.iter().enumerate().map(|(l, d)| format!("{}:{}", l + 1, d.map_or("-".into(), |d| format!("{d:.3}")))).collect();
        s += &format!(" | val Dice {mean:.4} [{}]{}", per.join(" "), if best { " best" } else { "" });
    }
    s + &format!(" [{:.1}s]", m.seconds)
}
