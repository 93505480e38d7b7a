//! The chamber-segmentation network of docs/design.md §5: a 3-D U-Net after Isensee et al. (2017),
//! with instance norm without affine parameters, LeakyReLU 0.01, residual context levels,
//! and deep supervision; plus the resampling wrapper that runs it at a fixed grid size.
//!
//! ```text
//! context level 1:  conv 3³ in→b;          x + [IN, LReLU, conv 3³, dropout, IN, LReLU, conv 3³]
//! context level k:  conv 3³ stride 2 →2^(k−1)·b; the same residual pair     (k = 2..5)
//!                   each level's output → IN, LReLU (kept as the skip of the level)
//! localization:     from level 5: nearest ×2, conv 3³ c→c/2, IN, LReLU
//!                   at level k = 4..1: concat skip, conv 3³ (2c→2c), IN, LReLU,
//!                   then conv 1³ 2c→c and up-sampling as above (k > 1), or conv 1³ 2c→classes (k = 1)
//! deep supervision: conv 1³ heads on the localization features of levels 3 and 2; the level-3
//!                   head is up-sampled ×2 and added to the level-2 head, up-sampled ×2 and
//!                   added to the final logits
//! ```
//! The reference's trained form of this design has another graph: [`super::unet3d_reference`].
//! Every spatial size the network itself sees must be a multiple of 16. [`UNet3d::forward_resampled`]
//! resizes any input to the configured `input_size` (trilinear, align-corners) and the logits back.

use super::init::Initializer;
use super::conv3::{Conv3, Conv3Config, WeightInit};

use super::norm::{NORM_EPS, instance_norm};
use crate::ops::{resize_trilinear, upsample_nearest2};
use burn::module::Module;
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

/// A He-initialized convolution's settings (every U-Net convolution is one).
fn he(c_in: usize, c_out: usize, kernel: usize) -> Conv3Config {
    Conv3Config::new(c_in, c_out, kernel).with_init(WeightInit::He)
}

/// Number of context levels (four stride-2 down-samplings).
pub const LEVELS: usize = 5;
/// Slope of the LeakyReLU for negative inputs.
pub const LEAKY_SLOPE: f64 = 0.01;

/// The network's architecture and the fixed grid it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNet3dConfig {
    /// Input channels (1 for CTA).
    #[serde(default = "one")]
    pub in_channels: usize,
    /// Output classes, background included (8 for the chamber mask).
    pub classes: usize,
    /// Filters of the first level; level `k` has `2^(k−1)` times as many (reference: 6).
    pub base_n_filter: usize,
    /// Dropout probability inside each residual pair while training (reference: 0.6).
    #[serde(default)]
    pub dropout: f64,
    /// The grid (x, y, z) every input is resampled to (reference: 256³); multiples of 16.
    pub input_size: [usize; 3],
}

fn one() -> usize {
    1
}

impl UNet3dConfig {
    /// Floats of the network's largest kernel (a 3³ convolution at the deepest level): a
    /// lower bound on the size of any file that stores this network's parameters.
    pub fn largest_kernel_floats(&self) -> usize {
        deepest_kernel_floats(self.base_n_filter)
    }

    /// Check the configuration; the message says what is wrong.
    pub fn validate(&self) -> crate::Result<()> {
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(crate::Error::invalid(format!("unet dropout must be in [0, 1), got {}", self.dropout)));
        }
        check_unet("unet ", self.in_channels, self.base_n_filter, self.classes, self.input_size)
    }

    /// Build a network with parameters drawn from `init` (He-normal convolutions, zero biases).
    pub fn init(&self, init: &mut Initializer) -> UNet3d {
        let b = self.base_n_filter;
        let ch = |level: usize| b << level; // level index 0..LEVELS
        let context = (0..LEVELS)
            .map(|k| {
                let c_in = if k == 0 { self.in_channels } else { ch(k - 1) };
                ContextLevel::new(init, c_in, ch(k), if k == 0 { 1 } else { 2 })
            })
            .collect();
        let bottom_up = UpConv::new(init, ch(LEVELS - 1), ch(LEVELS - 2));
        let localization = (0..LEVELS - 1)
            .rev()
            .map(|k| {
                let c = ch(k);
                let out = if k == 0 { self.classes } else { c };
                LocalizationLevel {
                    conv: he(2 * c, 2 * c, 3).with_padding(1).with_bias(false).init(init),
                    reduce: he(2 * c, out, 1).with_bias(k == 0).init(init),
                    up: (k > 0).then(|| UpConv::new(init, c, ch(k - 1))),
                }
            })
            .collect();
        // Heads on the localization features of levels 3 and 2 (indices 2 and 1): 2·ch(k) channels.
        let heads = [2, 1].into_iter().map(|k| he(2 * ch(k), self.classes, 1).init(init)).collect();
        UNet3d { context, bottom_up, localization, heads, config: self.clone() }
    }
}

