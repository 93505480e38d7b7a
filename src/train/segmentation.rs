//! The chamber-segmentation training task (docs/design.md §5) for the
//! [`engine`](super::engine): per step, augmented cases resized to the network's fixed grid
//! (the image trilinearly, the one-hot labels trilinearly into soft targets) and one Adam step
//! on soft Dice (+ cross-entropy); per epoch, every held-out case segmented as inference does
//! it (on its own grid) and scored by Dice per label, `best/` when the mean Dice of labels
//! 1.. improves.

use super::engine::{self, Monitored, RunReport, Save, Task};
use super::metrics::{LossTerm, Losses};
use super::parallel;
use super::run::{Setup, TaskConfig, TrainRequest, scalar, stream_seed};
use super::seg_loss::{cross_entropy, soft_dice_loss};
use super::tensorboard::EventWriter;
use crate::analysis::{ColorMap, Window, axial_slice, dice_per_label, mean_dice};
use crate::config::segmentation::{SegConfig, read_case_list};
use crate::data::{Pair, PairPattern, augment_labelled, volume_to_tensor};
use crate::distributed::Group;
use crate::error::{Error, Result};
use crate::models::UNet3d;
use crate::models::init::Initializer;
use crate::ops::resize_trilinear;
use crate::predict::segment_volume;
use crate::store::segmentation::{self as seg_checkpoint, SegState};
use crate::store::write_json;
use crate::volume::Volume;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Index salt of the dropout stream of an epoch.
const DROPOUT_STREAM: usize = usize::MAX - 1;

/// The segmentation loss terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegLoss {
    /// The loss optimized: soft Dice + `ce_weight` · cross-entropy.
    Total,
    /// The soft-Dice term.
    Dice,
    /// The cross-entropy term (when `ce_weight` > 0).
    Ce,
}

impl LossTerm for SegLoss {
    const TERMS: &'static [(Self, &'static str, &'static str)] = &[(SegLoss::Total, "total", "loss"), (SegLoss::Dice, "dice", "loss_dice"), (SegLoss::Ce, "ce", "loss_ce")];
}

/// The held-out Dice after an epoch (in `metrics.jsonl` after the mean losses).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SegEpochMetrics {
    /// Validation Dice of labels 1.. (mean over held-out cases; `None` for a label absent
    /// from every case and prediction).
    pub val_dice: Vec<Option<f64>>,
    /// Mean of `val_dice`.
    pub val_mean_dice: Option<f64>,
}

impl TaskConfig for SegConfig {
    fn check(&self, _on_host: bool) -> Result<()> {
        self.validate()
    }

    fn case_files(&self) -> PairPattern {
        self.pattern()
    }

    fn split(&self, pairs: Vec<Pair>) -> Result<(Vec<Pair>, Vec<Pair>)> {
        split_cases(pairs, self)
    }

    fn beta1(&self) -> f64 {
        self.beta1
    }
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

/// One optimization step on `batch`, split over `devices` (one share each, see
/// [`parallel`]); returns the network, the losses (weighted over the shares) and the first
/// share's logits.
fn step(net: UNet3d, optim: &mut ModuleOptimizer, batch: &[Prepared], cfg: &SegConfig, lr: f64, devices: &[Device], group: &Group) -> (UNet3d, Losses<SegLoss>, Tensor<5>) {
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
        let mut loss = Losses::default();
        loss.set(SegLoss::Dice, scalar(&dice));
        let mut total = dice;
        if cfg.ce_weight > 0.0 {
            let ce = cross_entropy(logits.clone(), target);
            loss.set(SegLoss::Ce, scalar(&ce));
            total = total + ce.mul_scalar(cfg.ce_weight);
        }
        loss.set(SegLoss::Total, scalar(&total));
        let grads = GradientsParams::from_grads(total.mul_scalar(weight).backward(), &net);
        (loss, weight, logits.detach(), grads, device.clone())
    });
    let mut loss = Losses::default();
    let mut first = None;
    let mut grads = Vec::with_capacity(results.len());
    for (l, w, logits, g, device) in results {
        loss.add_weighted(w, &l);
        first.get_or_insert(logits);
        grads.push((g, device));
    }
    let net = parallel::optimizer_step(optim, lr, net, grads, group);
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
    /// The ranks that average their gradients with this one's.
    group: Group,
    /// Where validation runs.
    device: Device,
    /// The network as inference runs it, after the last validation (saved as `best`).
    validated: Option<UNet3d>,
}

