//! What every training configuration has in common — the run's name and data, the held-out
//! cases, the optimizer's rate and schedule, the epoch loop's batch, sampling, logging,
//! checkpointing and loader settings — as one block that [`super::TrainConfig`] and
//! [`super::SegConfig`] flatten into their JSON (the keys stay at the top level), and what
//! such a configuration is ([`RunConfig`]: loaded, refused, saved alike).

use super::schedule::{LrPolicy, LrSchedule};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The settings shared by every training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Run name: checkpoints go to `<checkpoints_dir>/<name>/`.
    pub name: String,
    /// Folder of case folders; `--data-root` overrides it.
    #[serde(default)]
    pub data_root: Option<PathBuf>,
    /// Case ids held out from training and evaluated after every `val_every`-th epoch.
    #[serde(default)]
    pub val_cases: Vec<String>,
    /// Validate every this many epochs, and after the last (MONAI's `val_interval`); the
    /// epochs between log no validation, keep no `best` and do not count for the plateau
    /// policy.
    #[serde(default = "one")]
    pub val_every: usize,
    /// Cases per step (per device).
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Augmented samples drawn from each training case per epoch (TorchIO's
    /// `samples_per_volume`; the key `repeats_per_epoch` of earlier configs is still read).
    #[serde(default = "one", alias = "repeats_per_epoch")]
    pub samples_per_volume: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Adam β2.
    #[serde(default = "beta2")]
    pub beta2: f64,
    /// Learning-rate policy.
    #[serde(default)]
    pub lr_policy: LrPolicy,
    /// Epochs at the initial rate (linear), the cosine period; `--epochs` overrides it.
    pub n_epochs: usize,
    /// Epochs of linear decay after `n_epochs`.
    #[serde(default)]
    pub n_epochs_decay: usize,
    /// Period of the `step` policy, epochs.
    #[serde(default = "fifty")]
    pub lr_decay_iters: usize,
    /// Keep a numbered checkpoint every this many epochs (`latest` every epoch).
    #[serde(default = "five")]
    pub save_epoch_freq: usize,
    /// Write TensorBoard images and weight histograms every this many steps.
    #[serde(default = "hundred")]
    pub display_freq: usize,
    /// Seed of initialization, case order and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Loader threads.
    #[serde(default = "two")]
    pub workers: usize,
    /// Loaded steps waiting ahead of the device.
    #[serde(default = "four")]
    pub prefetch: usize,
}

fn one() -> usize { 1 }
fn two() -> usize { 2 }
fn four() -> usize { 4 }
fn five() -> usize { 5 }
fn fifty() -> usize { 50 }
fn hundred() -> usize { 100 }
fn beta2() -> f64 { 0.999 }

/// Keys of a configuration file that no field took (collected by a flattened map, since
/// serde's `deny_unknown_fields` does not work beside a flattened block).
pub type UnknownKeys = BTreeMap<String, serde_json::Value>;

/// Refuse a configuration with keys no field took, naming the first.
pub fn refuse_unknown(unknown: &UnknownKeys) -> Result<()> {
    match unknown.keys().next() {
        Some(key) => Err(Error::invalid(format!("unknown field `{key}`"))),
        None => Ok(()),
    }
}

/// A training configuration: a JSON file with the shared block flattened into it.
pub trait RunConfig: Serialize + serde::de::DeserializeOwned {
    /// The shared settings.
    fn run(&self) -> &RunSettings;
    /// Keys no field took.
    fn unknown(&self) -> &UnknownKeys;

    /// Read a configuration file; unknown keys and wrong types name the file.
    fn load(path: &std::path::Path) -> Result<Self> {
        let cfg: Self = crate::store::read_json(path)?;
        refuse_unknown(cfg.unknown()).map_err(|e| Error::format(path, e.to_string()))?;
        Ok(cfg)
    }

    /// The configuration as pretty JSON.
    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }
}

impl RunSettings {
    /// Total epochs: `n_epochs + n_epochs_decay`.
    pub fn total_epochs(&self) -> usize {
        self.n_epochs + self.n_epochs_decay
    }

    /// A fresh learning-rate schedule.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::new(self.lr_policy, self.lr, self.n_epochs, self.n_epochs_decay, self.lr_decay_iters)
    }

    /// Adam with β1 `beta1` (its default differs between networks), this β2 and PyTorch's ε.
    pub fn adam(&self, beta1: f64) -> burn::optim::AdamConfig {
        burn::optim::AdamConfig::new().with_beta_1(beta1 as f32).with_beta_2(self.beta2 as f32).with_epsilon(ADAM_EPS)
    }

    /// Check the shared values (`beta1` beside them); the first problem as one message.
    pub fn validate(&self, beta1: f64) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name == "." || self.name == ".." {
            return bad(format!("name '{}' must be a plain folder name", self.name));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        for (n, b) in [("beta1", beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{n} must be in [0, 1), got {b}"));
            }
        }
        if self.n_epochs == 0 {
            return bad("n_epochs must be at least 1".into());
        }
        for (n, v) in [
            ("batch_size", self.batch_size),
            ("samples_per_volume", self.samples_per_volume),
            ("save_epoch_freq", self.save_epoch_freq),
            ("val_every", self.val_every),
            ("display_freq", self.display_freq),
            ("lr_decay_iters", self.lr_decay_iters),
        ] {
            if v == 0 {
                return bad(format!("{n} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Adam's ε (PyTorch's default).
pub const ADAM_EPS: f32 = 1e-8;
