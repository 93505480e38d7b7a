//! The chamber-segmentation training loop (docs/design.md §5): per step, augmented cases resized to
//! the network's fixed grid (the image trilinearly, the one-hot labels trilinearly into soft
//! targets) and one Adam step on soft Dice (+ cross-entropy); per epoch, every held-out case
//! segmented as inference does it (on its own grid) and scored by Dice per label, `best/`
//! when the mean Dice of labels 1.. improves, `latest/` and numbered checkpoints, a line in
//! `metrics.jsonl` and TensorBoard events.

use crate::store::generator::{self as checkpoint, write_json};
use super::parallel;
use super::progress::Progress;
use super::run::{append_metrics, scalar, stream_seed, trim_metrics};
use crate::store::segmentation::{self as seg_checkpoint, BEST, SegState};
use crate::config::segmentation::{SegConfig, read_case_list};
use super::seg_loss::{cross_entropy, soft_dice_loss};
use super::tensorboard::EventWriter;
use crate::analysis::{ColorMap, Window, axial_slice, dice_per_label, mean_dice};
use crate::data::{Pair, PairedDataset, Prefetcher, augment_labelled, volume_to_tensor};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::predict::segment_volume;
use crate::models::UNet3d;
use crate::models::init::Initializer;
use crate::ops::resize_trilinear;
use crate::volume::Volume;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// PyTorch's Adam ε.
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
    /// Parent of the run folder.
    pub checkpoints_dir: PathBuf,
    /// Resume from `<run>/latest`.
    pub continue_train: bool,
    /// No progress output.
    pub quiet: bool,
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
    super::run::adam(cfg.beta1, cfg.beta2)
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
    let val: Vec<String> = if !cfg.val_cases.is_empty() {
        known(&cfg.val_cases, "val_cases")?;
        cfg.val_cases.clone()
    } else if let Some(list) = read_case_list(&cfg.val_list)? {
        known(&list, &cfg.val_list.display().to_string())?;
        list
    } else {
        let n = pairs.len().saturating_sub(cfg.val_count.min(pairs.len()));
        pairs[n..].iter().map(|p| p.pid.clone()).collect()
    };
    let train: Option<Vec<String>> = match read_case_list(&cfg.train_list)? {
        Some(list) if cfg.val_cases.is_empty() => {
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

/// One optimization step on `batch`.
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

/// Train a segmentation network as `opts` says; returns where the checkpoints are.
pub fn train_seg(opts: &SegTrainOptions) -> Result<SegTrainReport> {
    let cfg = opts.config.clone();
    cfg.validate()?;
    let root = cfg.data_root.clone().ok_or_else(|| Error::invalid("no data root: set data_root in the config or pass --data-root"))?;
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
    let run_dir = opts.checkpoints_dir.join(&cfg.name);
    // One process per run folder: a second `train` on it is refused, naming the holder.
    let _lock = crate::io::lock::FolderLock::acquire(&run_dir)?;
    if opts.devices.len() == 1 {
        return Err(Error::invalid("data-parallel training needs two or more devices (one device: use --device)"));
    }
    let device = match opts.devices.first() {
        Some(d) => d.clone(),
        None => opts.device.device()?,
    };
    let ad = device.clone().autodiff();
    let replicas: Vec<Device> = if opts.devices.is_empty() { vec![ad.clone()] } else { opts.devices.iter().map(|d| d.clone().autodiff()).collect() };
    // Each step takes batch_size cases per device.
    let step_batch = cfg.batch_size * replicas.len();
    let (mut net, mut optim, mut state) = if opts.continue_train {
        let dir = checkpoint::resolve(&run_dir)?;
        let (net, mut state) = seg_checkpoint::load(&dir, &ad)?;
        if state.config.net != cfg.net {
            return Err(Error::format(&dir, "the checkpoint's network differs from the configuration; resume with the run's own config.json"));
        }
        let optim = checkpoint::load_optimizer(&dir.join(seg_checkpoint::OPTIM), &adam(&cfg))?;
        state.schedule.n_epochs = cfg.n_epochs;
        state.schedule.n_epochs_decay = cfg.n_epochs_decay;
        state.config = cfg.clone();
        (net, optim, state)
    } else {
        if checkpoint::resolve(&run_dir).is_ok() {
            return Err(Error::format(&run_dir, "a run with this name already has checkpoints: pass --continue-train to resume it, or choose another --name"));
        }
        let net = cfg.net.init(&mut Initializer::new(cfg.seed, &ad));
        (net, adam(&cfg).init(), SegState { epoch: 0, global_step: 0, schedule: cfg.schedule(), best: None, config: cfg.clone() })
    };
    trim_metrics(&run_dir, state.epoch)?;
    crate::io::atomic::write_bytes_atomically(&run_dir.join("config.json"), cfg.to_json().as_bytes())?;
    let mut tb = EventWriter::create(&run_dir.join("tb"))?;
    let total_epochs = cfg.total_epochs();
    let cases_per_epoch = train_pairs.len() * cfg.samples_per_volume;
    let steps_per_epoch = cases_per_epoch.div_ceil(step_batch);
    let progress = Progress::new((total_epochs * steps_per_epoch) as u64, (state.epoch * steps_per_epoch) as u64, opts.quiet);
    for (pid, why) in &skipped {
        progress.line(&format!("skipped case {pid}: {why}"));
    }
    progress.line(&format!(
        "train-seg: {} training and {} validation cases, {} parameters, fixed grid {:?}",
        train_pairs.len(),
        val_pairs.len(),
        net.num_params(),
        cfg.net.input_size
    ));
    let start_epoch = state.epoch;
    let started_all = Instant::now();
    let train_pairs = Arc::new(train_pairs);
    let mut last = None;
    for epoch in state.epoch + 1..=total_epochs {
        let started = Instant::now();
        progress.set_epoch(epoch, total_epochs);
        ad.seed(stream_seed(cfg.seed, epoch, DROPOUT_STREAM));
        let lr = state.schedule.lr(epoch);
        let mut order: Vec<usize> = (0..cases_per_epoch).map(|i| i % train_pairs.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream_seed(cfg.seed, epoch, usize::MAX)));
        let loader = {
            let (pairs, order, cfg) = (train_pairs.clone(), order.clone(), cfg.clone());
            Prefetcher::spawn(steps_per_epoch, cfg.workers, cfg.prefetch, move |step| -> Result<Vec<Prepared>> {
                order[step * step_batch..((step + 1) * step_batch).min(order.len())]
                    .iter()
                    .enumerate()
                    .map(|(j, &i)| {
                        let sample = pairs[i].load()?;
                        check_labels(&sample.dst, cfg.net.classes, &pairs[i].dst)?;
                        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(cfg.seed, epoch, step * step_batch + j));
                        let shape = sample.src.shape();
                        let (image, labels) = augment_labelled(sample.src, sample.dst, shape, &cfg.augment, &mut rng);
                        Ok(Prepared { image, labels })
                    })
                    .collect()
            })
        };
        let mut sum = StepLoss::default();
        for (s, batch) in loader.enumerate() {
            let batch = batch?;
            let (n, l, logits) = step(net, &mut optim, &batch, &cfg, lr, &replicas);
            net = n;
            state.global_step += 1;
            let gs = state.global_step;
            sum.total += l.total;
            sum.dice += l.dice;
            sum.ce += l.ce;
            tb.scalar("loss/total", l.total as f32, gs)?;
            tb.scalar("loss/dice", l.dice as f32, gs)?;
            if cfg.ce_weight > 0.0 {
                tb.scalar("loss/ce", l.ce as f32, gs)?;
            }
            tb.scalar("lr", lr as f32, gs)?;
            if gs % cfg.display_freq == 0 || (epoch == 1 && s == 0) {
                log_images(&mut tb, &batch[0], logits, &cfg, gs)?;
            }
            progress.step(format!("loss {:.4} dice {:.4}", l.total, l.dice));
        }
        let n = steps_per_epoch as f64;
        let valid_net = net.valid();
        let val_dice = if val_pairs.is_empty() { Vec::new() } else { validate(&valid_net, &val_pairs, &cfg, &device)? };
        let val_mean_dice = mean_dice(&val_dice);
        for (l, d) in val_dice.iter().enumerate() {
            if let Some(d) = d {
                tb.scalar(&format!("val_dice/label_{}", l + 1), *d as f32, state.global_step)?;
            }
        }
        if let Some(m) = val_mean_dice {
            tb.scalar("val_dice/mean", m as f32, state.global_step)?;
        }
        let mut metrics = SegEpochMetrics {
            epoch,
            lr,
            loss: sum.total / n,
            loss_dice: sum.dice / n,
            loss_ce: sum.ce / n,
            val_dice,
            val_mean_dice,
            seconds: 0.0,
        };
        // Without held-out cases, "best" follows the training loss (as 1 − loss).
        let monitored = val_mean_dice.unwrap_or(1.0 - metrics.loss);
        state.schedule.end_epoch(-monitored);
        state.epoch = epoch;
        let improved = state.best.is_none_or(|(b, _)| monitored > b);
        if improved {
            state.best = Some((monitored, epoch));
        }
        metrics.seconds = started.elapsed().as_secs_f64();
        append_metrics(&run_dir, &metrics)?;
        if improved {
            seg_checkpoint::save(&run_dir, BEST, &valid_net, None, &state)?;
        }
        if epoch % cfg.save_epoch_freq == 0 || epoch == total_epochs {
            seg_checkpoint::save(&run_dir, &checkpoint::epoch_dir_name(epoch), &net, Some(&optim), &state)?;
        }
        seg_checkpoint::save(&run_dir, checkpoint::LATEST, &net, Some(&optim), &state)?;
        tb.flush()?;
        progress.line(&epoch_line(&metrics, total_epochs, improved));
        last = Some(metrics);
    }
    progress.finish();
    write_json(&run_dir.join("split.json"), &split)?;
    Ok(SegTrainReport {
        run_dir,
        start_epoch,
        epoch: state.epoch,
        split,
        last,
        best: state.best,
        skipped,
        seconds: started_all.elapsed().as_secs_f64(),
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
