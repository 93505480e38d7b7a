//! The CTA→MBF generators: the ResNet generator of the reference (pix2pix
//! `resnet_<n>blocks`, 3-D) and, beside it, a U-Net ([`super::unet_generator`]); one
//! configuration and one [`Generator`] type over both.
//!
//! The ResNet generator:
//! ```text
//! conv 7³ 1→ngf, norm, ReLU
//! 3 × [conv 3³ stride 2, c→2c, norm, ReLU]                 ngf → 8·ngf
//! n_blocks × [x + (conv1³ d→d/2, norm, ReLU, conv3³, norm, ReLU, conv1³ d/2→d, norm, ReLU)]
//! 3 × [transposed conv 3³ stride 2 (or trilinear ×2 + conv 3³), c→c/2, norm, ReLU]
//! conv 7³ ngf→1 with bias, no output activation
//! ```
//! Every spatial size must be a multiple of 8. Each parameter has one PyTorch name in the
//! reference's `nn.Sequential` layout; [`ResnetGenerator::torch_names`] lists the pairs.

use super::init::Initializer;
use super::conv3::{Conv3, Conv3Config};
use super::norm::{Norm, NormKind, NormMode};
use super::upsample::Upsampler;
pub use super::upsample::UpsampleKind;
use super::conv_norm_relu::ConvNormRelu;
use super::unet_generator::UnetGenerator;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// Number of stride-2 down-sampling (and up-sampling) stages.
pub const N_DOWNSAMPLING: usize = 3;

/// Which generator network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    /// The reference's ResNet generator (`ngf`, `n_blocks`).
    #[default]
    Resnet,
    /// A U-Net with skip connections at every resolution (`ngf`, `levels`).
    Unet,
}

/// The generator's architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// The network (default the reference's ResNet).
    #[serde(default)]
    pub kind: GeneratorKind,
    /// Filters of the first layer (reference: 32).
    pub ngf: usize,
    /// Residual blocks at the bottleneck (ResNet; 6 or 9).
    #[serde(default = "default_blocks")]
    pub n_blocks: usize,
    /// Resolution levels (U-Net): the input's and `levels − 1` stride-2 down-samplings.
    #[serde(default = "default_levels")]
    pub levels: usize,
    /// Normalization kind.
    #[serde(default)]
    pub norm: NormKind,
    /// Up-sampling method.
    #[serde(default)]
    pub upsample: UpsampleKind,
}

fn default_blocks() -> usize {
    6
}

fn default_levels() -> usize {
    4
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self { kind: GeneratorKind::Resnet, ngf: 32, n_blocks: 6, levels: 4, norm: NormKind::Batch, upsample: UpsampleKind::Transposed }
    }
}

impl GeneratorConfig {
    /// Check the configuration; the message says what is wrong.
    pub fn validate(&self) -> crate::Result<()> {
        if self.ngf == 0 || self.ngf % 2 != 0 && self.ngf != 1 {
            return Err(crate::Error::invalid(format!("generator ngf must be a positive even number, got {}", self.ngf)));
        }
        if self.n_blocks == 0 {
            return Err(crate::Error::invalid("generator n_blocks must be at least 1"));
        }
        if !(2..=6).contains(&self.levels) {
            return Err(crate::Error::invalid(format!("generator levels must be between 2 and 6, got {}", self.levels)));
        }
        Ok(())
    }

    /// The spatial sizes the generator accepts: each a positive multiple of this.
    pub fn size_multiple(&self) -> usize {
        match self.kind {
            GeneratorKind::Resnet => 1 << N_DOWNSAMPLING,
            GeneratorKind::Unet => 1 << (self.levels - 1),
        }
    }

    /// Build a generator with parameters drawn from `init`.
    pub fn init(&self, init: &mut Initializer) -> Generator {
        match self.kind {
            GeneratorKind::Resnet => Generator::Resnet(self.init_resnet(init)),
            GeneratorKind::Unet => Generator::Unet(UnetGenerator::new(self, init)),
        }
    }

    fn init_resnet(&self, init: &mut Initializer) -> ResnetGenerator {
        let ngf = self.ngf;
        let stem = ConvNormRelu::new(init, Conv3Config::new(1, ngf, 7).with_padding(3), self.norm);
        let down = (0..N_DOWNSAMPLING)
            .map(|i| ConvNormRelu::new(init, Conv3Config::new(ngf << i, ngf << (i + 1), 3).with_stride(2).with_padding(1), self.norm))
            .collect();
        let d = ngf << N_DOWNSAMPLING;
        let blocks = (0..self.n_blocks).map(|_| ResnetBlock::new(init, d, self.norm)).collect();
        let up = (0..N_DOWNSAMPLING)
            .map(|i| {
                let c = d >> i;
                UpBlock::new(init, c, c / 2, self.norm, self.upsample)
            })
            .collect();
        let head = Conv3Config::new(ngf, 1, 7).with_padding(3).init(init);
        ResnetGenerator { stem, down, blocks, up, head, config: self.clone() }
    }
}

