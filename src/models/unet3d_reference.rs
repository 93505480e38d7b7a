//! The reference system's chamber-segmentation network, as its PyTorch checkpoints store it:
//! the "modified 3-D U-Net" of Isensee et al. (2017) in the widely used `Modified3DUNet(in_channels,
//! n_classes, base_n_filter)` form (docs/design.md §5). It differs from [`super::UNet3d`] (the
//! network cta2mbf trains) in its graph, not only its names: every convolution is bias-free,
//! each residual pair below level 1 applies **one** 3³ convolution twice, level 1 has no norm
//! inside its pair and keeps an un-normalized skip, and the localization path up-samples after
//! its 1³ convolution. Inference only (dropout is the identity there).
//!
//! ```text
//! b = base_n_filter; IN = instance norm (no affine), act = LeakyReLU 0.01, up = nearest ×2
//! level 1:  h = c1_1(x); h = c1_2(act h); h = lrelu_conv_c1(act h) + c1_1(x);
//!           skip1 = act h; h = act IN h
//! level k:  h = ck(h) (stride 2, 2^(k−1)·b); f = pair_k(act IN h); h = pair_k(act IN f) + h
//!   (2..5)  k < 5: h = act IN h, skip_k = h
//! bottom:   h = act IN conv(up act IN h) (16b → 8b); h = act IN l0(h) (1³)
//! l1..l3:   h = act IN conv(cat[h, skip]) (3³); [ds2 after l2, ds3 after l3];
//!           h = act IN conv(up act IN reduce(h)) (1³ halves, 3³ halves again)
//! l4:       h = act IN conv(cat[h, skip1]); logits = l4(h) (1³ → classes)
//!           + up(up(ds2_head(ds2)) + ds3_head(ds3))
//! ```
//! Spatial sizes must be multiples of 16; the fixed grid of `input_size` is where
//! [`crate::predict::segment_volume`] runs it.

use super::conv3::{Conv3, Conv3Config, WeightInit};
use super::init::Initializer;
use super::unet3d::{LEAKY_SLOPE, LEVELS, check_unet, deepest_kernel_floats, norm_act};
use crate::ops::upsample_nearest2;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::leaky_relu;
use serde::{Deserialize, Serialize};

/// The reference network's architecture (what its tensor names and shapes tell) and the
/// fixed grid it is run on (what they do not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceUNet3dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output classes, background included.
    pub classes: usize,
    /// Filters of the first level; level `k` has `2^(k−1)` times as many.
    pub base_n_filter: usize,
    /// The grid (x, y, z) every input is resampled to; multiples of 16.
    pub input_size: [usize; 3],
}

