//! `cta2mbf analyze`: score inference folders (MAE, MAE in the myocardium, PSNR, SSIM) and
//! compare variants.

use cta2mbf::analysis::report::{Comparison, MaskSource, analyze_folder, default_csv_path, write_csv, ANALYSIS_FOLDER};
use cta2mbf::io::atomic::write_bytes_atomically;
use std::path::PathBuf;

/// Arguments of `cta2mbf analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// An inference folder (`6.inference_*`) to score.
    #[arg(long = "in", conflicts_with = "compare", required_unless_present = "compare")]
    pub input: Option<PathBuf>,
    /// Several inference folders to score and compare side by side.
    #[arg(long, num_args = 2.., value_name = "DIR")]
    pub compare: Option<Vec<PathBuf>>,
    /// Myocardium mask per case, `{pid}` replaced by the case id (e.g.
    /// ROOT/5.mbf_myocardium/{pid}/cropped_mask.nii.gz); default: real_b > 0.
    #[arg(long)]
    pub mask_pattern: Option<String>,
    /// The myocardium label in --mask-pattern files.
    #[arg(long, default_value_t = 6.0)]
    pub mask_label: f32,
    /// Output CSV (one folder), or output stem for the comparison's .csv and .md
    /// (default: 7.analysis_result/ beside the first folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Run `cta2mbf analyze`.
pub fn run(args: AnalyzeArgs) -> cta2mbf::Result<()> {
    let mask = match &args.mask_pattern {
        Some(t) => MaskSource::Pattern { template: t.clone(), label: args.mask_label },
        None => MaskSource::PositiveTarget,
    };
    let dirs = match (&args.input, &args.compare) {
        (Some(d), _) => vec![d.clone()],
        (None, Some(ds)) => ds.clone(),
        (None, None) => unreachable!("clap requires --in or --compare"),
    };
    let mut variants = Vec::new();
    let (mut failed, mut total) = (0, 0);
    for dir in &dirs {
        let scores = analyze_folder(dir, &mask)?;
        failed += scores.failed.len();
        total += scores.failed.len() + scores.rows.len();
        for (pid, why) in &scores.failed {
            eprintln!("analyze: {}: case {pid} skipped: {why}", dir.display());
        }
        let csv = match (&args.out, args.compare.is_some()) {
            (Some(out), false) => out.clone(),
            _ => default_csv_path(dir),
        };
        write_csv(&scores, &csv)?;
        println!("analyze: {} cases of {} → {}", scores.rows.len(), dir.display(), csv.display());
        variants.push(scores);
    }
    let table = Comparison::new(variants);
    let md = table.to_markdown();
    if args.compare.is_some() {
        let stem = args.out.clone().unwrap_or_else(|| {
            dirs[0].parent().unwrap_or(std::path::Path::new(".")).join(ANALYSIS_FOLDER).join("compare")
        });
        let (csv, mdp) = (stem.with_extension("csv"), stem.with_extension("md"));
        write_bytes_atomically(&csv, table.to_csv().as_bytes())?;
        write_bytes_atomically(&mdp, md.as_bytes())?;
        println!("analyze: comparison → {} and {}", csv.display(), mdp.display());
    }
    print!("{md}");
    super::cases_failed("analyze", failed, total)
}
