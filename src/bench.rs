//! Timing a network — the generator or the segmentation U-Net — : inference and one training
//! step (L1 loss, Adam; norm in eval then train mode unless one mode is asked for) on random
//! input, as `scripts/torch_generator.py` measures the same generator in PyTorch.
//! GFLOP/s come from the layer-by-layer convolution FLOP count; a training step counts as
//! three forward passes (forward, and a backward pass twice as costly).

use crate::device::DeviceChoice;
use crate::error::Result;
use crate::models::init::Initializer;
use crate::models::{GeneratorConfig, GeneratorKind, NormKind, NormMode, UNet3dConfig, UpsampleKind};
use crate::train::loss::l1;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use serde::Serialize;
use std::time::Instant;

/// Which network to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The CTA→MBF generator (`--generator resnet|unet`).
    #[default]
    Generator,
    /// The chamber-segmentation U-Net (8 classes; input size = `size`).
    #[value(alias = "unet")]
    Segmentation,
}

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Which network.
    pub network: Network,
    /// Input size x, y, z (multiples of the network's size multiple).
    pub size: [usize; 3],
    /// Generator filters (segmentation: `base_n_filter`).
    pub ngf: usize,
    /// Residual blocks (ResNet).
    pub n_blocks: usize,
    /// Which generator.
    pub kind: GeneratorKind,
    /// Resolution levels (U-Net generator).
    pub levels: usize,
    /// Norm mode of both passes; `None`: eval for inference, train for the training step.
    pub norm_mode: Option<NormMode>,
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
    /// Which network.
    pub network: Network,
    /// Input size.
    pub size: [usize; 3],
    /// Generator filters (segmentation: base_n_filter).
    pub ngf: usize,
    /// Norm mode of inference and of the training step.
    pub norm_modes: [NormMode; 2],
    /// FLOPs of one forward pass.
    pub forward_flops: f64,
    /// Seconds per inference (no gradients).
    pub infer_seconds: f64,
    /// Seconds per training step.
    pub train_step_seconds: f64,
    /// Inference GFLOP/s.
    pub infer_gflops: f64,
    /// Training GFLOP/s (3 × forward FLOPs per step).
    pub train_gflops: f64,
    /// Peak resident memory of the process while it timed inference, bytes (host memory;
    /// GPU memory is not included).
    pub infer_peak_rss_bytes: Option<u64>,
    /// Peak resident memory while it timed the training steps (the peak is reset to the
    /// current resident size when they start; Linux only), bytes.
    pub train_peak_rss_bytes: Option<u64>,
    /// Peak resident memory of the whole process, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Peak resident memory of the two phases, as [`BenchResult`] reports them.
struct Peaks {
    infer: Option<u64>,
    train: Option<u64>,
}

/// Mean seconds of `f` over `repeats` calls after one warm-up call.
pub fn time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..repeats {
        f();
    }
    t.elapsed().as_secs_f64() / repeats as f64
}

/// Inference and training-step times of the network `make` builds, with `forward`
/// (an L1 loss to a random target, Adam; the loss is read back each step so that a GPU
/// finishes the work inside the timing).
fn time_network<M: Module + Clone>(
    opts: &BenchOptions,
    out_channels: usize,
    make: impl Fn(&Device) -> M,
    forward: impl Fn(&M, Tensor<5>, NormMode) -> Tensor<5>,
    modes: [NormMode; 2],
) -> Result<(f64, f64, Peaks)> {
    let device = opts.device.device()?;
    let repeats = opts.repeats.max(1);
    let [x, y, z] = opts.size;
    let net = make(&device);
    let input: Tensor<5> = Tensor::random([1, 1, x, y, z], Distribution::Normal(0.0, 1.0), &device);
    let infer_seconds = time(repeats, || {
        let _ = forward(&net, input.clone(), modes[0]).into_data();
    });
    let infer_peak = peak_rss_bytes();
    reset_peak_rss();
    let ad = device.autodiff();
    let mut net = Some(make(&ad));
    let input: Tensor<5> = Tensor::random([1, 1, x, y, z], Distribution::Normal(0.0, 1.0), &ad);
    let target: Tensor<5> = Tensor::random([1, out_channels, x, y, z], Distribution::Normal(0.0, 1.0), &ad);
    let mut optim = AdamConfig::new().with_beta_1(0.5).init();
    let train_step_seconds = time(repeats, || {
        let m = net.take().expect("network");
        let loss = l1(forward(&m, input.clone(), modes[1]), target.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let _ = loss.into_data();
        net = Some(optim.step(1e-4, m, grads));
    });
    let train_peak = peak_rss_bytes();
    Ok((infer_seconds, train_step_seconds, Peaks { infer: infer_peak, train: train_peak }))
}

/// Time inference and training steps.
pub fn run(opts: &BenchOptions) -> Result<BenchResult> {
    let modes = opts.norm_mode.map_or([NormMode::Eval, NormMode::Train], |m| [m, m]);
    let whole_process_peak_before = peak_rss_bytes();
    let (forward_flops, (infer_seconds, train_step_seconds, peaks)) = match opts.network {
        Network::Generator => {
            let cfg = GeneratorConfig { kind: opts.kind, ngf: opts.ngf, n_blocks: opts.n_blocks, levels: opts.levels, norm: NormKind::Batch, upsample: UpsampleKind::Transposed };
            cfg.validate()?;
            let flops = cfg.init(&mut Initializer::new(0, &Device::flex())).flops(opts.size);
            (flops, time_network(opts, 1, |d| cfg.init(&mut Initializer::new(0, d)), |g, x, m| g.forward(x, m), modes)?)
        }
        Network::Segmentation => {
            let cfg = UNet3dConfig { in_channels: 1, classes: 8, base_n_filter: opts.ngf, dropout: 0.0, input_size: opts.size };
            cfg.validate()?;
            let flops = cfg.init(&mut Initializer::new(0, &Device::flex())).flops();
            (flops, time_network(opts, cfg.classes, |d| cfg.init(&mut Initializer::new(0, d)), |n, x, m| n.forward(x, m == NormMode::Train), modes)?)
        }
    };
    Ok(BenchResult {
        device: opts.device.to_string(),
        network: opts.network,
        size: opts.size,
        ngf: opts.ngf,
        norm_modes: modes,
        forward_flops,
        infer_seconds,
        train_step_seconds,
        infer_gflops: forward_flops / infer_seconds / 1e9,
        train_gflops: 3.0 * forward_flops / train_step_seconds / 1e9,
        infer_peak_rss_bytes: peaks.infer,
        train_peak_rss_bytes: peaks.train,
        peak_rss_bytes: [whole_process_peak_before, peaks.infer, peaks.train].into_iter().flatten().max(),
    })
}

/// Reset the process's peak resident memory (`VmHWM`) to its current resident size, by
/// writing 5 to `/proc/self/clear_refs` (Linux ≥ 4.0); elsewhere nothing happens.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `VmHWM` of `/proc/self/status`: the process's peak resident memory.
pub fn peak_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
