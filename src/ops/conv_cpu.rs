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
pub struct ConvSpec {
    /// Stride on every axis.
    pub stride: usize,
    /// Zero padding on each side of every axis.
    pub padding: usize,
    /// Transposed only: extra output samples at the end of every axis.
    pub output_padding: usize,
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
    let shape = burn::backend::TensorMetadata::shape(&t).to_vec();
    (t, shape)
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn tensor(values: Vec<f32>, shape: [usize; 5]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The geometry of the convolution `x` → `weight` (`[c_out, c_in, k, k, k]`).
fn geometry(x: &[usize], weight: &[usize], stride: usize, padding: usize) -> Geometry {
    Geometry { c_in: weight[1], c_out: weight[0], k: weight[2], stride, padding, input: [x[2], x[3], x[4]] }
}

/// The geometry of the convolution that `conv_transpose3d(x, weight)` reverses: from the
/// transposed output (`c_out` channels, its size) to `x`'s grid.
fn transposed_geometry(x: &[usize], weight: &[usize], spec: ConvSpec) -> Geometry {
    let k = weight[2];
    let input = [x[2], x[3], x[4]].map(|n| (n - 1) * spec.stride + k + spec.output_padding - 2 * spec.padding);
    let g = Geometry { c_in: weight[1], c_out: weight[0], k, stride: spec.stride, padding: spec.padding, input };
    debug_assert_eq!(g.output(), [x[2], x[3], x[4]]);
    g
}

/// Run `f` on every batch item (`item_len` values each) and stack the results as `shape`.
fn per_item(batch: usize, shape: [usize; 5], mut f: impl FnMut(usize) -> Vec<f32>) -> FlexTensor {
    if batch == 1 {
        return tensor(f(0), shape);
    }
    let mut out = Vec::with_capacity(shape.iter().product());
    for b in 0..batch {
        out.extend(f(b));
    }
    tensor(out, shape)
}

fn conv3d_flex(x: FlexTensor, weight: FlexTensor, spec: ConvSpec) -> FlexTensor {
    let ((x, xs), (w, ws)) = (host(&x), host(&weight));
    let g = geometry(&xs, &ws, spec.stride, spec.padding);
    let [ox, oy, oz] = g.output();
    let item = xs[1..].iter().product::<usize>();
    per_item(xs[0], [xs[0], g.c_out, ox, oy, oz], |b| conv_gemm::forward(&g, &values(&x)[b * item..][..item], values(&w)))
}

fn conv_transpose3d_flex(x: FlexTensor, weight: FlexTensor, spec: ConvSpec) -> FlexTensor {
    let ((x, xs), (w, ws)) = (host(&x), host(&weight));
    let g = transposed_geometry(&xs, &ws, spec);
    let item = xs[1..].iter().product::<usize>();
    per_item(xs[0], [xs[0], g.c_in, g.input[0], g.input[1], g.input[2]], |b| conv_gemm::input_grad(&g, &values(&x)[b * item..][..item], values(&w)))
}

/// Gradients of a convolution `x` → `y` of geometry `g` from `dy`: (dx, dw), each only when asked.
fn conv_grads(g: &Geometry, x: &FlexTensor, w: &FlexTensor, dy: &FlexTensor, want: [bool; 2]) -> (Option<FlexTensor>, Option<FlexTensor>) {
    let ((x, xs), (w, ws), (dy, dys)) = (host(x), host(w), host(dy));
    let (x_item, dy_item) = (xs[1..].iter().product::<usize>(), dys[1..].iter().product::<usize>());
    let dx = want[0].then(|| per_item(xs[0], [xs[0], xs[1], xs[2], xs[3], xs[4]], |b| conv_gemm::input_grad(g, &values(&dy)[b * dy_item..][..dy_item], values(&w))));
    let dw = want[1].then(|| {
        let mut sum = vec![0f32; ws.iter().product()];
        for b in 0..xs[0] {
            let item = conv_gemm::weight_grad(g, &values(&x)[b * x_item..][..x_item], &values(&dy)[b * dy_item..][..dy_item]);
            sum.iter_mut().zip(item).for_each(|(s, v)| *s += v);
        }
        tensor(sum, [ws[0], ws[1], ws[2], ws[3], ws[4]])
    });
    (dx, dw)
}

impl CpuConv for Flex {
    fn conv3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize) -> FloatTensor<Self> {
        conv3d_flex(x, weight, ConvSpec { stride, padding, output_padding: 0 })
    }

    fn conv_transpose3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, output_padding: usize) -> FloatTensor<Self> {
        conv_transpose3d_flex(x, weight, ConvSpec { stride, padding, output_padding })
    }
}

