//! The GPU code path on a real Vulkan device: with `--features wgpu` (as `.ci/run` builds the
//! tests) these run on whatever adapter wgpu finds — in CI, Mesa's software Vulkan driver
//! (lavapipe, Debian's `mesa-vulkan-drivers`). The generators and the segmentation U-Net give
//! the same outputs and parameter gradients on the wgpu device as on the CPU (`flex`), and
//! training, inference and the benchmark run end to end with `--device wgpu`.
//!
//! Tolerance: |wgpu − cpu| ≤ 1e-3 × (1 + max |cpu|) per tensor (float32 on both; the two
//! backends sum in different orders, and autotune may pick different kernels).
#![cfg(feature = "wgpu")]

use crate::common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, DeviceKind, Tensor};
use cta2mbf::models::generator::{GeneratorConfig, GeneratorKind};
use cta2mbf::models::init::Initializer;
use cta2mbf::models::norm::{NormKind, NormMode};
use cta2mbf::models::unet3d::UNet3dConfig;
use common::cta2mbf;
use std::time::Instant;

fn gpu() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Every float parameter's gradient, in the module's visiting order.
struct GradientValues<'a>(&'a GradientsParams, Vec<Vec<f32>>);

impl ModuleVisitor for GradientValues<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.0.get::<D>(param.id) {
            self.1.push(values(g));
        }
    }
}

/// Check the tolerance; returns the difference relative to `1 + max |cpu|`.
fn assert_close(what: &str, gpu: &[f32], cpu: &[f32]) -> f32 {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = gpu.iter().zip(cpu).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(gpu.iter().all(|v| v.is_finite()), "{what}: non-finite values on the GPU");
    assert!(worst <= 1e-3 * (1.0 + scale), "{what}: max |gpu - cpu| = {worst} (max |cpu| = {scale})");
    worst / (1.0 + scale)
}

/// Forward and parameter gradients of `forward` on `module` for one input, on a device.
fn forward_and_grads<M: Module + Clone>(module: &M, x: &Tensor<5>, device: &Device, forward: impl Fn(&M, Tensor<5>) -> Tensor<5>) -> (Vec<f32>, Vec<Vec<f32>>) {
    let m = module.clone().fork(device);
    let y = forward(&m, x.clone().to_device(device));
    let loss = (y.clone() * y.clone()).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &m);
    let mut visitor = GradientValues(&grads, Vec::new());
    m.visit(&mut visitor);
    (values(y), visitor.1)
}

/// The seed of every network's input. Fixed, because a random input may put a pre-activation
/// within rounding of a kink: a LeakyReLU's slope then switches between 0.01 and 1 on one
/// backend and not the other, and every gradient upstream of it differs by far more than
/// rounding while the output agrees. Measured on the segmentation U-Net below: one of 12
/// other normal inputs (drawn by a splitmix64 stream) agreed within 1.8e-6 in the output and
/// 4e-7 in 14 of the 32 gradients while the other 18 differed by up to 1e-2; the inputs of
/// `Initializer` seeds 0–11 all agree within 2.6e-6 everywhere.
const INPUT_SEED: u64 = 0;

fn compare<M: Module + Clone>(what: &str, module: M, shape: [usize; 5], forward: impl Fn(&M, Tensor<5>) -> Tensor<5> + Copy) {
    let cpu = Device::flex().autodiff();
    let x = Initializer::new(INPUT_SEED, &Device::flex()).normal(shape, 0.0, 1.0).val().to_device(&cpu);
    let start = Instant::now();
    let (y_gpu, g_gpu) = forward_and_grads(&module, &x, &gpu().autodiff(), forward);
    eprintln!("{what}: wgpu forward + backward in {:.1} s (first call compiles the kernels)", start.elapsed().as_secs_f64());
    let (y_cpu, g_cpu) = forward_and_grads(&module, &x, &cpu, forward);
    let out = assert_close(&format!("{what} output"), &y_gpu, &y_cpu);
    assert_eq!(g_gpu.len(), g_cpu.len(), "{what}: parameter count");
    assert!(!g_cpu.is_empty());
    let mut worst = 0f32;
    for (i, (a, b)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        worst = worst.max(assert_close(&format!("{what} gradient of parameter {i}"), a, b));
    }
    eprintln!("{what}: output differs by {out:.1e}, the {} parameter gradients by at most {worst:.1e} (relative to 1 + max |cpu|)", g_cpu.len());
}

