//! The training configuration: one JSON file in `configs/`, overridable from the command
//! line, validated as a whole before anything starts, and saved beside the checkpoints.

use super::run::{RunConfig, RunSettings, UnknownKeys, refuse_unknown};
use crate::data::{AugmentConfig, IntensityMap, PairPattern};
use crate::error::{Error, Result};
use crate::models::{DiscriminatorConfig, GeneratorConfig, GeneratorKind, NormMode};
use serde::{Deserialize, Serialize};

/// The GAN objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GanMode {
    /// Binary cross-entropy on logits.
    #[default]
    Vanilla,
    /// Least squares (MSE against 1 / 0).
    Lsgan,
}

/// Everything that defines a generator training run. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The settings every training run has (name, data root — a `5.mbf_myocardium` —,
    /// held-out cases, rate and schedule, loop); their keys sit at the top level.
    #[serde(flatten)]
    pub run: RunSettings,
    /// File names of input, target and mask in each case folder.
    #[serde(default)]
    pub data: PairPattern,
    /// Training crop (x, y, z); each a multiple of the generator's size multiple.
    pub crop_size: [usize; 3],
    /// Validate, and by default infer, over each whole case with overlapping windows of
    /// `crop_size` (Gaussian-blended, half overlapping), as nnU-Net and MONAI run
    /// patch-trained networks; else (the reference) the case centred in one block of
    /// `crop_size`. In train norm mode each window is normalized with its own statistics, as
    /// each training crop was.
    #[serde(default)]
    pub sliding_window: bool,
    /// Generator architecture.
    pub generator: GeneratorConfig,
    /// Discriminator architecture, or `null` to train with L1 terms only.
    #[serde(default)]
    pub discriminator: Option<DiscriminatorConfig>,
    /// GAN objective.
    #[serde(default)]
    pub gan_mode: GanMode,
    /// Normalization mode of the generator during training (docs/design.md §6).
    #[serde(default)]
    pub norm_mode: NormMode,
    /// Weight of the L1 term over the whole crop.
    #[serde(default = "one_f")]
    pub lambda_l1: f64,
    /// Weight of the GAN term.
    #[serde(default = "one_f")]
    pub lambda_gan: f64,
    /// Weight of the masked L1 term (needs `data.mask`).
    #[serde(default)]
    pub lambda_mask: f64,
    /// Mask value that counts as inside (`m = mask == mask_label`).
    #[serde(default = "one_f")]
    pub mask_label: f64,
    /// Image ↔ network intensity mapping.
    #[serde(default)]
    pub intensity: IntensityMap,
    /// Adam β1.
    #[serde(default = "half")]
    pub beta1: f64,
    /// Augmentation.
    #[serde(default)]
    pub augment: AugmentConfig,
    /// Refuse a run whose estimated training memory exceeds this many GiB (default: the
    /// memory available on this machine).
    #[serde(default)]
    pub memory_limit_gb: Option<f64>,
    /// Keys no field took (refused by [`TrainConfig::validate`] and [`RunConfig::load`]).
    #[serde(flatten, skip_serializing)]
    pub unknown: UnknownKeys,
}

fn one_f() -> f64 { 1.0 }
fn half() -> f64 { 0.5 }

impl RunConfig for TrainConfig {
    fn run(&self) -> &RunSettings {
        &self.run
    }

    fn unknown(&self) -> &UnknownKeys {
        &self.unknown
    }
}

impl TrainConfig {
    /// How held-out cases are fitted to the crop size for validation and, by default, for
    /// inference.
    pub fn tiling(&self) -> crate::predict::Tiling {
        if self.sliding_window { crate::predict::Tiling::SlidingWindow { overlap: SLIDING_WINDOW_OVERLAP } } else { crate::predict::Tiling::Centred }
    }

