//! Convolution, normalization, ReLU: the stage both generators are built from.

use super::init::Initializer;
use super::layers::Conv3;
use super::norm::{Norm, NormKind, NormMode};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

/// Convolution, normalization, ReLU.
#[derive(Module, Debug)]
pub struct ConvNormRelu {
    /// The convolution.
    pub conv: Conv3,
    /// The normalization after it.
    pub norm: Norm,
}

impl ConvNormRelu {
    /// A `k³` convolution `c_in → c_out` (bias only when the norm has none), then `norm`.
    pub fn new(init: &mut Initializer, c_in: usize, c_out: usize, k: usize, stride: usize, padding: usize, norm: NormKind) -> Self {
        let conv = Conv3::new(init, c_in, c_out, k, stride, padding, norm.conv_bias());
        Self { conv, norm: Norm::new(init, norm, c_out, true) }
    }

    /// `relu(norm(conv(x)))`.
    pub fn forward(&self, x: Tensor<5>, mode: NormMode) -> Tensor<5> {
        relu(self.norm.forward(self.conv.forward(x), mode))
    }
}
