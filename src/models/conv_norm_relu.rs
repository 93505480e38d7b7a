//! Convolution, normalization, ReLU: the stage both generators are built from.

use super::init::Initializer;
use super::conv3::{Conv3, Conv3Config};
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
    /// The convolution `conv` (its bias only when the norm has none), then `norm`.
    pub fn new(init: &mut Initializer, conv: Conv3Config, norm: NormKind) -> Self {
        let c_out = conv.c_out;
        let conv = conv.with_bias(norm.conv_bias()).init(init);
        Self { conv, norm: Norm::new(init, norm, c_out, true) }
    }

    /// `relu(norm(conv(x)))`.
    pub fn forward(&self, x: Tensor<5>, mode: NormMode) -> Tensor<5> {
        relu(self.norm.forward(self.conv.forward(x), mode))
    }
}
