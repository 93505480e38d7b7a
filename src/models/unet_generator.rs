//! A 3-D U-Net generator, pix2pix's other generator kind, in the form nnU-Net made standard:
//! at every resolution two 3³ convolution–norm–ReLU stages, stride-2 3³ convolutions down,
//! ×2 up-sampling (transposed 2³ convolution, or trilinear + 3³ convolution) with the
//! encoder's features of the same resolution concatenated, and a 1³ head with bias.
//!
//! ```text
//! level 0:        conv 3³ 1→c0 (bias, no norm), ReLU; conv 3³ c0→c0, norm, ReLU ─┐ skip
//! level i ≥ 1:    conv 3³ stride 2 c(i−1)→ci, norm, ReLU; conv 3³ ci→ci, ...   ─┐ skip
//! up to level i:  up c(i+1)→ci, norm, ReLU; cat(skip) 2ci→ci conv 3³, norm, ReLU; conv 3³
//! head:           conv 1³ c0→1 with bias, no activation (output in target units)
//! ```
//! with `ci = ngf · 2^i`. The skip at full resolution lets each output voxel see its own
//! input voxel, which a voxel-wise mapping such as CTA → MBF needs. Weights are He-normal
//! (not the reference's N(0, 0.02)), so that the network also trains without normalization
//! statistics (eval norm mode, docs/design.md §6). Spatial sizes must be multiples of
//! `2^(levels − 1)`. The norm layers take the same explicit train/eval mode as the ResNet's.

use super::conv_norm_relu::ConvNormRelu;
use super::generator::GeneratorConfig;
use super::init::Initializer;
use super::conv3::{Conv3, Conv3Config, WeightInit};
use super::norm::{Norm, NormKind, NormMode};
use super::upsample::{UpsampleKind, Upsampler};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

/// Convolution–norm–ReLU with He-normal weights.
fn stage(init: &mut Initializer, c_in: usize, c_out: usize, k: usize, stride: usize, norm: NormKind) -> ConvNormRelu {
    let conv = Conv3Config::new(c_in, c_out, k).with_stride(stride).with_same_padding().with_bias(norm.conv_bias()).with_init(WeightInit::He).init(init);
    ConvNormRelu { conv, norm: Norm::new(init, norm, c_out, true) }
}

/// One decoder level: up-sampling with norm and ReLU, then two stages over the
/// concatenation with the skip.
#[derive(Module, Debug)]
pub struct UnetUp {
    /// ×2 up-sampling, `c(i+1) → ci`.
    pub up: Upsampler,
    /// Norm after the up-sampling.
    pub norm: Norm,
    /// `2ci → ci`, then `ci → ci`.
    pub stages: Vec<ConvNormRelu>,
}

/// The U-Net generator (1 → 1 channel).
#[derive(Module, Debug)]
pub struct UnetGenerator {
    /// Encoder levels, finest first; each two stages (the first strided from level 1 on).
    pub encoder: Vec<Vec<ConvNormRelu>>,
    /// Decoder levels, coarsest first.
    pub decoder: Vec<UnetUp>,
    /// 1³ convolution to one channel, with bias.
    pub head: Conv3,
    /// The architecture this generator was built from.
    #[module(skip)]
    pub config: GeneratorConfig,
}

impl UnetGenerator {
    /// Build a U-Net of `config.levels` levels with `config.ngf` filters at full resolution.
    pub fn new(config: &GeneratorConfig, init: &mut Initializer) -> Self {
        let norm = config.norm;
        let channels: Vec<usize> = (0..config.levels).map(|i| config.ngf << i).collect();
        let mut encoder = Vec::new();
        for (i, &c) in channels.iter().enumerate() {
            // The first convolution has a bias and no norm (as pix2pix's U-Net's outermost):
            // its ReLU thresholds sit at absolute intensities, which batch statistics of a
            // crop would otherwise shift with the crop's content.
            let (c_in, stride, first_norm) = if i == 0 { (1, 1, NormKind::None) } else { (channels[i - 1], 2, norm) };
            encoder.push(vec![stage(init, c_in, c, 3, stride, first_norm), stage(init, c, c, 3, 1, norm)]);
        }
        let mut decoder = Vec::new();
        for i in (0..config.levels - 1).rev() {
            let (c_in, c) = (channels[i + 1], channels[i]);
            let bias = norm.conv_bias();
            let up = match config.upsample {
                UpsampleKind::Transposed => Upsampler::Transposed(Conv3Config::new(c_in, c, 2).with_stride(2).with_bias(bias).with_init(WeightInit::He).init_transposed(init)),
                UpsampleKind::Trilinear => Upsampler::Trilinear(Conv3Config::new(c_in, c, 3).with_padding(1).with_bias(bias).with_init(WeightInit::He).init(init)),
            };
            let norm_up = Norm::new(init, norm, c, true);
            decoder.push(UnetUp { up, norm: norm_up, stages: vec![stage(init, 2 * c, c, 3, 1, norm), stage(init, c, c, 3, 1, norm)] });
        }
        let head = Conv3Config::new(channels[0], 1, 1).with_init(WeightInit::He).init(init);
        Self { encoder, decoder, head, config: config.clone() }
    }

