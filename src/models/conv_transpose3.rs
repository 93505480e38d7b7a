//! A cubic 3-D transposed convolution (up-sampling), PyTorch's `ConvTranspose3d`, built from
//! named settings ([`ConvTranspose3Config`]).

use super::conv3::WeightInit;
use super::init::{INIT_GAIN, Initializer};
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

/// The settings of a [`ConvTranspose3`], by name: channels and kernel, then stride (1),
/// padding (0), output padding (0), bias (on) and weight initialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose3Config {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel size on every axis.
    pub kernel: usize,
    /// Stride on every axis.
    pub stride: usize,
    /// Padding removed from each side of every axis.
    pub padding: usize,
    /// Extra samples added at the end of every axis.
    pub output_padding: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
    /// How the weights are drawn ([`WeightInit::He`]: N(0, 2 / c_in), right when the stride
    /// equals the kernel and each output sums one tap per input channel).
    pub init: WeightInit,
}

impl ConvTranspose3Config {
    /// A `kernel³` transposed convolution `c_in → c_out`, stride 1, no padding, with a bias.
    pub fn new(c_in: usize, c_out: usize, kernel: usize) -> Self {
        Self { c_in, c_out, kernel, stride: 1, padding: 0, output_padding: 0, bias: true, init: WeightInit::Gan }
    }

    /// With this stride.
    pub fn with_stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    /// With this padding.
    pub fn with_padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    /// With this output padding.
    pub fn with_output_padding(self, output_padding: usize) -> Self {
        Self { output_padding, ..self }
    }

    /// With or without a bias.
    pub fn with_bias(self, bias: bool) -> Self {
        Self { bias, ..self }
    }

    /// With this weight initialization.
    pub fn with_init(self, init: WeightInit) -> Self {
        Self { init, ..self }
    }

    /// The layer, its weights drawn from `init` (then a zero bias).
    pub fn init(&self, init: &mut Initializer) -> ConvTranspose3 {
        let k = self.kernel;
        let std = match self.init {
            WeightInit::Gan => INIT_GAIN,
            WeightInit::He => (2.0 / self.c_in as f64).sqrt(),
        };
        ConvTranspose3 {
            weight: init.normal([self.c_in, self.c_out, k, k, k], 0.0, std),
            bias: self.bias.then(|| init.constant([self.c_out], 0.0)),
            stride: self.stride,
            padding: self.padding,
            output_padding: self.output_padding,
        }
    }
}

impl ConvTranspose3 {
    /// Apply the transposed convolution.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
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

