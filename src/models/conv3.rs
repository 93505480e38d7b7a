//! A cubic 3-D convolution whose parameters are named like PyTorch's (`weight`, `bias`),
//! built from named settings ([`Conv3Config`]) and initialized by the seeded
//! [`Initializer`](super::init::Initializer).

use super::conv_transpose3::ConvTranspose3;
use super::init::{INIT_GAIN, Initializer};
use crate::ops::direct_conv::conv3d_direct;
use burn::module::{Module, Param};
use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Tensor, TensorData};

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

    /// Apply the convolution.
    ///
    /// A stride-1 convolution to a single channel (the generator's 7³ head) runs as the
    /// equivalent transposed convolution of the spatially flipped kernel: the same values,
    /// but Burn's CPU backend then builds the weight gradient in one pass instead of one per
    /// input channel (measured at 32×32×40, 8→1, 7³: forward 0.05 → 0.012 s, backward
    /// 0.31 → 0.11 s).
    ///
    /// On Burn's CPU device without gradients, a stride-1 convolution from or to a single
    /// channel (the generator's 7³ stem and head) runs as [`conv3d_direct`] instead, several
    /// times faster there than Burn's im2col + GEMM (BENCHMARKS.md).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [c_out, c_in, k, _, _] = self.weight.dims();
        if self.stride == 1 && k > 1 && (c_in == 1 || c_out == 1) && on_cpu_without_gradients(&x) {
            return self.forward_direct(x);
        }
        let bias = self.bias.as_ref().map(|b| b.val());
        if self.stride == 1 && c_out == 1 && k > 1 && self.padding < k {
            let kernel = self.weight.val().swap_dims(0, 1).flip([2, 3, 4]);
            let opts = ConvTransposeOptions::new([1; 3], [k - 1 - self.padding; 3], [0; 3], [1; 3], 1);
            return conv_transpose3d(x, kernel, bias, opts);
        }
        let opts = ConvOptions::new([self.stride; 3], [self.padding; 3], [1; 3], 1);
        conv3d(x, self.weight.val(), bias, opts)
    }

    /// [`Conv3::forward`] through [`conv3d_direct`], one batch item at a time.
    fn forward_direct(&self, x: Tensor<5>) -> Tensor<5> {
        let [batch, c_in, nx, ny, nz] = x.dims();
        let [c_out, _, k, _, _] = self.weight.dims();
        let device = x.device();
        let host = |t: TensorData| t.convert::<f32>().try_into_vec::<f32>().expect("float tensor");
        let weight = host(self.weight.val().into_data());
        let bias = self.bias.as_ref().map(|b| host(b.val().into_data()));
        let input = host(x.into_data());
        let out_size = [nx, ny, nz].map(|n| n + 2 * self.padding + 1 - k);
        let out: Vec<f32> = input
            .chunks(c_in * nx * ny * nz)
            .flat_map(|item| conv3d_direct(item, [c_in, nx, ny, nz], &weight, [c_out, k], self.padding, bias.as_deref()))
            .collect();
        Tensor::from_data(TensorData::new(out, [batch, c_out, out_size[0], out_size[1], out_size[2]]), &device)
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

/// True when `x` lives on Burn's CPU (flex) device and records no gradients.
fn on_cpu_without_gradients(x: &Tensor<5>) -> bool {
    let device = x.device();
    !device.is_autodiff() && device == Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn cpu_inference_path_matches_the_training_path() {
        // The same stem-like and head-like layers on flex (direct convolution, batch 2) and on
        // flex with autodiff (Burn's convolution).
        for (c_in, c_out, k, padding) in [(1, 8, 7, 3), (8, 1, 7, 3), (1, 3, 3, 0)] {
            let layer = |device: &Device| {
                let mut init = Initializer::new(5, device);
                let mut conv = Conv3Config::new(c_in, c_out, k).with_padding(padding).init(&mut init);
                conv.bias = Some(init.normal([c_out], 0.0, 1.0));
                conv
            };
            let (train_device, infer_device) = (Device::flex().autodiff(), Device::flex());
            let x: Tensor<5> = Tensor::random([2, c_in, 9, 8, 11], Distribution::Normal(0.0, 1.0), &infer_device);
            let x_train = Tensor::from_data(x.to_data(), &train_device);
            assert!(on_cpu_without_gradients(&x) && !on_cpu_without_gradients(&x_train));
            let reference = layer(&train_device).forward(x_train).into_data().try_to_vec::<f32>().unwrap();
            let fast = layer(&infer_device).forward(x).into_data().try_to_vec::<f32>().unwrap();
            let worst = fast.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert_eq!(fast.len(), reference.len());
            assert!(worst < 1e-4, "{c_in}->{c_out}: {worst}");
        }
    }

    /// The single-output-channel path equals a direct `conv3d`, values and gradients.
    #[test]
    fn single_output_head_matches_direct_convolution() {
        let device = Device::flex().autodiff();
        for (k, padding) in [(7, 3), (5, 0), (3, 2)] {
            let mut init = Initializer::new(3, &device);
            let mut conv = Conv3Config::new(4, 1, k).with_padding(padding).init(&mut init);
            conv.bias = Some(init.normal([1], 0.0, 1.0));
            let x: Tensor<5> = Tensor::random([2, 4, 9, 8, 10], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let direct = conv3d(
                x.clone(),
                conv.weight.val(),
                conv.bias.as_ref().map(|b| b.val()),
                ConvOptions::new([1; 3], [padding; 3], [1; 3], 1),
            );
            let ours = conv.forward(x.clone());
            assert_eq!(ours.dims(), direct.dims());
            let close = |a: Tensor<5>, b: Tensor<5>, what: &str| {
                let err = (a.clone() - b.clone()).abs().max().into_scalar::<f32>();
                let scale = b.abs().max().into_scalar::<f32>();
                assert!(err <= 1e-4 * scale.max(1.0), "k {k} padding {padding}: {what} differs by {err}");
            };
            close(ours.clone(), direct.clone(), "output");
            let grads = |t: Tensor<5>| {
                let g = (t.clone() * t).sum().backward();
                (conv.weight.grad(&g).unwrap(), x.grad(&g).unwrap())
            };
            let (gw_ours, gx_ours) = grads(ours);
            let (gw_direct, gx_direct) = grads(direct);
            close(Tensor::from_inner(gw_ours), Tensor::from_inner(gw_direct), "weight gradient");
            close(Tensor::from_inner(gx_ours), Tensor::from_inner(gx_direct), "input gradient");
        }
    }
}