    /// `[batch, 1, x, y, z]` → `[batch, 1, x, y, z]`, normalization in `mode`.
    pub fn forward(&self, x: Tensor<5>, mode: NormMode) -> Tensor<5> {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut h = x;
        for level in &self.encoder {
            h = level.iter().fold(h, |h, s| s.forward(h, mode));
            skips.push(h.clone());
        }
        skips.pop();
        for up in &self.decoder {
            let skip = skips.pop().expect("one skip per decoder level");
            h = relu(up.norm.forward(up.up.forward(h), mode));
            h = Tensor::cat(vec![h, skip], 1);
            h = up.stages.iter().fold(h, |h, s| s.forward(h, mode));
        }
        self.head.forward(h)
    }

    /// Floating-point operations of one forward pass at batch 1 and spatial size `size`.
    pub fn flops(&self, size: [usize; 3]) -> f64 {
        let mut total = 0.0;
        let mut sizes = Vec::new();
        let mut s = size;
        for level in &self.encoder {
            for st in level {
                let (f, o) = st.conv.flops(s);
                total += f;
                s = o;
            }
            sizes.push(s);
        }
        sizes.pop();
        for up in &self.decoder {
            let (f, o) = up.up.flops(s);
            total += f;
            s = o;
            for st in &up.stages {
                total += st.conv.flops(s).0;
            }
            debug_assert_eq!(Some(s), sizes.pop());
        }
        total + self.head.flops(s).0
    }

    /// Every parameter and running statistic as (Burn module path, stored name): a U-Net has
    /// no reference PyTorch layout, so exported files keep the module paths.
    pub fn stored_names(&self) -> Vec<(String, String)> {
        use burn::store::ModuleSnapshot;
        self.collect(None, None, false).into_iter().map(|t| (t.name.clone(), t.name.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Generator, GeneratorKind};
    use burn::tensor::{Device, Distribution};

    fn config(levels: usize, norm: NormKind, upsample: UpsampleKind) -> GeneratorConfig {
        GeneratorConfig { kind: GeneratorKind::Unet, ngf: 4, levels, norm, upsample, ..GeneratorConfig::default() }
    }

    #[test]
    fn output_keeps_the_input_size_and_sizes_must_be_multiples() {
        let device = Device::flex();
        for (levels, norm, up) in [(2, NormKind::Batch, UpsampleKind::Transposed), (3, NormKind::Instance, UpsampleKind::Trilinear), (4, NormKind::None, UpsampleKind::Transposed)] {
            let cfg = config(levels, norm, up);
            assert_eq!(cfg.size_multiple(), 1 << (levels - 1));
            let g = cfg.init(&mut Initializer::new(1, &device));
            let n = 2 * cfg.size_multiple();
            let x: Tensor<5> = Tensor::random([2, 1, n, n, cfg.size_multiple()], Distribution::Normal(0.0, 1.0), &device);
            let y = g.forward(x, NormMode::Train);
            assert_eq!(y.dims(), [2, 1, n, n, cfg.size_multiple()]);
            assert!(y.abs().sum().into_scalar::<f32>() > 0.0);
            assert!(g.flops([n, n, n]) > 0.0);
        }
    }

    #[test]
    fn gradients_reach_the_first_layer_in_both_norm_modes() {
        let device = Device::flex().autodiff();
        let cfg = config(3, NormKind::Batch, UpsampleKind::Transposed);
        let g = cfg.init(&mut Initializer::new(2, &device));
        let x: Tensor<5> = Tensor::random([1, 1, 8, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        for mode in [NormMode::Train, NormMode::Eval] {
            let grads = g.forward(x.clone(), mode).powf_scalar(2.0).sum().backward();
            let Generator::Unet(u) = &g else { unreachable!() };
            let first = u.encoder[0][0].conv.weight.grad(&grads).expect("gradient of the first conv");
            assert!(first.abs().sum().into_scalar::<f32>() > 0.0, "{mode}: no gradient at the first layer");
        }
    }

    #[test]
    fn stored_names_are_the_module_paths() {
        let g = config(2, NormKind::Batch, UpsampleKind::Transposed).init(&mut Initializer::new(0, &Device::flex()));
        let names = g.torch_names();
        assert!(names.iter().any(|(b, t)| b == "Unet.head.weight" && t == "head.weight"), "{names:?}");
        assert!(names.iter().any(|(_, t)| t == "encoder.0.1.norm.running_mean"));
    }
}
