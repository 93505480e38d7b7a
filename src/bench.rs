//! Timing the generator: inference and one training step (L1 loss, Adam, norm in train
//! mode) on random input, as the PyTorch anchor `bench/torch_generator.py` measures them.
//! GFLOP/s come from the layer-by-layer convolution FLOP count; a training step counts as
//! three forward passes (forward, and a backward pass twice as costly).

use crate::device::DeviceChoice;
use crate::error::Result;
use crate::models::init::Initializer;
use crate::models::{GeneratorConfig, GeneratorKind, NormKind, NormMode, UpsampleKind};
use crate::train::loss::l1;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Distribution, Tensor};
use serde::Serialize;
use std::time::Instant;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Input size x, y, z (multiples of the generator's size multiple).
    pub size: [usize; 3],
    /// Generator filters.
    pub ngf: usize,
    /// Residual blocks (ResNet).
    pub n_blocks: usize,
    /// Which generator.
    pub kind: GeneratorKind,
    /// Resolution levels (U-Net).
    pub levels: usize,
    /// Backend.
    pub device: DeviceChoice,
    /// Timed repetitions (after one untimed warm-up).
    pub repeats: usize,
}

/// Measured times (mean over the repetitions) and rates.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Backend name.
    pub device: String,
    /// Input size.
    pub size: [usize; 3],
    /// Generator filters.
    pub ngf: usize,
    /// FLOPs of one forward pass.
    pub forward_flops: f64,
    /// Seconds per inference (eval mode, no gradients).
    pub infer_seconds: f64,
    /// Seconds per training step.
    pub train_step_seconds: f64,
    /// Inference GFLOP/s.
    pub infer_gflops: f64,
    /// Training GFLOP/s (3 × forward FLOPs per step).
    pub train_gflops: f64,
    /// Peak resident memory of this process, bytes (host memory; GPU memory is not included).
    pub peak_rss_bytes: Option<u64>,
}

/// Time inference and training steps.
pub fn run(opts: &BenchOptions) -> Result<BenchResult> {
    let device = opts.device.device()?;
    let cfg = GeneratorConfig { kind: opts.kind, ngf: opts.ngf, n_blocks: opts.n_blocks, levels: opts.levels, norm: NormKind::Batch, upsample: UpsampleKind::Transposed };
    cfg.validate()?;
    let shape = [1, 1, opts.size[0], opts.size[1], opts.size[2]];
    let repeats = opts.repeats.max(1);

    let g = cfg.init(&mut Initializer::new(0, &device));
    let forward_flops = g.flops(opts.size);
    let x: Tensor<5> = Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let infer = || {
        let y = g.forward(x.clone(), NormMode::Eval);
        let _ = y.into_data();
    };
    infer();
    let t = Instant::now();
    for _ in 0..repeats {
        infer();
    }
    let infer_seconds = t.elapsed().as_secs_f64() / repeats as f64;

    let ad = device.autodiff();
    let mut g = cfg.init(&mut Initializer::new(0, &ad));
    let x: Tensor<5> = Tensor::random(shape, Distribution::Normal(0.0, 1.0), &ad);
    let y: Tensor<5> = Tensor::random(shape, Distribution::Normal(0.0, 1.0), &ad);
    let mut optim = AdamConfig::new().with_beta_1(0.5).init();
    let mut step = |g: crate::models::Generator| {
        let loss = l1(g.forward(x.clone(), NormMode::Train), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &g);
        let g = optim.step(1e-4, g, grads);
        // Wait for the update to finish.
        let _ = g.head().bias.as_ref().map(|b| b.val().into_data());
        g
    };
    g = step(g);
    let t = Instant::now();
    for _ in 0..repeats {
        g = step(g);
    }
    let train_step_seconds = t.elapsed().as_secs_f64() / repeats as f64;
    let _ = g.valid();
    Ok(BenchResult {
        device: opts.device.to_string(),
        size: opts.size,
        ngf: opts.ngf,
        forward_flops,
        infer_seconds,
        train_step_seconds,
        infer_gflops: forward_flops / infer_seconds / 1e9,
        train_gflops: 3.0 * forward_flops / train_step_seconds / 1e9,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// `VmHWM` of `/proc/self/status`: the process's peak resident memory.
pub fn peak_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
