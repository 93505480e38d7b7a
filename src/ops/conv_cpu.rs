//! 3-D convolutions on Burn's CPU device (`flex`, with or without autodiff) through the
//! kernels of [`super::conv_gemm`], with their own backward passes.
//!
//! Burn's CPU backend computes a convolution's weight gradient as a convolution whose kernel
//! is the output gradient, through a scalar im2col of that huge kernel; for the generator's
//! 7³ single-channel stem it took 8× the layer's forward time. Here every product is an
//! im2col + GEMM over bounded tiles (or a direct convolution for one channel), registered as
//! a Burn backend extension with a hand-written [`Backward`] for `Autodiff<Flex>`.

use super::conv_gemm::{self, Geometry};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Device, Tensor, TensorData};

/// A cubic convolution's hyper-parameters (the geometry without its sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConvSpec {
    /// Stride on every axis.
    stride: usize,
    /// Zero padding on each side of every axis.
    padding: usize,
    /// Transposed only: extra output samples at the end of every axis.
    output_padding: usize,
    /// A transposed convolution: the input gradient of the convolution it reverses.
    transposed: bool,
}

/// The CPU convolutions as a Burn backend extension (implemented for `Flex` and
/// `Autodiff<Flex>`).
#[backend_extension(Autodiff, Flex)]
pub trait CpuConv: Backend {
    /// `conv3d(x, weight)`, no bias: `x` `[b, c_in, X, Y, Z]`, `weight` `[c_out, c_in, k, k, k]`.
    fn conv3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize) -> FloatTensor<Self>;
    /// `conv_transpose3d(x, weight)`, no bias: `weight` `[c_in, c_out, k, k, k]`.
    fn conv_transpose3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, output_padding: usize) -> FloatTensor<Self>;
}

/// The f32 values of a flex tensor, contiguous, with its shape.
fn host(t: &FlexTensor) -> (FlexTensor, Vec<usize>) {
    let t = if t.is_contiguous() && t.as_slice::<f32>().is_some() { t.clone() } else { t.to_contiguous() };
    let dims = shape(&t);
    (t, dims)
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn tensor(values: Vec<f32>, shape: [usize; 5]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The convolution a layer computes or (transposed) reverses, for input `x` and `weight`
/// (`[c_out, c_in, k, k, k]` of that convolution in both cases): a transposed convolution runs
/// from that convolution's output grid (x's) back to its input grid.
fn geometry(x: &[usize], weight: &[usize], spec: ConvSpec) -> Geometry {
    let k = weight[2];
    let x_size = [x[2], x[3], x[4]];
    let input = if spec.transposed { x_size.map(|n| (n - 1) * spec.stride + k + spec.output_padding - 2 * spec.padding) } else { x_size };
    let g = Geometry { c_in: weight[1], c_out: weight[0], k, stride: spec.stride, padding: spec.padding, input };
    debug_assert!(!spec.transposed || g.output() == x_size);
    g
}

/// `f(values of item b)` for every batch item of `t`, stacked as `shape`.
fn per_item(t: &FlexTensor, shape: [usize; 5], f: impl Fn(&[f32]) -> Vec<f32>) -> FlexTensor {
    let (t, ts) = host(t);
    let item = ts[1..].iter().product::<usize>();
    let items = values(&t).chunks(item.max(1));
    let out = if ts[0] == 1 { f(values(&t)) } else { items.flat_map(f).collect() };
    tensor(out, shape)
}

/// The convolution `g` of every batch item of `x` (`[b, c_in, …]`).
fn forward(g: &Geometry, x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let (w, _) = host(w);
    let [ox, oy, oz] = g.output();
    per_item(x, [batch(x), g.c_out, ox, oy, oz], |item| conv_gemm::forward(g, item, values(&w)))
}

/// The input gradient of `g` (its transposed convolution) of every batch item of `dy`.
fn input_grad(g: &Geometry, dy: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let (w, _) = host(w);
    let [nx, ny, nz] = g.input;
    per_item(dy, [batch(dy), g.c_in, nx, ny, nz], |item| conv_gemm::input_grad(g, item, values(&w)))
}

/// The weight gradient of `g` summed over the batch: `input` on its input grid, `dout` on its
/// output grid.
fn weight_grad(g: &Geometry, input: &FlexTensor, dout: &FlexTensor) -> FlexTensor {
    let ((input, is), (dout, ds)) = (host(input), host(dout));
    let (i_item, d_item) = (is[1..].iter().product::<usize>(), ds[1..].iter().product::<usize>());
    let mut sum = vec![0f32; g.c_out * g.c_in * g.k * g.k * g.k];
    for b in 0..is[0] {
        let item = conv_gemm::weight_grad(g, &values(&input)[b * i_item..][..i_item], &values(&dout)[b * d_item..][..d_item]);
        sum.iter_mut().zip(item).for_each(|(s, v)| *s += v);
    }
    tensor(sum, [g.c_out, g.c_in, g.k, g.k, g.k])
}

fn batch(t: &FlexTensor) -> usize {
    burn::backend::TensorMetadata::shape(t)[0]
}

fn shape(t: &FlexTensor) -> Vec<usize> {
    burn::backend::TensorMetadata::shape(t).to_vec()
}

/// The layer's output: the convolution, or (transposed) the input gradient of the reversed one.
fn layer(x: &FlexTensor, w: &FlexTensor, spec: ConvSpec) -> FlexTensor {
    let g = geometry(&shape(x), &shape(w), spec);
    if spec.transposed { input_grad(&g, x, w) } else { forward(&g, x, w) }
}

impl CpuConv for Flex {
    fn conv3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize) -> FloatTensor<Self> {
        layer(&x, &weight, ConvSpec { stride, padding, output_padding: 0, transposed: false })
    }

    fn conv_transpose3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, output_padding: usize) -> FloatTensor<Self> {
        layer(&x, &weight, ConvSpec { stride, padding, output_padding, transposed: true })
    }
}