    /// Check every value; the first problem is returned as one message.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        refuse_unknown(&self.unknown)?;
        self.run.validate(self.beta1)?;
        for (n, w) in [("lambda_l1", self.lambda_l1), ("lambda_gan", self.lambda_gan), ("lambda_mask", self.lambda_mask)] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(format!("{n} must be a non-negative number, got {w}"));
            }
        }
        if self.lambda_mask > 0.0 && self.data.mask.is_none() {
            return bad("lambda_mask > 0 needs a mask file name in data.mask".into());
        }
        let m = self.generator.size_multiple();
        if self.crop_size.iter().any(|&c| c == 0 || c % m != 0) {
            return bad(format!("crop_size {:?}: each size must be a positive multiple of {m}", self.crop_size));
        }
        self.generator.validate()?;
        if let Some(d) = &self.discriminator {
            d.validate()?;
        }
        self.augment.validate()?;
        self.intensity.validate()
    }

    /// Estimated bytes of one training step: the generator's activations kept for the
    /// backward pass (conv and norm outputs, the ReLU's mask) plus a gradient-sized transient,
    /// and the parameters with their gradients and Adam moments.
    pub fn estimated_training_bytes(&self) -> f64 {
        let act = activation_floats(&self.generator, self.crop_size) * self.run.batch_size as f64;
        let params = parameter_count(&self.generator) as f64;
        4.0 * (act * 4.0 + params * 4.0)
    }

    /// Refuse a run that will not fit: the limit is `memory_limit_gb` when set, else, for a
    /// CPU device (`host_memory`), the memory this machine has available. GPU memory is not
    /// queried: set `memory_limit_gb` to check it.
    pub fn check_memory(&self, host_memory: bool) -> Result<()> {
        let need = self.estimated_training_bytes();
        let (limit, source) = match self.memory_limit_gb {
            Some(gb) => (gb * GIB, "memory_limit_gb"),
            None if host_memory => match available_memory_bytes() {
                Some(b) => (b, "available memory"),
                None => return Ok(()),
            },
            None => return Ok(()),
        };
        if need > limit {
            return Err(Error::invalid(format!(
                "crop_size {:?} with ngf {} and batch {} needs about {:.1} GiB to train, more than the {:.1} GiB of {source}; use a smaller crop, ngf or batch",
                self.crop_size, self.generator.ngf, self.run.batch_size, need / GIB, limit / GIB
            )));
        }
        Ok(())
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Overlap of neighbouring windows with [`TrainConfig::sliding_window`] (nnU-Net's and
/// MONAI's default, 0.5).
pub const SLIDING_WINDOW_OVERLAP: f64 = 0.5;

/// Floats output by the generator's layers (one tensor per conv) at batch 1.
pub fn activation_floats(g: &GeneratorConfig, size: [usize; 3]) -> f64 {
    let v = size.iter().map(|&n| n as f64).product::<f64>();
    let ngf = g.ngf as f64;
    if g.kind == GeneratorKind::Unet {
        // Per level: two encoder stages; the up-sampled tensor, the concatenation and two
        // decoder stages (5 tensors of the level's width); the head.
        let level = |i: usize| ngf * 2f64.powi(i as i32) * v / 8f64.powi(i as i32);
        let encoder: f64 = (0..g.levels).map(|i| 2.0 * level(i)).sum();
        let decoder: f64 = (0..g.levels - 1).map(|i| 5.0 * level(i)).sum();
        return encoder + decoder + v;
    }
    let d = 8.0 * ngf;
    let mut total = ngf * v; // stem
    for i in 1..=3 {
        total += ngf * 2f64.powi(i) * v / 8f64.powi(i); // down
    }
    total += g.n_blocks as f64 * (d / 2.0 + d / 2.0 + d) * v / 512.0; // residual stages
    for i in 0..3 {
        total += d / 2f64.powi(i + 1) * v / 8f64.powi(2 - i); // up
    }
    total + v // head
}

/// Parameters of a generator with this configuration.
pub fn parameter_count(g: &GeneratorConfig) -> usize {
    let n = g.ngf;
    if g.kind == GeneratorKind::Unet {
        let c = |i: usize| n << i;
        // Per conv–norm stage: gamma and beta under batch norm, else the conv's bias.
        let extra = |c: usize| if g.norm == crate::models::NormKind::Batch { 2 * c } else { c };
        let encoder: usize = (0..g.levels).map(|i| 27 * (if i == 0 { 1 } else { c(i - 1) }) * c(i) + 27 * c(i) * c(i) + 2 * extra(c(i))).sum();
        let up = |i: usize| if g.upsample == crate::models::UpsampleKind::Transposed { 8 } else { 27 } * c(i + 1) * c(i);
        let decoder: usize = (0..g.levels - 1).map(|i| up(i) + 27 * 3 * c(i) * c(i) + 3 * extra(c(i))).sum();
        // The first convolution has a bias and no norm.
        return encoder - extra(n) + n + decoder + n + 1;
    }
    let d = 8 * n;
    let mut p = 343 * n + 2 * n;
    for i in 0..3 {
        p += 27 * (n << i) * (n << (i + 1)) + 2 * (n << (i + 1));
    }
    p += g.n_blocks * (d * d / 2 + 27 * d * d / 4 + d * d / 2 + 2 * (d / 2 + d / 2 + d));
    for i in 0..3 {
        p += 27 * (d >> i) * (d >> (i + 1)) + 2 * (d >> (i + 1));
    }
    p + 343 * n + 1
}

/// `MemAvailable` of `/proc/meminfo`, when readable.
pub fn available_memory_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::init::Initializer;
    use crate::models::{NormKind, UpsampleKind};
    use burn::store::ModuleSnapshot;
    use burn::tensor::Device;

    #[test]
    fn parameter_count_matches_the_built_networks() {
        let device = Device::flex();
        for (kind, norm) in [(GeneratorKind::Resnet, NormKind::Batch), (GeneratorKind::Unet, NormKind::Batch), (GeneratorKind::Unet, NormKind::Instance)] {
            let cfg = GeneratorConfig { kind, ngf: 4, n_blocks: 2, levels: 3, norm, upsample: UpsampleKind::Transposed };
            let g = cfg.init(&mut Initializer::new(0, &device));
            // Learnable parameters only: the running statistics are not trained.
            let learnable: usize = g
                .collect(None, None, false)
                .iter()
                .filter(|t| !t.name.ends_with("running_mean") && !t.name.ends_with("running_var"))
                .map(|t| t.shape.iter().product::<usize>())
                .sum();
            assert_eq!(parameter_count(&cfg), learnable, "{kind:?} {norm:?}");
        }
    }
}