/// Check what both U-Nets' architectures share: channels and filters at least 1, at least
/// two classes, a grid of multiples of 16. Messages start with `what`.
pub(crate) fn check_unet(what: &str, in_channels: usize, base_n_filter: usize, classes: usize, input_size: [usize; 3]) -> crate::Result<()> {
    let bad = |m: String| Err(crate::Error::invalid(format!("{what}{m}")));
    if in_channels == 0 || base_n_filter == 0 {
        return bad("in_channels and base_n_filter must be at least 1".into());
    }
    if classes < 2 {
        return bad(format!("classes must be at least 2 (background and one label), got {classes}"));
    }
    let m = UNet3d::SIZE_MULTIPLE;
    if input_size.iter().any(|&n| n == 0 || n % m != 0) {
        return bad(format!("input_size {input_size:?}: each size must be a positive multiple of {m}"));
    }
    Ok(())
}

/// Floats of a 3³ convolution between two level-5 feature maps of a U-Net with
/// `base_n_filter` filters at level 1 (both U-Nets' largest kernel).
pub(crate) fn deepest_kernel_floats(base_n_filter: usize) -> usize {
    let deepest = base_n_filter.saturating_mul(1 << (LEVELS - 1));
    27usize.saturating_mul(deepest).saturating_mul(deepest)
}

/// `leaky_relu(instance_norm(x))`.
pub(crate) fn norm_act(x: Tensor<5>) -> Tensor<5> {
    leaky_relu(instance_norm(x, NORM_EPS), LEAKY_SLOPE)
}

/// Element-wise dropout with probability `p` when `active`, scaled so the expectation is kept.
fn dropout(x: Tensor<5>, p: f64, active: bool) -> Tensor<5> {
    if !active || p == 0.0 {
        return x;
    }
    let keep = x.random_like(Distribution::Bernoulli(1.0 - p));
    (x * keep).mul_scalar(1.0 / (1.0 - p))
}

/// One context level: an entry convolution (stride 1 at level 1, 2 below), then a residual
/// pair of pre-activated 3³ convolutions with dropout between them.
#[derive(Module, Debug)]
pub struct ContextLevel {
    /// Entry convolution (changes channels and, below level 1, halves the grid).
    pub entry: Conv3,
    /// First convolution of the residual pair.
    pub conv_a: Conv3,
    /// Second convolution of the residual pair.
    pub conv_b: Conv3,
}

impl ContextLevel {
    fn new(init: &mut Initializer, c_in: usize, c_out: usize, stride: usize) -> Self {
        Self {
            entry: he(c_in, c_out, 3).with_stride(stride).with_padding(1).with_bias(false).init(init),
            conv_a: he(c_out, c_out, 3).with_padding(1).with_bias(false).init(init),
            conv_b: he(c_out, c_out, 3).with_padding(1).with_bias(false).init(init),
        }
    }

    /// The level's output, normalized and activated.
    fn forward(&self, x: Tensor<5>, p: f64, train: bool) -> Tensor<5> {
        let h = self.entry.forward(x);
        let f = self.conv_a.forward(norm_act(h.clone()));
        let f = self.conv_b.forward(norm_act(dropout(f, p, train)));
        norm_act(h + f)
    }
}

/// Nearest ×2 up-sampling, conv 3³, instance norm, LeakyReLU.
#[derive(Module, Debug)]
pub struct UpConv {
    /// The convolution after the up-sampling.
    pub conv: Conv3,
}

impl UpConv {
    fn new(init: &mut Initializer, c_in: usize, c_out: usize) -> Self {
        Self { conv: he(c_in, c_out, 3).with_padding(1).with_bias(false).init(init) }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        norm_act(self.conv.forward(upsample_nearest2(x)))
    }
}

/// One localization level: after concatenation with the skip, conv 3³ + norm + LeakyReLU,
/// then conv 1³ (to the level's channels, or to the classes at level 1) and up-sampling.
#[derive(Module, Debug)]
pub struct LocalizationLevel {
    /// The 3³ convolution on the concatenation.
    pub conv: Conv3,
    /// The 1³ convolution after it.
    pub reduce: Conv3,
    /// Up-sampling to the next finer level (absent at level 1).
    pub up: Option<UpConv>,
}

