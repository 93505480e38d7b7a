//! The conditional discriminators of docs/design.md §4: "pixel" (1×1×1 convolutions, a per-voxel
//! real/fake logit) and "n_layers" (PatchGAN with 4³ kernels). The input is the CTA and an
//! MBF map concatenated on the channel axis. Their batch norm always uses the batch's
//! statistics and keeps no running state.

use super::generator::push_norm;
use super::init::Initializer;
use super::conv3::{Conv3, Conv3Config};
use super::norm::{Norm, NormKind, NormMode};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::leaky_relu;
use serde::{Deserialize, Serialize};

/// Negative slope of the discriminators' LeakyReLU.
pub const LEAKY_SLOPE: f64 = 0.2;

/// Which discriminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscriminatorKind {
    /// 1×1×1 convolutions (pix2pix `pixel`).
    #[default]
    Pixel,
    /// PatchGAN with `n_layers` stride-2 4³ convolutions (pix2pix `n_layers` / `basic` = 3).
    NLayers,
}

/// The discriminator's architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscriminatorConfig {
    /// Which network.
    #[serde(default)]
    pub kind: DiscriminatorKind,
    /// Filters of the first layer (reference: 8).
    pub ndf: usize,
    /// Stride-2 layers of the PatchGAN (ignored by `pixel`).
    #[serde(default = "default_n_layers")]
    pub n_layers: usize,
    /// Normalization kind.
    #[serde(default)]
    pub norm: NormKind,
}

fn default_n_layers() -> usize {
    3
}

impl DiscriminatorConfig {
    /// Check the configuration.
    pub fn validate(&self) -> crate::Result<()> {
        if self.ndf == 0 {
            return Err(crate::Error::invalid("discriminator ndf must be positive"));
        }
        if self.kind == DiscriminatorKind::NLayers && self.n_layers == 0 {
            return Err(crate::Error::invalid("discriminator n_layers must be at least 1"));
        }
        Ok(())
    }

    /// Build a discriminator over `input_nc` channels with parameters drawn from `init`.
    pub fn init(&self, init: &mut Initializer, input_nc: usize) -> Discriminator {
        let bias = self.norm.conv_bias();
        let ndf = self.ndf;
        let none = NormKind::None;
        let blocks = match self.kind {
            DiscriminatorKind::Pixel => vec![
                DiscBlock::new(init, (input_nc, ndf, 1, 1, 0, true), none, true),
                DiscBlock::new(init, (ndf, 2 * ndf, 1, 1, 0, bias), self.norm, true),
                DiscBlock::new(init, (2 * ndf, 1, 1, 1, 0, bias), none, false),
            ],
            DiscriminatorKind::NLayers => {
                let mut blocks = vec![DiscBlock::new(init, (input_nc, ndf, 4, 2, 1, true), none, true)];
                let mut mult = 1;
                for n in 1..=self.n_layers {
                    let prev = mult;
                    mult = (1 << n).min(8);
                    let stride = if n == self.n_layers { 1 } else { 2 };
                    blocks.push(DiscBlock::new(init, (ndf * prev, ndf * mult, 4, stride, 1, bias), self.norm, true));
                }
                blocks.push(DiscBlock::new(init, (ndf * mult, 1, 4, 1, 1, true), none, false));
                blocks
            }
        };
        Discriminator { blocks, config: self.clone() }
    }
}

/// Convolution, optional normalization, optional LeakyReLU.
#[derive(Module, Debug)]
pub struct DiscBlock {
    /// The convolution.
    pub conv: Conv3,
    /// The normalization (kind `None` for the first and last layers).
    pub norm: Norm,
    /// Whether a LeakyReLU follows.
    #[module(skip)]
    pub activation: bool,
}

impl DiscBlock {
    /// `conv` = (in, out, kernel, stride, padding, bias).
    fn new(init: &mut Initializer, conv: (usize, usize, usize, usize, usize, bool), norm: NormKind, activation: bool) -> Self {
        let (c_in, c_out, k, stride, padding, bias) = conv;
        let conv = Conv3Config::new(c_in, c_out, k).with_stride(stride).with_padding(padding).with_bias(bias).init(init);
        Self { conv, norm: Norm::new(init, norm, c_out, false), activation }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let h = self.norm.forward(self.conv.forward(x), NormMode::Train);
        if self.activation { leaky_relu(h, LEAKY_SLOPE) } else { h }
    }
}

/// A conditional discriminator; outputs real/fake logits.
#[derive(Module, Debug)]
pub struct Discriminator {
    /// The layers in order.
    pub blocks: Vec<DiscBlock>,
    /// The architecture this discriminator was built from.
    #[module(skip)]
    pub config: DiscriminatorConfig,
}

impl Discriminator {
    /// Logits for `x` (`[batch, input_nc, x, y, z]`).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.blocks.iter().fold(x, |h, b| b.forward(h))
    }

    /// Every parameter as (Burn module path, PyTorch name) in pix2pix's layout (`net.<i>` for
    /// the pixel discriminator, `model.<i>` for the PatchGAN).
    pub fn torch_names(&self) -> Vec<(String, String)> {
        let prefix = match self.config.kind {
            DiscriminatorKind::Pixel => "net",
            DiscriminatorKind::NLayers => "model",
        };
        let mut out = Vec::new();
        let mut idx = 0;
        for (i, b) in self.blocks.iter().enumerate() {
            out.push((format!("blocks.{i}.conv.weight"), format!("{prefix}.{idx}.weight")));
            if b.conv.bias.is_some() {
                out.push((format!("blocks.{i}.conv.bias"), format!("{prefix}.{idx}.bias")));
            }
            idx += 1;
            if b.norm.kind != NormKind::None {
                push_norm(&mut out, &format!("blocks.{i}.norm"), &b.norm, &format!("{prefix}.{idx}"));
                idx += 1;
            }
            if b.activation {
                idx += 1;
            }
        }
        out
    }
}