/// The backward pass of [`CpuConv::conv3d_gemm`]; the state is (x, weight, spec).
#[derive(Debug)]
struct Conv3dBackward;

impl Backward<Flex, 2> for Conv3dBackward {
    type State = (FlexTensor, FlexTensor, ConvSpec);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w, spec) = ops.state;
        let (xs, ws) = (burn::backend::TensorMetadata::shape(&x).to_vec(), burn::backend::TensorMetadata::shape(&w).to_vec());
        let g = geometry(&xs, &ws, spec.stride, spec.padding);
        let (dx, dw) = conv_grads(&g, &x, &w, &dy, [node_x.is_some(), node_w.is_some()]);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, dw);
        }
    }
}

/// The backward pass of [`CpuConv::conv_transpose3d_gemm`]: the transposed convolution of x
/// is the input gradient of the convolution `g` from its output grid to x's, so
/// dx = forward(dy) and dw = weight_grad(dy, x).
#[derive(Debug)]
struct ConvTranspose3dBackward;

impl Backward<Flex, 2> for ConvTranspose3dBackward {
    type State = (FlexTensor, FlexTensor, ConvSpec);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w, spec) = ops.state;
        let (xs, ws) = (burn::backend::TensorMetadata::shape(&x).to_vec(), burn::backend::TensorMetadata::shape(&w).to_vec());
        let g = transposed_geometry(&xs, &ws, spec);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, conv3d_flex(dy.clone(), w.clone(), spec));
        }
        if let Some(node) = node_w {
            let ((x, _), (dy, dys)) = (host(&x), host(&dy));
            let (x_item, dy_item) = (xs[1..].iter().product::<usize>(), dys[1..].iter().product::<usize>());
            let mut sum = vec![0f32; ws.iter().product()];
            for b in 0..xs[0] {
                let item = conv_gemm::weight_grad(&g, &values(&dy)[b * dy_item..][..dy_item], &values(&x)[b * x_item..][..x_item]);
                sum.iter_mut().zip(item).for_each(|(s, v)| *s += v);
            }
            grads.register::<Flex>(node.id, tensor(sum, [ws[0], ws[1], ws[2], ws[3], ws[4]]));
        }
    }
}

impl<C: CheckpointStrategy> CpuConv for Autodiff<Flex, C> {
    fn conv3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize) -> FloatTensor<Self> {
        let spec = ConvSpec { stride, padding, output_padding: 0 };
        match Conv3dBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, w) = (x.primitive().clone(), weight.primitive().clone());
                let out = conv3d_flex(x.clone(), w.clone(), spec);
                prep.finish((x, w, spec), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(conv3d_flex(x.into_primitive(), weight.into_primitive(), spec)),
        }
    }

    fn conv_transpose3d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, output_padding: usize) -> FloatTensor<Self> {
        let spec = ConvSpec { stride, padding, output_padding };
        match ConvTranspose3dBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, w) = (x.primitive().clone(), weight.primitive().clone());
                let out = conv_transpose3d_flex(x.clone(), w.clone(), spec);
                prep.finish((x, w, spec), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(conv_transpose3d_flex(x.into_primitive(), weight.into_primitive(), spec)),
        }
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