/// Bottleneck residual block: `x + f(x)` with `f` = 1³ (d→d/2), 3³ (d/2→d/2), 1³ (d/2→d),
/// each followed by norm and ReLU.
#[derive(Module, Debug)]
pub struct ResnetBlock {
    /// The three conv-norm-ReLU stages of `f`.
    pub stages: Vec<ConvNormRelu>,
}

impl ResnetBlock {
    fn new(init: &mut Initializer, d: usize, norm: NormKind) -> Self {
        let h = d / 2;
        let stages = vec![
            ConvNormRelu::new(init, Conv3Config::new(d, h, 1), norm),
            ConvNormRelu::new(init, Conv3Config::new(h, h, 3).with_padding(1), norm),
            ConvNormRelu::new(init, Conv3Config::new(h, d, 1), norm),
        ];
        Self { stages }
    }

    /// `x + f(x)`.
    pub fn forward(&self, x: Tensor<5>, mode: NormMode) -> Tensor<5> {
        let f = self.stages.iter().fold(x.clone(), |h, s| s.forward(h, mode));
        x + f
    }
}

/// Up-sampling, normalization, ReLU.
#[derive(Module, Debug)]
pub struct UpBlock {
    /// The up-sampling layer.
    pub conv: Upsampler,
    /// The normalization after it.
    pub norm: Norm,
}

impl UpBlock {
    fn new(init: &mut Initializer, c_in: usize, c_out: usize, norm: NormKind, kind: UpsampleKind) -> Self {
        let bias = norm.conv_bias();
        let conv = match kind {
            UpsampleKind::Transposed => Upsampler::Transposed(Conv3Config::new(c_in, c_out, 3).with_stride(2).with_padding(1).with_output_padding(1).with_bias(bias).init_transposed(init)),
            UpsampleKind::Trilinear => Upsampler::Trilinear(Conv3Config::new(c_in, c_out, 3).with_padding(1).with_bias(bias).init(init)),
        };
        Self { conv, norm: Norm::new(init, norm, c_out, true) }
    }

    /// `relu(norm(up(x)))`.
    pub fn forward(&self, x: Tensor<5>, mode: NormMode) -> Tensor<5> {
        relu(self.norm.forward(self.conv.forward(x), mode))
    }
}

/// A CTA→MBF generator (1 → 1 channel) of either kind.
#[derive(Module, Debug)]
pub enum Generator {
    /// The reference's ResNet generator.
    Resnet(ResnetGenerator),
    /// The U-Net generator.
    Unet(UnetGenerator),
}

impl Generator {
    /// Predict MBF from CTA: `[batch, 1, x, y, z]` → `[batch, 1, x, y, z]`, normalization in
    /// `mode`. Spatial sizes must be multiples of [`GeneratorConfig::size_multiple`].
    pub fn forward(&self, x: Tensor<5>, mode: NormMode) -> Tensor<5> {
        match self {
            Generator::Resnet(g) => g.forward(x, mode),
            Generator::Unet(g) => g.forward(x, mode),
        }
    }

    /// The final convolution to one channel.
    pub fn head(&self) -> &Conv3 {
        match self {
            Generator::Resnet(g) => &g.head,
            Generator::Unet(g) => &g.head,
        }
    }

    /// The architecture this generator was built from.
    pub fn config(&self) -> &GeneratorConfig {
        match self {
            Generator::Resnet(g) => &g.config,
            Generator::Unet(g) => &g.config,
        }
    }

    /// Floating-point operations of one forward pass at batch 1 and spatial size `size`.
    pub fn flops(&self, size: [usize; 3]) -> f64 {
        match self {
            Generator::Resnet(g) => g.flops(size),
            Generator::Unet(g) => g.flops(size),
        }
    }

    /// Every parameter and running statistic as (Burn module path, stored name): the
    /// reference's PyTorch names for the ResNet generator, the module paths for the U-Net.
    pub fn torch_names(&self) -> Vec<(String, String)> {
        let (variant, names) = match self {
            Generator::Resnet(g) => ("Resnet", g.torch_names()),
            Generator::Unet(g) => ("Unet", g.stored_names()),
        };
        names.into_iter().map(|(burn, stored)| (format!("{variant}.{burn}"), stored)).collect()
    }
}

/// The ResNet generator (1 → 1 channel).
#[derive(Module, Debug)]
pub struct ResnetGenerator {
    /// First 7³ convolution stage.
    pub stem: ConvNormRelu,
    /// The three stride-2 down-sampling stages.
    pub down: Vec<ConvNormRelu>,
    /// The residual blocks.
    pub blocks: Vec<ResnetBlock>,
    /// The three up-sampling stages.
    pub up: Vec<UpBlock>,
    /// Final 7³ convolution to one channel, with bias.
    pub head: Conv3,
    /// The architecture this generator was built from.
    #[module(skip)]
    pub config: GeneratorConfig,
}

