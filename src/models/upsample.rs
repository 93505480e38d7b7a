//! ×2 up-sampling of both generators: a transposed convolution (the reference's) or
//! trilinear interpolation followed by a convolution.

use super::conv_transpose3::ConvTranspose3;
use super::conv3::Conv3;
use crate::ops::resize_trilinear;
use burn::module::Module;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How the generator up-samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsampleKind {
    /// Transposed convolution, stride 2: 3³ with padding 1 and output padding 1 in the ResNet
    /// generator (the reference), 2³ in the U-Net.
    #[default]
    Transposed,
    /// Trilinear ×2 (half-pixel, as `nn.Upsample`) followed by conv 3³ padding 1.
    Trilinear,
}

/// One ×2 up-sampling stage.
#[derive(Module, Debug)]
pub enum Upsampler {
    /// Transposed convolution (stride 2).
    Transposed(ConvTranspose3),
    /// Trilinear ×2 then a 3³ convolution.
    Trilinear(Conv3),
}

impl Upsampler {
    /// Double every spatial size of `x`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        match self {
            Upsampler::Transposed(c) => c.forward(x),
            Upsampler::Trilinear(c) => {
                let [_, _, nx, ny, nz] = x.dims();
                c.forward(resize_trilinear(x, [2 * nx, 2 * ny, 2 * nz], false))
            }
        }
    }

    /// Floating-point operations for an input of spatial size `input`, batch 1, with the
    /// output's spatial size.
    pub fn flops(&self, input: [usize; 3]) -> (f64, [usize; 3]) {
        match self {
            Upsampler::Transposed(c) => c.flops(input),
            Upsampler::Trilinear(c) => c.flops(input.map(|n| 2 * n)),
        }
    }
}