impl Task for SegmentationTask {
    type Config = SegConfig;
    type Model = UNet3d;
    type Sample = Prepared;
    type Loss = SegLoss;
    type Metrics = SegEpochMetrics;
    const SAVES_BEST: bool = true;

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
        // Each rank its own dropout stream (rank 0's is a single process's).
        self.replicas[0].seed(stream_seed(self.cfg.run.seed, epoch, DROPOUT_STREAM - self.group.rank()));
    }

    fn fingerprint(&self, net: &UNet3d) -> u64 {
        parallel::fingerprint(net)
    }

    fn step(&mut self, net: UNet3d, batch: &[Prepared], lr: f64) -> (UNet3d, Losses<SegLoss>, Tensor<5>) {
        step(net, &mut self.optim, batch, &self.cfg, lr, &self.replicas, &self.group)
    }

    fn log_images(&self, tb: &mut EventWriter, sample: &Prepared, logits: Tensor<5>, step: usize) -> Result<()> {
        log_images(tb, sample, logits, &self.cfg, step)
    }

    fn log_weights(&self, tb: &mut EventWriter, net: &UNet3d, step: usize) -> Result<()> {
        tb.weights("seg", net, step)
    }

    fn validate(&mut self, net: &UNet3d, tb: &mut EventWriter, step: usize) -> Result<SegEpochMetrics> {
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
        Ok(SegEpochMetrics { val_dice, val_mean_dice })
    }

    /// The mean validation Dice; without held-out cases, 1 − the training loss.
    fn monitored(&self, m: &SegEpochMetrics, means: &Losses<SegLoss>) -> Option<Monitored> {
        Some(Monitored { value: m.val_mean_dice.unwrap_or(1.0 - means.or_zero(SegLoss::Total)), higher_is_better: true })
    }

    fn save(&self, net: &UNet3d, run_dir: &Path, label: &str, kind: Save, state: &SegState) -> Result<()> {
        match kind {
            Save::Best => seg_checkpoint::save(run_dir, label, self.validated.as_ref().expect("validated before saving best"), None, state),
            Save::Resume => seg_checkpoint::save(run_dir, label, net, Some(&self.optim), state),
        }
        .map(drop)
    }

    fn summary(&self, means: &Losses<SegLoss>, m: &SegEpochMetrics, best: bool) -> String {
        let mut s = format!("loss {:.4} (dice {:.4}", means.or_zero(SegLoss::Total), means.or_zero(SegLoss::Dice));
        if means.or_zero(SegLoss::Ce) > 0.0 {
            s += &format!(", ce {:.4}", means.or_zero(SegLoss::Ce));
        }
        s += ")";
        if let Some(mean) = m.val_mean_dice {
            let per: Vec<String> = m.val_dice.iter().enumerate().map(|(l, d)| format!("{}:{}", l + 1, d.map_or("-".into(), |d| format!("{d:.3}")))).collect();
            s += &format!(" | val Dice {mean:.4} [{}]{}", per.join(" "), if best { " best" } else { "" });
        }
        s
    }
}

/// How to run a segmentation training.
pub type SegTrainOptions = TrainRequest<SegConfig>;

/// What a finished segmentation training produced.
pub type SegTrainReport = RunReport<SegLoss, SegEpochMetrics>;

/// Train a segmentation network as `opts` says; returns where the checkpoints are.
pub fn train_seg(opts: &SegTrainOptions) -> Result<SegTrainReport> {
    let setup = Setup::open(opts, |_, _| Ok(()))?;
    let (cfg, device) = (&setup.config, &setup.replicas[0]);
    let (net, state) = match setup.resume() {
        Some(dir) => {
            let (net, state) = seg_checkpoint::load(dir, device)?;
            if state.config.net != cfg.net {
                return Err(Error::format(dir, "the checkpoint's network differs from the configuration; resume with the run's own config.json"));
            }
            (net, setup.state(Some(state)))
        }
        None => (cfg.net.init(&mut Initializer::new(cfg.run.seed, device)), setup.state(None)),
    };
    let note = format!(
        "train-seg: {} training and {} validation cases, {} parameters, fixed grid {:?}",
        setup.train_pairs.len(),
        setup.val_pairs.len(),
        net.num_params(),
        cfg.net.input_size
    );
    let task = SegmentationTask {
        optim: setup.optimizer(seg_checkpoint::OPTIM)?,
        cfg: cfg.clone(),
        val_pairs: setup.val_pairs.clone(),
        replicas: setup.replicas.clone(),
        group: setup.group.clone(),
        device: setup.device.clone(),
        validated: None,
    };
    let report = engine::run(&setup, task, net, state, &[note])?;
    if setup.group.is_root() {
        write_json(&setup.folder.dir.join("split.json"), &report.split)?;
    }
    Ok(report)
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