impl ResnetGenerator {
    /// Predict MBF from CTA: `[batch, 1, x, y, z]` → `[batch, 1, x, y, z]`, normalization in
    /// `mode`. Spatial sizes must be multiples of 8.
    pub fn forward(&self, x: Tensor<5>, mode: NormMode) -> Tensor<5> {
        let mut h = self.stem.forward(x, mode);
        for s in &self.down {
            h = s.forward(h, mode);
        }
        for b in &self.blocks {
            h = b.forward(h, mode);
        }
        for u in &self.up {
            h = u.forward(h, mode);
        }
        self.head.forward(h)
    }

    /// Floating-point operations of one forward pass at batch 1 and spatial size `size`,
    /// summed layer by layer over the convolutions.
    pub fn flops(&self, size: [usize; 3]) -> f64 {
        let (mut total, mut s) = self.stem.conv.flops(size);
        for d in &self.down {
            let (f, o) = d.conv.flops(s);
            total += f;
            s = o;
        }
        for b in &self.blocks {
            for st in &b.stages {
                total += st.conv.flops(s).0;
            }
        }
        for u in &self.up {
            let (f, o) = u.conv.flops(s);
            total += f;
            s = o;
        }
        total + self.head.flops(s).0
    }

    /// Every parameter and running statistic as (Burn module path, PyTorch state-dict name)
    /// in the reference's `nn.Sequential` layout (`model.<i>...`, residual blocks
    /// `model.<i>.conv_block.<j>...`).
    pub fn torch_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut idx = 0usize;
        push_conv_norm(&mut out, "stem", &self.stem, idx);
        idx += 3;
        for (i, d) in self.down.iter().enumerate() {
            push_conv_norm(&mut out, &format!("down.{i}"), d, idx);
            idx += 3;
        }
        for (i, b) in self.blocks.iter().enumerate() {
            for (j, s) in b.stages.iter().enumerate() {
                let torch = format!("model.{idx}.conv_block.{}", 3 * j);
                push_conv(&mut out, &format!("blocks.{i}.stages.{j}.conv"), &s.conv, &torch);
                push_norm(&mut out, &format!("blocks.{i}.stages.{j}.norm"), &s.norm, &format!("model.{idx}.conv_block.{}", 3 * j + 1));
            }
            idx += 1;
        }
        for (i, u) in self.up.iter().enumerate() {
            match &u.conv {
                Upsampler::Transposed(c) => {
                    push_weights(&mut out, &format!("up.{i}.conv.Transposed"), c.bias.is_some(), &format!("model.{idx}"));
                    idx += 1;
                }
                Upsampler::Trilinear(c) => {
                    // nn.Upsample has no parameters but takes a Sequential index.
                    push_conv(&mut out, &format!("up.{i}.conv.Trilinear"), c, &format!("model.{}", idx + 1));
                    idx += 2;
                }
            }
            push_norm(&mut out, &format!("up.{i}.norm"), &u.norm, &format!("model.{idx}"));
            idx += 2;
        }
        push_conv(&mut out, "head", &self.head, &format!("model.{idx}"));
        out
    }
}

fn push_conv_norm(out: &mut Vec<(String, String)>, path: &str, s: &ConvNormRelu, idx: usize) {
    push_conv(out, &format!("{path}.conv"), &s.conv, &format!("model.{idx}"));
    push_norm(out, &format!("{path}.norm"), &s.norm, &format!("model.{}", idx + 1));
}

fn push_conv(out: &mut Vec<(String, String)>, path: &str, c: &Conv3, torch: &str) {
    push_weights(out, path, c.bias.is_some(), torch);
}

fn push_weights(out: &mut Vec<(String, String)>, path: &str, bias: bool, torch: &str) {
    out.push((format!("{path}.weight"), format!("{torch}.weight")));
    if bias {
        out.push((format!("{path}.bias"), format!("{torch}.bias")));
    }
}

/// Norm parameters and running statistics; also used by the discriminator's layout.
pub(crate) fn push_norm(out: &mut Vec<(String, String)>, path: &str, n: &Norm, torch: &str) {
    if n.weight.is_some() {
        out.push((format!("{path}.weight"), format!("{torch}.weight")));
        out.push((format!("{path}.bias"), format!("{torch}.bias")));
    }
    if n.running_mean.is_some() {
        out.push((format!("{path}.running_mean"), format!("{torch}.running_mean")));
        out.push((format!("{path}.running_var"), format!("{torch}.running_var")));
    }
}
