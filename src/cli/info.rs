//! `cta2mbf info`: describe a NIfTI file.

use cta2mbf::io::read_nifti_image;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

/// Arguments of `cta2mbf info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The NIfTI file (.nii or .nii.gz).
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `cta2mbf info`.
pub fn run(args: InfoArgs) -> cta2mbf::Result<()> {
    let image = read_nifti_image(&args.file)?;
    let v = &image.volumes[0];
    let g = &v.geometry;
    let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f64);
    for frame in &image.volumes {
        let (a, b, m) = frame.stats();
        lo = lo.min(a);
        hi = hi.max(b);
        sum += m;
    }
    let mean = sum / image.volumes.len() as f64;
    let mut dims = image.header.dim.clone();
    dims.resize(dims.len().max(3), 1);
    let mut out = String::new();
    if args.json {
        let json = serde_json::json!({
            "file": args.file.display().to_string(),
            "size": dims,
            "dtype": image.dtype.name(),
            "spacing": g.spacing,
            "origin": g.origin,
            "direction": g.direction,
            "min": lo,
            "max": hi,
            "mean": mean,
            "nifti_version": image.header.version,
            "scl_slope": image.header.scl_slope,
            "scl_inter": image.header.scl_inter,
            "qform_code": image.header.qform_code,
            "sform_code": image.header.sform_code,
        });
        out.push_str(&serde_json::to_string_pretty(&json).expect("json"));
        out.push('\n');
    } else {
        let size: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        writeln!(out, "file       {}", args.file.display()).unwrap();
        writeln!(out, "size       {}", size.join(" x ")).unwrap();
        writeln!(out, "dtype      {}", image.dtype.name()).unwrap();
        writeln!(out, "spacing    {:.6} {:.6} {:.6}", g.spacing[0], g.spacing[1], g.spacing[2]).unwrap();
        writeln!(out, "origin     {:.6} {:.6} {:.6} (LPS mm)", g.origin[0], g.origin[1], g.origin[2]).unwrap();
        for (i, row) in g.direction.iter().enumerate() {
            let label = if i == 0 { "direction" } else { "" };
            writeln!(out, "{label:<10} {:.6} {:.6} {:.6}", row[0], row[1], row[2]).unwrap();
        }
        writeln!(out, "range      min {lo} max {hi} mean {mean:.4}").unwrap();
        writeln!(out, "codes      qform {} sform {} scl_slope {} scl_inter {}", image.header.qform_code, image.header.sform_code, image.header.scl_slope, image.header.scl_inter).unwrap();
    }
    print_to_stdout(&out);
    Ok(())
}

/// Print, treating a closed pipe (`cta2mbf info f | head`) as a normal end.
fn print_to_stdout(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
