//! A cubic 3-D convolution whose parameters are named like PyTorch's (`weight`, `bias`),
//! built from named settings ([`Conv3Config`]) and initialized by the seeded
//! [`Initializer`](super::init::Initializer).

use super::conv_transpose3::ConvTranspose3;
use super::init::{INIT_GAIN, Initializer};
use crate::ops::conv_cpu;
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;

/// A cubic 3-D convolution: kernel `k³`, equal stride and zero padding on every axis.
#[derive(Module, Debug)]
pub struct Conv3 {
    /// Kernel, `[out, in, k, k, k]` (PyTorch layout).
    pub weight: Param<Tensor<5>>,
    /// Optional bias, `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride on each axis.
    #[module(skip)]
    pub stride: usize,
    /// Zero padding on each side of each axis.
    #[module(skip)]
    pub padding: usize,
}

/// How a [`Conv3`]'s weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightInit {
    /// N(0, 0.02), pix2pix's `init_type normal` (the generators and discriminators).
    #[default]
    Gan,
    /// He-normal, N(0, 2 / fan_in): keeps activations of (leaky) ReLU networks from shrinking
    /// layer by layer (the U-Nets).
    He,
}

/// The settings of a [`Conv3`] or a [`ConvTranspose3`], by name: channels and kernel, then
/// stride (1), padding (0), output padding (0, transposed only), bias (on) and weight
/// initialization ([`WeightInit::Gan`]), as Burn's `Conv3dConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3Config {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel size on every axis.
    pub kernel: usize,
    /// Stride on every axis.
    pub stride: usize,
    /// Zero padding on each side of every axis (transposed: removed from each side).
    pub padding: usize,
    /// Transposed only: extra samples added at the end of every axis.
    pub output_padding: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
    /// How the weights are drawn.
    pub init: WeightInit,
}

impl Conv3Config {
    /// A `kernel³` convolution `c_in → c_out`, stride 1, no padding, with a bias.
    pub fn new(c_in: usize, c_out: usize, kernel: usize) -> Self {
        Self { c_in, c_out, kernel, stride: 1, padding: 0, output_padding: 0, bias: true, init: WeightInit::Gan }
    }

    /// With this output padding (transposed only).
    pub fn with_output_padding(self, output_padding: usize) -> Self {
        Self { output_padding, ..self }
    }

    /// With this stride.
    pub fn with_stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    /// With this zero padding.
    pub fn with_padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    /// With ("same" size at stride 1) padding `kernel / 2`.
    pub fn with_same_padding(self) -> Self {
        Self { padding: self.kernel / 2, ..self }
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
    pub fn init(&self, init: &mut Initializer) -> Conv3 {
        let k = self.kernel;
        let std = match self.init {
            WeightInit::Gan => INIT_GAIN,
            WeightInit::He => (2.0 / (self.c_in * k * k * k) as f64).sqrt(),
        };
        Conv3 {
            weight: init.normal([self.c_out, self.c_in, k, k, k], 0.0, std),
            bias: self.bias.then(|| init.constant([self.c_out], 0.0)),
            stride: self.stride,
            padding: self.padding,
        }
    }

    /// The transposed convolution `c_in → c_out`, its weights (`[c_in, c_out, k, k, k]`)
    /// drawn from `init` (He: N(0, 2 / c_in), right when the stride equals the kernel and each
    /// output sums one tap per input channel), then a zero bias.
    pub fn init_transposed(&self, init: &mut Initializer) -> ConvTranspose3 {
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

impl Conv3 {
    /// Output channels.
    pub fn channels_out(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Apply the convolution: on Burn's CPU device through [`conv_cpu`] (im2col + GEMM tiles
    /// or a direct convolution for one channel, with its own backward pass), elsewhere
    /// through Burn's `conv3d`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let bias = self.bias.as_ref().map(|b| b.val());
        if conv_cpu::applies(&x) {
            let y = conv_cpu::conv3d(x, self.weight.val(), self.stride, self.padding);
            return match bias {
                Some(b) => y + b.reshape([1, self.channels_out(), 1, 1, 1]),
                None => y,
            };
        }
        let opts = ConvOptions::new([self.stride; 3], [self.padding; 3], [1; 3], 1);
        conv3d(x, self.weight.val(), bias, opts)
    }

    /// Floating-point operations (multiply and add counted separately) for an input of
    /// spatial size `input` and batch 1; returns them with the output's spatial size.
    pub fn flops(&self, input: [usize; 3]) -> (f64, [usize; 3]) {
        let [c_out, c_in, k, _, _] = self.weight.dims();
        let out = input.map(|n| (n + 2 * self.padding - k) / self.stride + 1);
        let voxels: usize = out.iter().product();
        (2.0 * (c_in * c_out * k * k * k) as f64 * voxels as f64, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 2e-5 * scale, "{what}: worst difference {worst} (scale {scale})");
    }

    /// The CPU path (flex, `ops::conv_cpu`) against Burn's own convolutions (ndarray backend):
    /// outputs and the gradients of input, weight and bias, for every kind of layer the
    /// networks use, batch 2.
    #[test]
    #[allow(deprecated)] // Device::ndarray: Burn's other CPU backend, the reference here
    fn cpu_path_matches_burns_convolutions_with_gradients() {
        let cases = [(1, 8, 7, 1, 3, false), (8, 1, 7, 1, 3, false), (3, 5, 3, 2, 1, false), (4, 6, 1, 1, 0, false), (5, 3, 3, 1, 1, false), (6, 3, 3, 2, 1, true)];
        for (c_in, c_out, k, stride, padding, transposed) in cases {
            let x = Tensor::<5>::random([2, c_in, 8, 7, 10], Distribution::Normal(0.0, 1.0), &Device::ndarray()).into_data();
            let results: Vec<[Vec<f32>; 4]> = [Device::flex().autodiff(), Device::ndarray().autodiff()]
                .iter()
                .map(|device| {
                    let mut init = Initializer::new(7, device);
                    let config = Conv3Config::new(c_in, c_out, k).with_stride(stride).with_padding(padding);
                    let input = Tensor::<5>::from_data(x.clone(), device).require_grad();
                    let host = |t: Tensor<5>| t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
                    let host1 = |t: Tensor<1>| t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
                    let (y, weight, bias) = if transposed {
                        let mut layer = config.with_output_padding(1).init_transposed(&mut init);
                        layer.bias = Some(init.normal([c_out], 0.0, 1.0));
                        (layer.forward(input.clone()), layer.weight.clone(), layer.bias.clone().unwrap())
                    } else {
                        let mut layer = config.init(&mut init);
                        layer.bias = Some(init.normal([c_out], 0.0, 1.0));
                        (layer.forward(input.clone()), layer.weight.clone(), layer.bias.clone().unwrap())
                    };
                    let grads = (y.clone() * y.clone()).sum().backward();
                    [
                        host(y),
                        host(Tensor::from_inner(input.grad(&grads).unwrap())),
                        host(Tensor::from_inner(weight.grad(&grads).unwrap())),
                        host1(Tensor::from_inner(bias.grad(&grads).unwrap())),
                    ]
                })
                .collect();
            for (i, what) in ["output", "input gradient", "weight gradient", "bias gradient"].iter().enumerate() {
                close(&results[0][i], &results[1][i], &format!("{c_in}->{c_out} k{k} s{stride} transposed {transposed}: {what}"));
            }
        }
    }
}
