//! Learning-rate policies with PyTorch's formulas, as the reference (pix2pix) used them:
//! one scheduler step per finished epoch, so epoch `e` (1-based) trains with the rate after
//! `e − 1` steps.
//!
//! - `linear` (pix2pix `LambdaLR`): constant for `n_epochs`, then linear decay to zero over
//!   `n_epochs_decay`: `lr · (1 − max(0, t + 1 − n_epochs) / (n_epochs_decay + 1))`;
//! - `step` (`StepLR`, γ = 0.1): `lr · 0.1^⌊t / lr_decay_iters⌋`;
//! - `cosine` (`CosineAnnealingLR`, T_max = n_epochs, η_min = 0):
//!   `lr · (1 + cos(π t / n_epochs)) / 2`;
//! - `plateau` (`ReduceLROnPlateau`: mode min, factor 0.2, threshold 0.01 relative,
//!   patience 5): fed with the epoch's validation L1 (the training L1 without held-out cases).

use serde::{Deserialize, Serialize};

/// Which learning-rate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrPolicy {
    /// Constant, then linear decay (pix2pix default).
    Linear,
    /// Multiply by 0.1 every `lr_decay_iters` epochs.
    Step,
    /// Cosine annealing over `n_epochs` (the reference's runs).
    #[default]
    Cosine,
    /// Multiply by 0.2 when the monitored loss stops improving.
    Plateau,
}

/// `ReduceLROnPlateau`'s factor, relative threshold and patience as pix2pix sets them.
const PLATEAU_FACTOR: f64 = 0.2;
const PLATEAU_THRESHOLD: f64 = 0.01;
const PLATEAU_PATIENCE: usize = 5;
/// PyTorch's minimal change that counts as a reduction.
const PLATEAU_EPS: f64 = 1e-8;

/// The schedule and its state (only `plateau` has state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The policy.
    pub policy: LrPolicy,
    /// Initial learning rate.
    pub base_lr: f64,
    /// Epochs at the initial rate (linear) / the cosine period.
    pub n_epochs: usize,
    /// Epochs of linear decay after `n_epochs`.
    pub n_epochs_decay: usize,
    /// Step policy's period in epochs.
    pub lr_decay_iters: usize,
    /// Plateau: the current rate.
    pub plateau_lr: f64,
    /// Plateau: the best monitored value so far.
    pub plateau_best: Option<f64>,
    /// Plateau: epochs since the last improvement.
    pub plateau_bad_epochs: usize,
}

impl LrSchedule {
    /// A fresh schedule.
    pub fn new(policy: LrPolicy, base_lr: f64, n_epochs: usize, n_epochs_decay: usize, lr_decay_iters: usize) -> Self {
        Self { policy, base_lr, n_epochs, n_epochs_decay, lr_decay_iters, plateau_lr: base_lr, plateau_best: None, plateau_bad_epochs: 0 }
    }

    /// The learning rate of epoch `epoch` (1-based).
    pub fn lr(&self, epoch: usize) -> f64 {
        let t = epoch.saturating_sub(1) as f64;
        match self.policy {
            LrPolicy::Linear => {
                let over = (t + 1.0 - self.n_epochs as f64).max(0.0);
                self.base_lr * (1.0 - over / (self.n_epochs_decay as f64 + 1.0))
            }
            LrPolicy::Step => self.base_lr * 0.1f64.powi((t as usize / self.lr_decay_iters.max(1)) as i32),
            LrPolicy::Cosine => self.base_lr * (1.0 + (std::f64::consts::PI * t / self.n_epochs.max(1) as f64).cos()) / 2.0,
            LrPolicy::Plateau => self.plateau_lr,
        }
    }

    /// Record the end of an epoch with the monitored loss (used by `plateau` only).
    pub fn end_epoch(&mut self, monitored: f64) {
        if self.policy != LrPolicy::Plateau || !monitored.is_finite() {
            return;
        }
        match self.plateau_best {
            Some(best) if monitored >= best * (1.0 - PLATEAU_THRESHOLD) => self.plateau_bad_epochs += 1,
            _ => {
                self.plateau_best = Some(monitored);
                self.plateau_bad_epochs = 0;
            }
        }
        if self.plateau_bad_epochs > PLATEAU_PATIENCE {
            let reduced = self.plateau_lr * PLATEAU_FACTOR;
            if self.plateau_lr - reduced > PLATEAU_EPS {
                self.plateau_lr = reduced;
            }
            self.plateau_bad_epochs = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_pix2pix_lambda_rule() {
        // pix2pix: lambda(t) = 1 - max(0, t + 1 - n_epochs) / (n_epochs_decay + 1)
        let s = LrSchedule::new(LrPolicy::Linear, 2e-4, 3, 3, 50);
        let got: Vec<f64> = (1..=6).map(|e| s.lr(e) / 2e-4).collect();
        let expect = [1.0, 1.0, 1.0, 0.75, 0.5, 0.25];
        for (g, e) in got.iter().zip(expect) {
            assert!((g - e).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn cosine_and_step_follow_torch() {
        let s = LrSchedule::new(LrPolicy::Cosine, 1e-4, 4, 0, 0);
        // CosineAnnealingLR(T_max=4): 1e-4, 8.5355e-5, 5e-5, 1.4645e-5
        let expect = [1e-4, 8.535533905932738e-05, 5e-05, 1.4644660940672627e-05];
        for (e, x) in expect.iter().enumerate() {
            assert!((s.lr(e + 1) - x).abs() < 1e-15);
        }
        let s = LrSchedule::new(LrPolicy::Step, 1.0, 10, 0, 2);
        assert_eq!([s.lr(1), s.lr(2), s.lr(3), s.lr(5)], [1.0, 1.0, 0.1, 0.010000000000000002]);
    }

    #[test]
    fn plateau_reduces_after_patience() {
        let mut s = LrSchedule::new(LrPolicy::Plateau, 1.0, 10, 0, 0);
        s.end_epoch(1.0);
        for _ in 0..5 {
            s.end_epoch(0.995); // within the 1 % threshold: not an improvement
            assert_eq!(s.lr(2), 1.0);
        }
        s.end_epoch(0.995);
        assert!((s.lr(2) - 0.2).abs() < 1e-12);
        s.end_epoch(0.5);
        assert_eq!(s.plateau_bad_epochs, 0);
    }
}