/// The backward pass of both layers; the state is (x, weight, spec). For a convolution `g`,
/// dx = input_grad(dy) and dw = weight_grad(x, dy); a transposed convolution is `g`'s input
/// gradient, so dx = forward(dy) and dw = weight_grad(dy, x).
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (FlexTensor, FlexTensor, ConvSpec);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w, spec) = ops.state;
        let g = geometry(&shape(&x), &shape(&w), spec);
        if let Some(node) = node_x {
            let dx = if spec.transposed { forward(&g, &dy, &w) } else { input_grad(&g, &dy, &w) };
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_w {
            let dw = if spec.transposed { weight_grad(&g, &dy, &x) } else { weight_grad(&g, &x, &dy) };
            grads.register::<Flex>(node.id, dw);
        }
    }
}

/// The layer on `Autodiff<Flex>`, recording [`ConvBackward`] when a gradient is wanted.
fn tracked_layer<C: CheckpointStrategy>(x: FloatTensor<Autodiff<Flex, C>>, weight: FloatTensor<Autodiff<Flex, C>>, spec: ConvSpec) -> FloatTensor<Autodiff<Flex, C>> {
    match ConvBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (x, w) = (x.primitive().clone(), weight.primitive().clone());
            let out = layer(&x, &w, spec);
            prep.finish((x, w, spec), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(layer(x.primitive(), weight.primitive(), spec)),
    }
}

impl<C: CheckpointStrategy> CpuConv for Autodiff<Flex, C> {
    fn conv3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize) -> FloatTensor<Self> {
        tracked_layer::<C>(x, weight, ConvSpec { stride, padding, output_padding: 0, transposed: false })
    }

    fn conv_transpose3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, output_padding: usize) -> FloatTensor<Self> {
        tracked_layer::<C>(x, weight, ConvSpec { stride, padding, output_padding, transposed: true })
    }
}

/// Whether `x` lives on Burn's CPU device (with or without autodiff) as f32, where
/// [`conv3d`] and [`conv_transpose3d`] apply.
pub fn applies(x: &Tensor<5>) -> bool {
    let device = x.device();
    x.dtype() == DType::F32 && (device == Device::flex() || device == Device::flex().autodiff())
}

/// A cubic 3-D convolution without bias on the CPU device (see [`applies`]).
pub fn conv3d(x: Tensor<5>, weight: Tensor<5>, stride: usize, padding: usize) -> Tensor<5> {
    Tensor::from_dispatch(<Dispatch as CpuConv>::conv3d_gemm(x.into_dispatch(), weight.into_dispatch(), stride, padding))
}

/// A cubic 3-D transposed convolution without bias on the CPU device (see [`applies`]).
pub fn conv_transpose3d(x: Tensor<5>, weight: Tensor<5>, stride: usize, padding: usize, output_padding: usize) -> Tensor<5> {
    Tensor::from_dispatch(<Dispatch as CpuConv>::conv_transpose3d_gemm(x.into_dispatch(), weight.into_dispatch(), stride, padding, output_padding))
}
