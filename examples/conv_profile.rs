//! Per-layer timing of the ResNet generator's convolutions on the CPU (or the U-Net
//! generator's): forward, input gradient and weight gradient of each distinct layer shape, to
//! find where a training step's time goes (`scripts/conv_profile.py` times the ResNet's layers
//! in PyTorch).
//!
//! `cargo run --release --example conv_profile -- 64,64,64 32 3 [ours|burn] [unet:LEVELS]`
//! (size, ngf, repeats; `burn` times Burn's own convolutions instead of
//! `cta2mbf::ops::conv_cpu`; `unet:4` the demo's U-Net layers, `CTA2MBF_SIMD` the kernels'
//! instruction set). Each time is the fastest of the repeats.

use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use cta2mbf::ops::conv_cpu;
use burn::tensor::{Device, Distribution, Tensor};

/// One layer: kind, channels, kernel, stride, padding, input size.
struct Layer {
    transposed: bool,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
    /// Transposed only: extra output samples at the end of every axis.
    output_padding: usize,
    input: [usize; 3],
    count: usize,
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, padding: usize, input: [usize; 3], count: usize) -> Layer {
    Layer { transposed: false, c_in, c_out, k, stride, padding, output_padding: 0, input, count }
}

/// The U-Net generator's layers (docs/design.md §4): two 3³ stages a level (stride 2 from the
/// second level on), a 2³ stride-2 transposed convolution up, two stages on the concatenation,
/// a 1³ head.
fn unet_layers(size: [usize; 3], ngf: usize, levels: usize) -> Vec<Layer> {
    let channels: Vec<usize> = (0..levels).map(|i| ngf << i).collect();
    let sizes: Vec<[usize; 3]> = (0..levels).map(|i| size.map(|n| n >> i)).collect();
    let mut v = vec![conv(1, ngf, 3, 1, 1, size, 1), conv(ngf, ngf, 3, 1, 1, size, 1)];
    for i in 1..levels {
        v.push(conv(channels[i - 1], channels[i], 3, 2, 1, sizes[i - 1], 1));
        v.push(conv(channels[i], channels[i], 3, 1, 1, sizes[i], 1));
    }
    for i in (0..levels - 1).rev() {
        v.push(Layer { transposed: true, c_in: channels[i + 1], c_out: channels[i], k: 2, stride: 2, padding: 0, output_padding: 0, input: sizes[i + 1], count: 1 });
        v.push(conv(2 * channels[i], channels[i], 3, 1, 1, sizes[i], 1));
        v.push(conv(channels[i], channels[i], 3, 1, 1, sizes[i], 1));
    }
    v.push(conv(ngf, 1, 1, 1, 0, size, 1));
    v
}

fn layers(size: [usize; 3], ngf: usize, blocks: usize) -> Vec<Layer> {
    let mut v = vec![conv(1, ngf, 7, 1, 3, size, 1)];
    let mut s = size;
    let mut c = ngf;
    for _ in 0..3 {
        v.push(conv(c, 2 * c, 3, 2, 1, s, 1));
        s = s.map(|n| n / 2);
        c *= 2;
    }
    v.push(conv(c, c / 2, 1, 1, 0, s, blocks));
    v.push(conv(c / 2, c / 2, 3, 1, 1, s, blocks));
    v.push(conv(c / 2, c, 1, 1, 0, s, blocks));
    for _ in 0..3 {
        v.push(Layer { transposed: true, c_in: c, c_out: c / 2, k: 3, stride: 2, padding: 1, output_padding: 1, input: s, count: 1 });
        s = s.map(|n| n * 2);
        c /= 2;
    }
    v.push(conv(ngf, 1, 7, 1, 3, s, 1));
    v
}

/// The fastest of `repeats` timed calls of `f` after one untimed call (seconds): on a shared
/// machine the minimum is what the code costs, the mean what the neighbours cost too.
fn fastest(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..repeats.max(1))
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn run(l: &Layer, x: Tensor<5>, w: Tensor<5>, ours: bool) -> Tensor<5> {
    if ours {
        return if l.transposed { conv_cpu::conv_transpose3d(x, w, l.stride, l.padding, l.output_padding) } else { conv_cpu::conv3d(x, w, l.stride, l.padding) };
    }
    if l.transposed {
        conv_transpose3d(x, w, None, ConvTransposeOptions::new([l.stride; 3], [l.padding; 3], [l.output_padding; 3], [1; 3], 1))
    } else {
        conv3d(x, w, None, ConvOptions::new([l.stride; 3], [l.padding; 3], [1; 3], 1))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: Vec<usize> = args.get(1).map_or("64,64,64", |s| s).split(',').map(|v| v.parse().unwrap()).collect();
    let ngf: usize = args.get(2).map_or(32, |s| s.parse().unwrap());
    let repeats: usize = args.get(3).map_or(3, |s| s.parse().unwrap());
    let ours = args.get(4).map_or(true, |s| s != "burn");
    let unet_levels: Option<usize> = args.get(5).and_then(|s| s.strip_prefix("unet:")).map(|l| l.parse().unwrap());
    let ad = Device::flex().autodiff();
    let (mut total_f, mut total_x, mut total_w) = (0.0, 0.0, 0.0);
    println!("{:<34} {:>9} {:>9} {:>9}", "layer", "fwd s", "dx s", "dw s");
    let size = [size[0], size[1], size[2]];
    let all = match unet_levels {
        Some(levels) => unet_layers(size, ngf, levels),
        None => layers(size, ngf, 6),
    };
    for l in all {
        let [a, b, c] = l.input;
        let wshape = if l.transposed { [l.c_in, l.c_out, l.k, l.k, l.k] } else { [l.c_out, l.c_in, l.k, l.k, l.k] };
        let x: Tensor<5> = Tensor::random([1, l.c_in, a, b, c], Distribution::Normal(0.0, 1.0), &ad);
        let w: Tensor<5> = Tensor::random(wshape, Distribution::Normal(0.0, 0.1), &ad);
        let fwd = fastest(repeats, || {
            let _ = run(&l, x.clone(), w.clone(), ours).sum().into_data();
        });
        let with_x = fastest(repeats, || {
            let xg = x.clone().require_grad();
            let g = run(&l, xg.clone(), w.clone(), ours).sum().backward();
            let _ = xg.grad(&g).unwrap().sum().into_data();
        });
        let with_w = fastest(repeats, || {
            let wg = w.clone().require_grad();
            let g = run(&l, x.clone(), wg.clone(), ours).sum().backward();
            let _ = wg.grad(&g).unwrap().sum().into_data();
        });
        let (dx, dw) = ((with_x - fwd).max(0.0), (with_w - fwd).max(0.0));
        let name = format!("{}{} {}->{} k{} s{} @{}x{}x{}", if l.transposed { "T" } else { "" }, l.count, l.c_in, l.c_out, l.k, l.stride, a, b, c);
        println!("{name:<34} {fwd:>9.4} {dx:>9.4} {dw:>9.4}");
        let n = l.count as f64;
        total_f += n * fwd;
        total_x += n * dx;
        total_w += n * dw;
    }
    println!("{:<34} {total_f:>9.4} {total_x:>9.4} {total_w:>9.4}", "total (× count)");
}