#[test]
fn networks_match_the_cpu_forward_and_backward() {
    let cpu = Device::flex().autodiff();
    for (kind, norm) in [(GeneratorKind::Unet, NormKind::Batch), (GeneratorKind::Resnet, NormKind::Instance)] {
        let cfg = GeneratorConfig { kind, ngf: 4, n_blocks: 1, levels: 3, norm, ..Default::default() };
        let g = cfg.init(&mut Initializer::new(7, &cpu));
        for mode in [NormMode::Train, NormMode::Eval] {
            compare(&format!("{kind:?} generator ({norm:?} norm, {mode:?} mode)"), g.clone(), [2, 1, 16, 16, 8], move |m, x| m.forward(x, mode));
        }
    }
    let seg = UNet3dConfig { in_channels: 1, classes: 8, base_n_filter: 2, dropout: 0.0, input_size: [16, 16, 16] };
    let net = seg.init(&mut Initializer::new(3, &cpu));
    compare("segmentation U-Net", net, [1, 1, 16, 16, 16], |m, x| m.forward(x, true));
}

fn run_ok(cmd: &mut std::process::Command) -> String {
    let start = Instant::now();
    let out = cmd.output().expect("cta2mbf runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    eprintln!("{:?} took {:.1} s", cmd.get_args().next().unwrap_or_default(), start.elapsed().as_secs_f64());
    text
}

#[test]
fn train_infer_and_bench_run_on_the_wgpu_device() {
    let dir = tempfile::tempdir().unwrap();
    common::phantom(dir.path(), 2, "64,64,48", 2);
    let data = dir.path().join("5.mbf_myocardium");
    let config = common::tiny_generator_config(dir.path(), "tiny", &[("crop_size", serde_json::json!([16, 16, 16]))]);
    let ckpt = dir.path().join("ckpt");
    run_ok(cta2mbf().args(["train", "--quiet", "--epochs", "1", "--device", "wgpu", "--name", "gpu", "--config"]).arg(&config).arg("--data-root").arg(&data).arg("--checkpoints-dir").arg(&ckpt));
    // The wgpu-trained checkpoint predicts the same on the GPU as on the CPU.
    let out = |device: &str| {
        let o = dir.path().join(format!("infer_{device}"));
        run_ok(cta2mbf().args(["infer", "--norm-mode", "eval", "--block", "32,32,32", "--device", device, "--checkpoint"]).arg(ckpt.join("gpu")).arg("--data-root").arg(&data).arg("--out").arg(&o));
        o
    };
    let (g, c) = (out("wgpu"), out("cpu"));
    let files = common::walk(&g);
    assert!(files.iter().any(|f| f.ends_with("fake_b.nii.gz")), "{files:?}");
    for f in files.iter().filter(|f| f.ends_with("fake_b.nii.gz")) {
        let a = cta2mbf::io::read_nifti(f).unwrap();
        let b = cta2mbf::io::read_nifti(c.join(f.strip_prefix(&g).unwrap())).unwrap();
        let d = assert_close(&format!("fake_b {}", f.display()), a.data.as_slice().unwrap(), b.data.as_slice().unwrap());
        eprintln!("fake_b {}: wgpu and cpu differ by {d:.1e}", f.display());
    }
    let bench = run_ok(cta2mbf().args(["bench", "--device", "wgpu", "--size", "16,16,16", "--ngf", "4"]));
    assert!(bench.contains("step"), "{bench}");
}

#[test]
fn two_wgpu_devices_train_like_one_with_the_whole_batch() {
    // Lavapipe exposes its adapter as two distinct wgpu devices (the default and the CPU one);
    // on a multi-GPU machine the same runs on `wgpu:0,wgpu:1`.
    let dir = tempfile::tempdir().unwrap();
    let (worst, lr) = common::data_parallel_difference(dir.path(), "wgpu:default,wgpu:cpu", "wgpu");
    eprintln!("largest weight difference: {worst:.2e} (lr {lr})");
    assert!(worst < 0.05 * lr, "data-parallel weights differ by {worst}");
}


