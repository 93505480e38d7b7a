//! Per-layer timing of the ResNet generator's convolutions on the CPU: forward, input
//! gradient and weight gradient of each distinct layer shape, to find where a training step's
//! time goes (`scripts/conv_profile.py` times the same layers in PyTorch).
//!
//! `cargo run --release --example conv_profile -- 64,64,64 32 3 [burn]` (size, ngf, repeats;
//! `burn` times Burn's own convolutions instead of `cta2mbf::ops::conv_cpu`).

use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use cta2mbf::bench::time;
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
    input: [usize; 3],
    count: usize,
}

fn layers(size: [usize; 3], ngf: usize, blocks: usize) -> Vec<Layer> {
    let conv = |c_in, c_out, k, stride, padding, input, count| Layer { transposed: false, c_in, c_out, k, stride, padding, input, count };
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
        v.push(Layer { transposed: true, c_in: c, c_out: c / 2, k: 3, stride: 2, padding: 1, input: s, count: 1 });
        s = s.map(|n| n * 2);
        c /= 2;
    }
    v.push(conv(ngf, 1, 7, 1, 3, s, 1));
    v
}

fn run(l: &Layer, x: Tensor<5>, w: Tensor<5>, ours: bool) -> Tensor<5> {
    if ours {
        return if l.transposed { conv_cpu::conv_transpose3d(x, w, l.stride, l.padding, 1) } else { conv_cpu::conv3d(x, w, l.stride, l.padding) };
    }
    if l.transposed {
        conv_transpose3d(x, w, None, ConvTransposeOptions::new([l.stride; 3], [l.padding; 3], [1; 3], [1; 3], 1))
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
    let ad = Device::flex().autodiff();
    let (mut total_f, mut total_x, mut total_w) = (0.0, 0.0, 0.0);
    println!("{:<34} {:>9} {:>9} {:>9}", "layer", "fwd s", "dx s", "dw s");
    for l in layers([size[0], size[1], size[2]], ngf, 6) {
        let [a, b, c] = l.input;
        let wshape = if l.transposed { [l.c_in, l.c_out, l.k, l.k, l.k] } else { [l.c_out, l.c_in, l.k, l.k, l.k] };
        let x: Tensor<5> = Tensor::random([1, l.c_in, a, b, c], Distribution::Normal(0.0, 1.0), &ad);
        let w: Tensor<5> = Tensor::random(wshape, Distribution::Normal(0.0, 0.1), &ad);
        let fwd = time(repeats, || {
            let _ = run(&l, x.clone(), w.clone(), ours).sum().into_data();
        });
        let with_x = time(repeats, || {
            let xg = x.clone().require_grad();
            let g = run(&l, xg.clone(), w.clone(), ours).sum().backward();
            let _ = xg.grad(&g).unwrap().sum().into_data();
        });
        let with_w = time(repeats, || {
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
