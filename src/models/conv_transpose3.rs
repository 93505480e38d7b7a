//! A cubic 3-D transposed convolution (up-sampling), PyTorch's `ConvTranspose3d`, built from
//! the same named settings as a convolution ([`Conv3Config::init_transposed`](super::conv3::Conv3Config::init_transposed)).

use crate::ops::conv_cpu;
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::module::conv_transpose3d;
use burn::tensor::ops::ConvTransposeOptions;

/// A cubic 3-D transposed convolution (up-sampling), PyTorch's `ConvTranspose3d`.
#[derive(Module, Debug)]
pub struct ConvTranspose3 {
    /// Kernel, `[in, out, k, k, k]` (PyTorch layout).
    pub weight: Param<Tensor<5>>,
    /// Optional bias, `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride on each axis.
    #[module(skip)]
    pub stride: usize,
    /// Padding removed from each side of each axis.
    #[module(skip)]
    pub padding: usize,
    /// Extra samples added at the end of each axis.
    #[module(skip)]
    pub output_padding: usize,
}

impl ConvTranspose3 {
    /// Apply the transposed convolution.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        if conv_cpu::applies(&x) {
            let y = conv_cpu::conv_transpose3d(x, self.weight.val(), self.stride, self.padding, self.output_padding);
            return match &self.bias {
                Some(b) => y + b.val().reshape([1, self.weight.dims()[1], 1, 1, 1]),
                None => y,
            };
        }
        let opts = ConvTransposeOptions::new([self.stride; 3], [self.padding; 3], [self.output_padding; 3], [1; 3], 1);
        conv_transpose3d(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()), opts)
    }

    /// Floating-point operations for an input of spatial size `input`, batch 1, with the
    /// output's spatial size.
    pub fn flops(&self, input: [usize; 3]) -> (f64, [usize; 3]) {
        let [c_in, c_out, k, _, _] = self.weight.dims();
        let out = input.map(|n| (n - 1) * self.stride + k + self.output_padding - 2 * self.padding);
        let voxels: usize = input.iter().product();
        (2.0 * (c_in * c_out * k * k * k) as f64 * voxels as f64, out)
    }
}