/// A bias-free `kernel³` convolution with "same" padding (every convolution of the network).
fn conv(init: &mut Initializer, c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Conv3 {
    Conv3Config::new(c_in, c_out, kernel).with_stride(stride).with_same_padding().with_bias(false).with_init(WeightInit::He).init(init)
}

impl ReferenceUNet3dConfig {
    /// Floats of the network's largest kernel (the 3³ convolution of level 5): a lower bound
    /// on the values any file storing this network holds.
    pub fn largest_kernel_floats(&self) -> usize {
        deepest_kernel_floats(self.base_n_filter)
    }

    /// Check the configuration; the message says what is wrong.
    pub fn validate(&self) -> crate::Result<()> {
        check_unet("", self.in_channels, self.base_n_filter, self.classes, self.input_size)
    }

    /// Build the network with He-normal weights from `init` (a checkpoint replaces them).
    pub fn init(&self, init: &mut Initializer) -> ReferenceUNet3d {
        let b = self.base_n_filter;
        let ch = |level: usize| b << level; // level index 0..LEVELS
        let context = (1..LEVELS).map(|k| SharedPairLevel { entry: conv(init, ch(k - 1), ch(k), 3, 2), pair: conv(init, ch(k), ch(k), 3, 1) }).collect();
        let localization = (1..LEVELS - 1)
            .rev()
            .map(|k| {
                let c = 2 * ch(k); // after the concatenation
                LocalizationStep { conv: conv(init, c, c, 3, 1), reduce: conv(init, c, c / 2, 1, 1), up: conv(init, c / 2, c / 4, 3, 1) }
            })
            .collect();
        ReferenceUNet3d {
            conv_c1_1: conv(init, self.in_channels, b, 3, 1),
            conv_c1_2: conv(init, b, b, 3, 1),
            conv_c1_3: conv(init, b, b, 3, 1),
            context,
            up_l0: conv(init, ch(4), ch(3), 3, 1),
            conv_l0: conv(init, ch(3), ch(3), 1, 1),
            localization,
            conv_l4: conv(init, 2 * b, 2 * b, 3, 1),
            head: conv(init, 2 * b, self.classes, 1, 1),
            ds2_head: conv(init, 8 * b, self.classes, 1, 1),
            ds3_head: conv(init, 4 * b, self.classes, 1, 1),
            config: self.clone(),
        }
    }
}

/// Context level 2..5: a stride-2 entry convolution and the one 3³ convolution its residual
/// pair applies twice (`conv3d_c<k>`, `norm_lrelu_conv_c<k>`).
#[derive(Module, Debug)]
pub struct SharedPairLevel {
    /// Entry convolution (doubles the channels, halves the grid).
    pub entry: Conv3,
    /// The residual pair's convolution, applied twice.
    pub pair: Conv3,
}

/// Localization level 1..3: 3³ convolution on the concatenation, 1³ reduction, and the 3³
/// convolution after the ×2 up-sampling (`conv_norm_lrelu_l<k>`, `conv3d_l<k>`,
/// `norm_lrelu_upscale_conv_norm_lrelu_l<k>`).
#[derive(Module, Debug)]
pub struct LocalizationStep {
    /// 3³ convolution on the concatenation with the skip.
    pub conv: Conv3,
    /// 1³ convolution halving the channels.
    pub reduce: Conv3,
    /// 3³ convolution after the up-sampling, halving them again.
    pub up: Conv3,
}

/// The reference segmentation network (`[batch, in, x, y, z]` → logits `[batch, classes, x, y, z]`).
#[derive(Module, Debug)]
pub struct ReferenceUNet3d {
    /// Level 1 entry convolution (`conv3d_c1_1`).
    pub conv_c1_1: Conv3,
    /// Level 1 first pair convolution (`conv3d_c1_2`).
    pub conv_c1_2: Conv3,
    /// Level 1 second pair convolution (`lrelu_conv_c1`).
    pub conv_c1_3: Conv3,
    /// Context levels 2..5.
    pub context: Vec<SharedPairLevel>,
    /// Up-sampling convolution from level 5 to level 4 (`norm_lrelu_upscale_conv_norm_lrelu_l0`).
    pub up_l0: Conv3,
    /// 1³ convolution after it (`conv3d_l0`).
    pub conv_l0: Conv3,
    /// Localization levels 1..3 (grid of levels 4, 3, 2).
    pub localization: Vec<LocalizationStep>,
    /// Level-1 localization 3³ convolution (`conv_norm_lrelu_l4`).
    pub conv_l4: Conv3,
    /// Final 1³ convolution to the classes (`conv3d_l4`).
    pub head: Conv3,
    /// Deep-supervision head on localization level 2's features (`ds2_1x1_conv3d`).
    pub ds2_head: Conv3,
    /// Deep-supervision head on localization level 3's features (`ds3_1x1_conv3d`).
    pub ds3_head: Conv3,
    /// The architecture and grid.
    #[module(skip)]
    pub config: ReferenceUNet3dConfig,
}

impl ReferenceUNet3d {
    /// Logits on the input's own grid (sizes multiples of 16).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let act = |t: Tensor<5>| leaky_relu(t, LEAKY_SLOPE);
        let entry = self.conv_c1_1.forward(x);
        let h = self.conv_c1_2.forward(act(entry.clone()));
        let h = self.conv_c1_3.forward(act(h)) + entry;
        let mut skips = vec![act(h.clone())];
        let mut h = norm_act(h);
        for (i, level) in self.context.iter().enumerate() {
            let entry = level.entry.forward(h);
            let f = level.pair.forward(norm_act(entry.clone()));
            h = level.pair.forward(norm_act(f)) + entry;
            if i + 1 < self.context.len() {
                h = norm_act(h);
                skips.push(h.clone());
            }
        }
        h = norm_act(self.up_l0.forward(upsample_nearest2(norm_act(h))));
        h = norm_act(self.conv_l0.forward(h));
        let mut supervision = Vec::with_capacity(2);
        for (i, step) in self.localization.iter().enumerate() {
            let skip = skips.pop().expect("one skip per localization level");
            h = norm_act(step.conv.forward(Tensor::cat(vec![h, skip], 1)));
            if i > 0 {
                supervision.push(h.clone());
            }
            h = norm_act(step.up.forward(upsample_nearest2(norm_act(step.reduce.forward(h)))));
        }
        let skip = skips.pop().expect("level 1's skip");
        let logits = self.head.forward(norm_act(self.conv_l4.forward(Tensor::cat(vec![h, skip], 1))));
        let [ds2, ds3]: [Tensor<5>; 2] = supervision.try_into().expect("two supervised levels");
        let coarse = upsample_nearest2(self.ds2_head.forward(ds2)) + self.ds3_head.forward(ds3);
        logits + upsample_nearest2(coarse)
    }

    /// Module path ↔ the reference's state-dict name of every parameter, in the reference's
    /// order.
    pub fn torch_names(&self) -> Vec<(String, String)> {
        let mut names = vec![
            ("conv_c1_1".to_string(), "conv3d_c1_1".to_string()),
            ("conv_c1_2".into(), "conv3d_c1_2".into()),
            ("conv_c1_3".into(), "lrelu_conv_c1.1".into()),
        ];
        for k in 0..self.context.len() {
            names.push((format!("context.{k}.entry"), format!("conv3d_c{}", k + 2)));
            names.push((format!("context.{k}.pair"), format!("norm_lrelu_conv_c{}.2", k + 2)));
        }
        names.push(("up_l0".into(), "norm_lrelu_upscale_conv_norm_lrelu_l0.3".into()));
        names.push(("conv_l0".into(), "conv3d_l0".into()));
        for k in 0..self.localization.len() {
            names.push((format!("localization.{k}.conv"), format!("conv_norm_lrelu_l{}.0", k + 1)));
            names.push((format!("localization.{k}.reduce"), format!("conv3d_l{}", k + 1)));
            names.push((format!("localization.{k}.up"), format!("norm_lrelu_upscale_conv_norm_lrelu_l{}.3", k + 1)));
        }
        names.push(("conv_l4".into(), "conv_norm_lrelu_l4.0".into()));
        names.push(("head".into(), "conv3d_l4".into()));
        names.push(("ds2_head".into(), "ds2_1x1_conv3d".into()));
        names.push(("ds3_head".into(), "ds3_1x1_conv3d".into()));
        names.into_iter().map(|(burn, torch)| (format!("{burn}.weight"), format!("{torch}.weight"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::store::ModuleSnapshot;
    use burn::tensor::{Device, Distribution};

    fn config() -> ReferenceUNet3dConfig {
        ReferenceUNet3dConfig { in_channels: 1, classes: 3, base_n_filter: 2, input_size: [16, 32, 16] }
    }

    #[test]
    fn logits_keep_the_grid_and_every_parameter_has_a_reference_name() {
        let device = Device::flex();
        let net = config().init(&mut Initializer::new(1, &device));
        let x: Tensor<5> = Tensor::random([1, 1, 16, 32, 16], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(net.forward(x).dims(), [1, 3, 16, 32, 16]);
        let mut paths: Vec<String> = net.collect(None, None, false).into_iter().map(|t| t.name.clone()).collect();
        let mut named: Vec<String> = net.torch_names().into_iter().map(|(b, _)| b).collect();
        assert_eq!(named.len(), 26);
        paths.sort();
        named.sort();
        assert_eq!(paths, named);
    }

    #[test]
    fn bad_grids_are_refused() {
        let c = ReferenceUNet3dConfig { input_size: [24, 32, 16], ..config() };
        assert!(c.validate().unwrap_err().to_string().contains("multiple of 16"));
        assert!(config().validate().is_ok());
    }
}
