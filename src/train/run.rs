//! What every training run does before its first step, written once for every task: the
//! configuration checked, the cases found and split, the run folder locked (fresh or resumed),
//! the devices chosen, the run state and the optimizers fresh or from the checkpoint resumed
//! from ([`Setup`]); and the derivation of per-epoch, per-item random streams from the run seed.
//! In a group of several ranks (MPI) every rank sets up the same run; rank 0 alone locks and
//! writes the run folder, and a rank that cannot set up stops every rank with its reason.

use crate::config::RunConfig;
use crate::data::{Pair, PairPattern, PairedDataset};
use crate::device::DeviceChoice;
use crate::distributed::Group;
use crate::error::{Error, Result};
use crate::io::lock::FolderLock;
use crate::store::folder::load_optimizer;
use crate::store::{RunState, resolve};
use super::progress::Log;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use std::path::PathBuf;

/// Mix the run seed with an epoch and an index into one stream seed.
pub fn stream_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [epoch as u64, index as u64] {
        h = (h ^ v).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    h
}

/// The value of a one-element tensor.
pub fn scalar(t: &burn::tensor::Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

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

/// How to run a training of the task configured by `C`.
#[derive(Debug, Clone)]
pub struct TrainRequest<C> {
    /// The effective configuration (file plus command-line overrides).
    pub config: C,
    /// Backend.
    pub device: DeviceChoice,
    /// Data-parallel training on these devices (two or more; the first holds the networks and
    /// validates); empty to train on `device` alone.
    pub devices: Vec<Device>,
    /// The run folder and reporting.
    pub run: RunOptions,
    /// The processes training together (MPI ranks); [`Group::solo`] for this process alone.
    pub group: Group,
}

/// What the shared setup needs of a task's configuration.
pub trait TaskConfig: RunConfig + Clone {
    /// Check every value; `on_host`: training on the CPU alone (the host's memory bounds it).
    fn check(&self, on_host: bool) -> Result<()>;
    /// The files every case folder holds.
    fn case_files(&self) -> PairPattern;
    /// The training and held-out cases among the complete ones (by default: `val_cases`).
    fn split(&self, pairs: Vec<Pair>) -> Result<(Vec<Pair>, Vec<Pair>)> {
        PairedDataset { pairs, skipped: Vec::new() }.split(&self.run().val_cases)
    }
    /// Adam's β1 (its default differs between networks).
    fn beta1(&self) -> f64;
}

/// The run folder of a training, locked for this process.
pub struct RunFolder {
    /// `<checkpoints-dir>/<name>`.
    pub dir: PathBuf,
    /// The checkpoint to resume from (`--continue-train`), `None` for a fresh run.
    pub resume: Option<PathBuf>,
    /// Held by the process that writes the folder (rank 0 of a group).
    _lock: Option<FolderLock>,
}

impl RunFolder {
    /// Lock `<checkpoints-dir>/<name>` (a second process on it is refused, naming the holder)
    /// and find the checkpoint to resume from; a fresh run on a folder that already has
    /// checkpoints is refused. `writer`: this process writes the folder and takes the lock (the
    /// other ranks of a group only read the checkpoint resumed from).
    pub fn open(opts: &RunOptions, name: &str, writer: bool) -> Result<RunFolder> {
        let dir = opts.checkpoints_dir.join(name);
        let lock = if writer { Some(FolderLock::acquire(&dir)?) } else { None };
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

/// A run ready for its task's networks: the configuration, the cases, the locked run folder
/// and the devices.
pub struct Setup<C> {
    /// The effective configuration, with what the training cases decided.
    pub config: C,
    /// Training cases.
    pub train_pairs: Vec<Pair>,
    /// Held-out cases, validated after every epoch.
    pub val_pairs: Vec<Pair>,
    /// `(pid, reason)` of case folders skipped for missing files.
    pub skipped: Vec<(String, String)>,
    /// The run folder.
    pub folder: RunFolder,
    /// Where validation runs (the first device, plain).
    pub device: Device,
    /// The training devices (autodiff), one per share of a step; the first holds the networks.
    pub replicas: Vec<Device>,
    /// Reporting.
    pub options: RunOptions,
    /// The processes training together; rank 0 writes the run folder.
    pub group: Group,
}

impl<C: TaskConfig> Setup<C> {
    /// Check the configuration, find and split the cases under its data root, let `adjust`
    /// set what the training cases decide (before anything is written), then lock the run
    /// folder and open the devices.
    /// Every rank of the request's group opens the run together: all succeed, or all fail with
    /// the failing ranks' reasons.
    pub fn open(req: &TrainRequest<C>, adjust: impl FnOnce(&mut C, &[Pair]) -> Result<()>) -> Result<Setup<C>> {
        req.group.agree(Self::open_rank(req, adjust))
    }

    fn open_rank(req: &TrainRequest<C>, adjust: impl FnOnce(&mut C, &[Pair]) -> Result<()>) -> Result<Setup<C>> {
        let mut config = req.config.clone();
        config.check(req.device.is_cpu() && req.devices.is_empty())?;
        if req.devices.len() == 1 {
            return Err(Error::invalid("data-parallel training needs two or more devices (one device: use --device)"));
        }
        let root = config.run().data_root.clone().ok_or_else(|| Error::invalid("no data root: set data_root in the config or pass --data-root"))?;
        if !root.is_dir() {
            return Err(Error::format(&root, "data root is not a folder"));
        }
        let files = config.case_files();
        let dataset = PairedDataset::scan(&root, &files)?;
        let (train_pairs, val_pairs) = config.split(dataset.pairs)?;
        if train_pairs.is_empty() {
            return Err(Error::format(&root, format!("no complete training case (need {} and {} in each case folder)", files.src, files.dst)));
        }
        adjust(&mut config, &train_pairs)?;
        let folder = RunFolder::open(&req.run, &config.run().name, req.group.is_root())?;
        let device = match req.devices.first() {
            Some(d) => d.clone(),
            None => req.device.device()?,
        };
        let replicas = if req.devices.is_empty() { vec![device.clone().autodiff()] } else { req.devices.iter().map(|d| d.clone().autodiff()).collect() };
        Ok(Setup { config, train_pairs, val_pairs, skipped: dataset.skipped, folder, device, replicas, options: req.run.clone(), group: req.group.clone() })
    }

    /// The checkpoint resumed from (`--continue-train`).
    pub fn resume(&self) -> Option<&std::path::Path> {
        self.folder.resume.as_deref()
    }

    /// The state to start from: a fresh one, or the checkpoint's `loaded` (its schedule
    /// continues, extended or shortened to the configured epochs; the configuration is this
    /// run's).
    pub fn state(&self, loaded: Option<RunState<C>>) -> RunState<C> {
        let run = self.config.run();
        match loaded {
            Some(mut state) => {
                state.schedule.n_epochs = run.n_epochs;
                state.schedule.n_epochs_decay = run.n_epochs_decay;
                state.config = self.config.clone();
                state
            }
            None => RunState { epoch: 0, global_step: 0, schedule: run.schedule(), best: None, config: self.config.clone() },
        }
    }

    /// The Adam optimizer of one network: fresh, or its state saved as `file` in the
    /// checkpoint resumed from.
    pub fn optimizer(&self, file: &str) -> Result<ModuleOptimizer> {
        let adam = self.config.run().adam(self.config.beta1());
        match self.resume() {
            Some(dir) => load_optimizer(&dir.join(file), &adam),
            None => Ok(adam.init()),
        }
    }
}
