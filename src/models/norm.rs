//! Normalization whose behaviour is an explicit mode, not a side effect of recording
//! gradients (docs/design.md §6).
//!
//! PyTorch's batch norm has two behaviours, chosen by `module.train()` / `module.eval()`:
//! - **train**: normalize with the current batch's mean and biased variance, and update the
//!   running statistics with momentum 0.1 (the running variance takes the *unbiased* batch
//!   variance);
//! - **eval**: normalize with the running statistics, which stay unchanged.
//!
//! Burn's `BatchNorm` picks between them by whether the device records gradients. Here the
//! caller passes a [`NormMode`] on every forward pass, so a generator can be *trained* in eval
//! mode (gradients reach gamma and beta, the running statistics never move) or *run* in train
//! mode (statistics of the inference block itself), the reference's three variants.

use super::init::{INIT_GAIN, Initializer};
use burn::module::{Module, Param, RunningState};
use burn::tensor::Tensor;
use burn::tensor::module::{batch_norm, batch_norm_train};
use serde::{Deserialize, Serialize};

/// PyTorch's default `eps` for batch and instance norm.
pub const NORM_EPS: f64 = 1e-5;
/// PyTorch's default running-statistics momentum.
pub const NORM_MOMENTUM: f64 = 0.1;

/// Which normalization a network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// Batch norm with affine weight and bias and running statistics (pix2pix `batch`).
    #[default]
    Batch,
    /// Instance norm without affine or running statistics (pix2pix `instance`).
    Instance,
    /// No normalization (identity).
    None,
}

impl NormKind {
    /// Whether convolutions followed by this norm carry a bias (pix2pix: not under batch norm).
    pub fn conv_bias(self) -> bool {
        self != NormKind::Batch
    }
}

/// How normalization layers behave in one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormMode {
    /// Batch statistics; running statistics updated.
    #[default]
    Train,
    /// Running statistics; nothing updated.
    Eval,
}

impl std::str::FromStr for NormMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "train" => Ok(NormMode::Train),
            "eval" => Ok(NormMode::Eval),
            other => Err(crate::Error::invalid(format!("unknown norm mode '{other}' (train, eval)"))),
        }
    }
}

impl std::fmt::Display for NormMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NormMode::Train => "train",
            NormMode::Eval => "eval",
        })
    }
}

/// A normalization layer over `[batch, channel, x, y, z]`.
///
/// Parameter names follow PyTorch's `BatchNorm3d`: `weight` (gamma), `bias` (beta),
/// `running_mean`, `running_var`.
#[derive(Module, Debug)]
pub struct Norm {
    /// Gamma (batch norm only).
    pub weight: Option<Param<Tensor<1>>>,
    /// Beta (batch norm only).
    pub bias: Option<Param<Tensor<1>>>,
    /// Running mean (batch norm that tracks statistics).
    pub running_mean: Option<RunningState<Tensor<1>>>,
    /// Running variance (batch norm that tracks statistics).
    pub running_var: Option<RunningState<Tensor<1>>>,
    /// The kind of normalization.
    #[module(skip)]
    pub kind: NormKind,
    /// Numerical-stability constant added to the variance.
    #[module(skip)]
    pub eps: f64,
    /// Weight of the batch statistics in the running-statistics update.
    #[module(skip)]
    pub momentum: f64,
}

impl Norm {
    /// A norm layer of `kind` over `channels`; `track_running_stats` keeps running statistics
    /// (batch norm only; the discriminator's norm keeps none).
    pub fn new(init: &mut Initializer, kind: NormKind, channels: usize, track_running_stats: bool) -> Self {
        let batch = kind == NormKind::Batch;
        let tracked = batch && track_running_stats;
        let device = init.device().clone();
        Self {
            weight: batch.then(|| init.normal([channels], 1.0, INIT_GAIN)),
            bias: batch.then(|| init.constant([channels], 0.0)),
            running_mean: tracked.then(|| RunningState::new(Tensor::zeros([channels], &device))),
            running_var: tracked.then(|| RunningState::new(Tensor::ones([channels], &device))),
            kind,
            eps: NORM_EPS,
            momentum: NORM_MOMENTUM,
        }
    }

    /// Normalize `x` in `mode`.
    pub fn forward(&self, x: Tensor<5>, mode: NormMode) -> Tensor<5> {
        match self.kind {
            NormKind::None => x,
            NormKind::Instance => instance_norm(x, self.eps),
            NormKind::Batch => match (&self.running_mean, &self.running_var, mode) {
                (Some(mean), Some(var), NormMode::Eval) => {
                    let device = x.device();
                    batch_norm(
                        x,
                        self.gamma(),
                        self.beta(),
                        mean.value_sync().to_device(&device),
                        var.value_sync().to_device(&device),
                        self.eps,
                    )
                }
                _ => self.forward_batch_statistics(x),
            },
        }
    }

    /// The running mean and variance, when the layer keeps them.
    pub fn running_stats(&self) -> Option<(Tensor<1>, Tensor<1>)> {
        match (&self.running_mean, &self.running_var) {
            (Some(m), Some(v)) => Some((m.value_sync(), v.value_sync())),
            _ => None,
        }
    }

    fn gamma(&self) -> Tensor<1> {
        self.weight.as_ref().expect("batch norm has a weight").val()
    }

    fn beta(&self) -> Tensor<1> {
        self.bias.as_ref().expect("batch norm has a bias").val()
    }

    fn forward_batch_statistics(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, _, nx, ny, nz] = x.dims();
        let device = x.device();
        let result = batch_norm_train(x, self.gamma(), self.beta(), self.eps);
        if let (Some(mean), Some(var)) = (&self.running_mean, &self.running_var) {
            let n = (b * nx * ny * nz) as f64;
            let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
            let m = self.momentum;
            let new_mean = mean.value_sync().to_device(&device).mul_scalar(1.0 - m)
                + result.mean.detach().mul_scalar(m);
            let new_var = var.value_sync().to_device(&device).mul_scalar(1.0 - m)
                + result.variance.detach().mul_scalar(m * unbiased);
            mean.update(new_mean.detach());
            var.update(new_var.detach());
        }
        result.output
    }
}

/// Apply the running-statistics updates still pending in `module`: Burn's `RunningState` keeps
/// each thread's latest update apart until the state is next read through `value_sync` (the next
/// forward pass) or synchronized; building the validation copy (`Module::valid`) synchronizes
/// every state, and the copy is dropped. Whatever reads the statistics outside a forward pass —
/// saving a checkpoint, averaging them over ranks — calls this first, or misses the last step's
/// update.
pub fn settle_running_stats<M: Module>(module: &M) {
    drop(module.valid());
}

/// Instance normalization without affine parameters: each (sample, channel) is normalized
/// with its own mean and biased variance.
pub fn instance_norm(x: Tensor<5>, eps: f64) -> Tensor<5> {
    let [b, c, nx, ny, nz] = x.dims();
    let device = x.device();
    let flat = x.reshape([1, b * c, nx, ny, nz]);
    let ones = Tensor::ones([b * c], &device);
    let zeros = Tensor::zeros([b * c], &device);
    batch_norm_train(flat, ones, zeros, eps).output.reshape([b, c, nx, ny, nz])
}
