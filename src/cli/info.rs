//! `cta2mbf info`: describe a NIfTI file or a DICOM series folder.

use super::print_report;
use cta2mbf::io::dicom::read_series;
use cta2mbf::io::read_nifti_image;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `cta2mbf info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The NIfTI file (.nii or .nii.gz), or a folder holding one DICOM series.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `cta2mbf info`.
pub fn run(args: InfoArgs) -> cta2mbf::Result<()> {
    if args.file.is_dir() { series_info(&args) } else { nifti_info(&args) }
}

/// Describe a NIfTI file.
fn nifti_info(args: &InfoArgs) -> cta2mbf::Result<()> {
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
    print_report(out.trim_end());
    Ok(())
}

/// Describe a DICOM series folder: the tags that matter and the geometry it converts to.
fn series_info(args: &InfoArgs) -> cta2mbf::Result<()> {
    let series = read_series(&args.file)?;
    let v = &series.volume;
    let g = &v.geometry;
    let h = &series.slices[0];
    let (lo, hi, mean) = v.stats();
    let size = v.shape();
    let thickness = h.slice_thickness.map(|t| format!("{t}")).unwrap_or_else(|| "-".into());
    let mut out = String::new();
    if args.json {
        let json = serde_json::json!({
            "folder": args.file.display().to_string(),
            "series_instance_uid": h.series_instance_uid,
            "study_instance_uid": h.study_instance_uid,
            "patient_id": h.patient_id,
            "modality": h.modality,
            "image_type": h.image_type,
            "series_description": h.series_description,
            "series_number": h.series_number,
            "transfer_syntax": h.transfer_syntax,
            "slices": series.slices.len(),
            "size": size,
            "spacing": g.spacing,
            "origin": g.origin,
            "direction": g.direction,
            "slice_thickness": h.slice_thickness,
            "rescale_slope": h.rescale_slope,
            "rescale_intercept": h.rescale_intercept,
            "min": lo,
            "max": hi,
            "mean": mean,
            "fits_int16": series.fits_int16(),
            "warnings": series.warnings,
            "not_a_volume": series.not_a_volume,
            "skipped": series.skipped.iter().map(|(p, why)| format!("{}: {why}", p.display())).collect::<Vec<_>>(),
        });
        out.push_str(&serde_json::to_string_pretty(&json).expect("json"));
    } else {
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
        writeln!(out, "folder     {}", args.file.display()).unwrap();
        writeln!(out, "series     {} (number {})", opt(&h.series_instance_uid), h.series_number.map(|n| n.to_string()).unwrap_or_else(|| "-".into())).unwrap();
        writeln!(out, "patient    {}   study {}", opt(&h.patient_id), opt(&h.study_instance_uid)).unwrap();
        writeln!(out, "modality   {}   ImageType {}", opt(&h.modality), h.image_type.join("\\")).unwrap();
        writeln!(out, "describes  {}", opt(&h.series_description)).unwrap();
        writeln!(out, "syntax     {}", h.transfer_syntax).unwrap();
        writeln!(out, "slices     {}   size {} x {} x {}   SliceThickness {thickness}", series.slices.len(), size[0], size[1], size[2]).unwrap();
        writeln!(out, "spacing    {:.6} {:.6} {:.6}", g.spacing[0], g.spacing[1], g.spacing[2]).unwrap();
        writeln!(out, "origin     {:.6} {:.6} {:.6} (LPS mm)", g.origin[0], g.origin[1], g.origin[2]).unwrap();
        for (i, row) in g.direction.iter().enumerate() {
            let label = if i == 0 { "direction" } else { "" };
            writeln!(out, "{label:<10} {:.6} {:.6} {:.6}", row[0], row[1], row[2]).unwrap();
        }
        writeln!(out, "rescale    slope {} intercept {}", h.rescale_slope, h.rescale_intercept).unwrap();
        writeln!(out, "range      min {lo} max {hi} mean {mean:.4} ({})", if series.fits_int16() { "int16" } else { "float32" }).unwrap();
        for w in &series.warnings {
            writeln!(out, "warning    {w}").unwrap();
        }
        for (p, why) in &series.skipped {
            writeln!(out, "skipped    {}: {why}", p.display()).unwrap();
        }
    }
    print_report(out.trim_end());
    Ok(())
}
