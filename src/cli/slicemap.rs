//! `cta2mbf slicemap`: PNG slice maps, montages and a browser page of inference folders.

use cta2mbf::analysis::Window;
use cta2mbf::analysis::curve::read_learning_curves;
use cta2mbf::analysis::report::{MaskSource, analyze_folder};
use cta2mbf::analysis::slicemap::{IndexExtras, SlicemapStyle, VariantSlices, write_index, write_variant};
use std::path::PathBuf;

/// Arguments of `cta2mbf slicemap`.
#[derive(Debug, clap::Args)]
pub struct SlicemapArgs {
    /// Inference folder(s); with several, each gets a sub-folder of --out named like it.
    #[arg(long = "in", required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output folder (e.g. ROOT/6.inference_slicemap).
    #[arg(long)]
    pub out: PathBuf,
    /// CTA window width.
    #[arg(long, default_value_t = 150.0)]
    pub src_ww: f32,
    /// CTA window level.
    #[arg(long, default_value_t = 75.0)]
    pub src_wl: f32,
    /// MBF window width.
    #[arg(long, default_value_t = 150.0)]
    pub dst_ww: f32,
    /// MBF window level.
    #[arg(long, default_value_t = 75.0)]
    pub dst_wl: f32,
    /// Draw fake_b only where real_b was measured (the myocardium), for a generator trained
    /// with the masked loss only (lambda_l1 0), whose output elsewhere is untrained.
    #[arg(long)]
    pub fake_where_measured: bool,
    /// Training run folder(s) whose metrics.jsonl gives the page's learning curves (held-out
    /// myocardium MAE per epoch in each norm mode).
    #[arg(long, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Myocardium MAE of predicting the training mean: a baseline row of the table and a
    /// line of the learning-curve plot.
    #[arg(long)]
    pub baseline: Option<f64>,
}

/// Run `cta2mbf slicemap`.
pub fn run(args: SlicemapArgs) -> cta2mbf::Result<()> {
    for (name, w) in [("--src-ww", args.src_ww), ("--dst-ww", args.dst_ww)] {
        if !(w > 0.0 && w.is_finite()) {
            return Err(cta2mbf::Error::invalid(format!("{name} must be positive, got {w}")));
        }
    }
    if let Some(b) = args.baseline.filter(|b| !(*b >= 0.0 && b.is_finite())) {
        return Err(cta2mbf::Error::invalid(format!("--baseline must be a finite MAE ≥ 0, got {b}")));
    }
    // The runs first: a missing or garbled metrics.jsonl stops before any map is drawn.
    let mut curves = Vec::new();
    for run in &args.runs {
        curves.extend(read_learning_curves(run)?);
    }
    let style = SlicemapStyle {
        src: Window { width: args.src_ww, level: args.src_wl },
        dst: Window { width: args.dst_ww, level: args.dst_wl },
        fake_where_measured: args.fake_where_measured,
    };
    let several = args.input.len() > 1;
    let mut variants = Vec::new();
    let (mut failed_cases, mut total) = (0, 0);
    for dir in &args.input {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "variant".into());
        let rel_dir = if several { name.clone() } else { String::new() };
        let (cases, failed) = write_variant(dir, &args.out.join(&rel_dir), &style)?;
        failed_cases += failed.len();
        total += failed.len() + cases.len();
        for (pid, why) in &failed {
            eprintln!("slicemap: {}: case {pid} skipped: {why}", dir.display());
        }
        let scores = analyze_folder(dir, &MaskSource::PositiveTarget).ok();
        let label = scores.as_ref().map(|s| s.label.clone()).unwrap_or(name);
        println!("slicemap: {} cases of {} written", cases.len(), dir.display());
        variants.push(VariantSlices { label, rel_dir, cases, failed, scores });
    }
    let index = write_index(&args.out, &variants, &style, &IndexExtras { baseline: args.baseline, curves })?;
    println!("slicemap: open {}", index.display());
    super::cases_failed("slicemap", failed_cases, total)
}
