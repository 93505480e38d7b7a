//! `cta2mbf bench`: time the generator on a device.

use super::parse_size;
use cta2mbf::bench::{BenchOptions, run as bench};
use cta2mbf::device::DeviceChoice;

/// Arguments of `cta2mbf bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The network: generator (default) or segmentation (the chamber U-Net; --ngf is its base_n_filter).
    #[arg(long, value_enum, default_value = "generator")]
    pub network: cta2mbf::bench::Network,
    /// Norm mode of both the inference and the training step (default: eval for inference, train for the step).
    #[arg(long)]
    pub norm_mode: Option<cta2mbf::models::NormMode>,
    /// Input size X,Y,Z (multiples of 8).
    #[arg(long, value_parser = parse_size, default_value = "64,64,64")]
    pub size: [usize; 3],
    /// Generator filters of the first layer.
    #[arg(long, default_value_t = 32)]
    pub ngf: usize,
    /// Residual blocks (ResNet).
    #[arg(long, default_value_t = 6)]
    pub n_blocks: usize,
    /// Generator: resnet (the reference's) or unet.
    #[arg(long, default_value = "resnet", value_parser = parse_kind)]
    pub generator: cta2mbf::models::GeneratorKind,
    /// Resolution levels (U-Net).
    #[arg(long, default_value_t = 4)]
    pub levels: usize,
    /// Backend: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Timed repetitions after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(s: &str) -> Result<cta2mbf::models::GeneratorKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| format!("unknown generator '{s}' (resnet, unet)"))
}

/// Run `cta2mbf bench`.
pub fn run(args: BenchArgs) -> cta2mbf::Result<()> {
    let r = bench(&BenchOptions {
        network: args.network,
        norm_mode: args.norm_mode,
        size: args.size,
        ngf: args.ngf,
        n_blocks: args.n_blocks,
        kind: args.generator,
        levels: args.levels,
        device: args.device,
        repeats: args.repeats,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r).expect("result serializes"));
        return Ok(());
    }
    let [x, y, z] = r.size;
    let net = match args.network {
        cta2mbf::bench::Network::Generator => format!("generator={:?} ngf={}", args.generator, r.ngf),
        cta2mbf::bench::Network::Segmentation => format!("segmentation base_n_filter={}", r.ngf),
    };
    println!("cta2mbf bench device={} {net} size={x}x{y}x{z} forward={:.1} GFLOP", r.device, r.forward_flops / 1e9);
    let gib = |b: Option<u64>| b.map_or(String::new(), |b| format!(", peak {:.2} GiB", b as f64 / (1u64 << 30) as f64));
    println!("  infer      {:.3} s  ({:.1} GFLOP/s, {:?} mode{})", r.infer_seconds, r.infer_gflops, r.norm_modes[0], gib(r.infer_peak_rss_bytes));
    println!("  train_step {:.3} s  ({:.1} GFLOP/s, {:?} mode{})", r.train_step_seconds, r.train_gflops, r.norm_modes[1], gib(r.train_peak_rss_bytes));
    if let Some(b) = r.peak_rss_bytes {
        println!("  peak resident memory {:.2} GiB (host, whole process)", b as f64 / (1u64 << 30) as f64);
    }
    Ok(())
}