/// The 3-D U-Net (`[batch, in, x, y, z]` → logits `[batch, classes, x, y, z]`).
#[derive(Module, Debug)]
pub struct UNet3d {
    /// Context levels 1..5.
    pub context: Vec<ContextLevel>,
    /// Up-sampling from level 5 to level 4.
    pub bottom_up: UpConv,
    /// Localization levels 4, 3, 2, 1.
    pub localization: Vec<LocalizationLevel>,
    /// Deep-supervision heads at levels 3 and 2.
    pub heads: Vec<Conv3>,
    /// The architecture this network was built from.
    #[module(skip)]
    pub config: UNet3dConfig,
}

impl UNet3d {
    /// Every spatial size the network runs on must be a multiple of this.
    pub const SIZE_MULTIPLE: usize = 1 << (LEVELS - 1);

    /// Logits on the input's own grid (sizes multiples of 16). `train` enables dropout.
    pub fn forward(&self, x: Tensor<5>, train: bool) -> Tensor<5> {
        let p = self.config.dropout;
        let mut skips = Vec::with_capacity(LEVELS - 1);
        let mut h = x;
        for (k, level) in self.context.iter().enumerate() {
            h = level.forward(h, p, train);
            if k + 1 < LEVELS {
                skips.push(h.clone());
            }
        }
        h = self.bottom_up.forward(h);
        let mut supervision: Option<Tensor<5>> = None;
        let mut head = self.heads.iter();
        for (i, level) in self.localization.iter().enumerate() {
            let skip = skips.pop().expect("one skip per localization level");
            let features = norm_act(level.conv.forward(Tensor::cat(vec![h, skip], 1)));
            // Localization indices 1 and 2 are levels 3 and 2: the deep-supervision levels.
            if i == 1 || i == 2 {
                let s = head.next().expect("two heads").forward(features.clone());
                supervision = Some(match supervision {
                    Some(coarser) => upsample_nearest2(coarser) + s,
                    None => s,
                });
            }
            h = level.reduce.forward(features);
            if let Some(up) = &level.up {
                h = up.forward(h);
            }
        }
        match supervision {
            Some(s) => h + upsample_nearest2(s),
            None => h,
        }
    }

    /// Logits on the input's grid, for an input of any size: the input is resized to the
    /// configured `input_size` (trilinear, align-corners), the network runs there, and the
    /// logits are resized back the same way.
    pub fn forward_resampled(&self, x: Tensor<5>, train: bool) -> Tensor<5> {
        let [_, _, nx, ny, nz] = x.dims();
        let logits = self.forward(resize_trilinear(x, self.config.input_size, true), train);
        resize_trilinear(logits, [nx, ny, nz], true)
    }

    /// Floating-point operations of one forward pass at batch 1 on the fixed grid, counted
    /// over the convolutions.
    pub fn flops(&self) -> f64 {
        let mut s = self.config.input_size;
        let mut total = 0.0;
        let mut sizes = Vec::new();
        for level in &self.context {
            let (f, o) = level.entry.flops(s);
            s = o;
            total += f + level.conv_a.flops(s).0 + level.conv_b.flops(s).0;
            sizes.push(s);
        }
        let mut s = sizes[LEVELS - 1].map(|n| 2 * n);
        total += self.bottom_up.conv.flops(s).0;
        for (i, level) in self.localization.iter().enumerate() {
            total += level.conv.flops(s).0 + level.reduce.flops(s).0;
            if i == 1 || i == 2 {
                total += self.heads[i - 1].flops(s).0;
            }
            if let Some(up) = &level.up {
                s = s.map(|n| 2 * n);
                total += up.conv.flops(s).0;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn config() -> UNet3dConfig {
        UNet3dConfig { in_channels: 1, classes: 3, base_n_filter: 2, dropout: 0.3, input_size: [16, 32, 16] }
    }

    #[test]
    fn shapes_and_resampling() {
        let device = Device::flex();
        let net = config().init(&mut Initializer::new(1, &device));
        let x: Tensor<5> = Tensor::random([2, 1, 16, 32, 16], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(net.forward(x, false).dims(), [2, 3, 16, 32, 16]);
        let x: Tensor<5> = Tensor::random([1, 1, 21, 9, 30], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(net.forward_resampled(x, false).dims(), [1, 3, 21, 9, 30]);
    }

    #[test]
    fn dropout_only_when_training() {
        let device = Device::flex();
        let net = config().init(&mut Initializer::new(1, &device));
        let x: Tensor<5> = Tensor::random([1, 1, 16, 32, 16], Distribution::Normal(0.0, 1.0), &device);
        let a = net.forward(x.clone(), false).into_data();
        let b = net.forward(x.clone(), false).into_data();
        assert_eq!(a, b);
        let c = net.forward(x, true).into_data();
        assert_ne!(a, c);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let mut c = config();
        c.input_size = [24, 32, 16];
        assert!(c.validate().unwrap_err().to_string().contains("multiple of 16"));
        assert!(config().validate().is_ok());
    }
}
