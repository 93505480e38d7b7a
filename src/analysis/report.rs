//! Scoring inference folders: one CSV per variant (`suid,mae` first, as the reference's
//! `7.analysis_result/mae_*.csv`, then the extra scores), and a comparison of variants with
//! one row per variant (mean ± sd per score) and one column per case.

use super::metrics::{CaseScores, is_measured, score_case};
use crate::error::{Error, Result};
use crate::cohort::inference as files;
use crate::io::atomic::write_bytes_atomically;
use crate::io::nifti::read_nifti;
use crate::volume::Interpolation;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The analysis folder of a cohort: `7.analysis_result`.
pub const ANALYSIS_FOLDER: &str = crate::cohort::ANALYSIS;

/// Where the myocardium of a case comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskSource {
    /// Voxels where the measured MBF (`real_b`) is positive: the definition of
    /// `cropped_mbf_mask` (docs/design.md §3 step 7).
    PositiveTarget,
    /// A mask file per case, `{pid}` in the path replaced by the case id, resampled (nearest)
    /// onto the inference block by world position; voxels equal to `label` count.
    Pattern {
        /// Path template, e.g. `ROOT/5.mbf_myocardium/{pid}/cropped_mask.nii.gz`.
        template: String,
        /// The label that marks the myocardium in that file.
        label: f32,
    },
}

/// The scores of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    /// Case id (the reference's `suid` column).
    pub pid: String,
    /// Its scores.
    pub scores: CaseScores,
}

/// The scores of one inference folder.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantScores {
    /// Display name: the folder name, with the train→inference norm modes when the folder's
    /// manifest says them.
    pub label: String,
    /// The inference folder.
    pub dir: PathBuf,
    /// One row per case, sorted by id.
    pub rows: Vec<CaseRow>,
    /// `(pid, reason)` for case folders that could not be scored.
    pub failed: Vec<(String, String)>,
}

/// Mean and sample standard deviation (0 for a single value); `None` when empty.
pub fn mean_sd(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    Some((mean, var.sqrt()))
}

/// The score columns of a table: name, and how to read it from a case.
pub const SCORES: [(&str, fn(&CaseScores) -> Option<f64>); 4] = [
    ("mae", |s| Some(s.mae)),
    ("mae_myocardium", |s| s.mae_myocardium),
    ("psnr", |s| Some(s.psnr)),
    ("ssim", |s| Some(s.ssim)),
];

fn variant_label(dir: &Path) -> String {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    let manifest = std::fs::read_to_string(dir.join(files::MANIFEST)).ok();
    let modes = manifest.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).and_then(|v| {
        Some(format!("{}→{}", v.get("trained_norm_mode")?.as_str()?, v.get("norm_mode")?.as_str()?))
    });
    match modes {
        Some(m) => format!("{name} ({m})"),
        None => name,
    }
}

/// Score every case folder of `dir` that holds `real_b` and `fake_b`.
pub fn analyze_folder(dir: &Path, mask: &MaskSource) -> Result<VariantScores> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut cases: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(files::FAKE_B).is_file() || e.path().join(files::REAL_B).is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    cases.sort();
    if cases.is_empty() {
        return Err(Error::format(dir, format!("no case folder with {} and {} here", files::REAL_B, files::FAKE_B)));
    }
    let mut out = VariantScores { label: variant_label(dir), dir: dir.to_path_buf(), rows: Vec::new(), failed: Vec::new() };
    for (pid, case) in cases {
        match score_folder(&pid, &case, mask) {
            Ok(scores) => out.rows.push(CaseRow { pid, scores }),
            Err(e) => out.failed.push((pid, e.to_string())),
        }
    }
    Ok(out)
}

fn score_folder(pid: &str, case: &Path, mask: &MaskSource) -> Result<CaseScores> {
    let real = read_nifti(case.join(files::REAL_B))?;
    let fake_path = case.join(files::FAKE_B);
    let fake = read_nifti(&fake_path)?;
    if !fake.same_grid(&real, 1e-3) {
        return Err(Error::format(&fake_path, format!("grid {:?} differs from real_b's {:?}", fake.shape(), real.shape())));
    }
    let inside = match mask {
        MaskSource::PositiveTarget => real.data.mapv(is_measured),
        MaskSource::Pattern { template, label } => {
            let path = PathBuf::from(template.replace("{pid}", pid));
            let m = read_nifti(&path)?.resample_to_grid(real.shape(), &real.geometry, Interpolation::Nearest, 0.0);
            m.data.mapv(|v| v == *label)
        }
    };
    Ok(score_case(&fake, &real, &inside))
}

fn fmt_value(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_default()
}

impl VariantScores {
    /// The per-case CSV: `suid,mae,mae_myocardium,psnr,ssim`.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("suid");
        for (name, _) in SCORES {
            s += &format!(",{name}");
        }
        s.push('\n');
        for row in &self.rows {
            s += &row.pid;
            for (_, get) in SCORES {
                s += &format!(",{}", fmt_value(get(&row.scores)));
            }
            s.push('\n');
        }
        s
    }

    /// Mean and sd of one score over the cases.
    pub fn summary(&self, get: fn(&CaseScores) -> Option<f64>) -> Option<(f64, f64)> {
        mean_sd(&self.rows.iter().filter_map(|r| get(&r.scores)).collect::<Vec<_>>())
    }
}

/// The default CSV path of an inference folder: `<its parent>/7.analysis_result/mae_<name
/// without the 6.inference_ prefix>.csv`.
pub fn default_csv_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix = name.strip_prefix(crate::cohort::INFERENCE_PREFIX).unwrap_or(&name);
    dir.parent().unwrap_or(Path::new(".")).join(ANALYSIS_FOLDER).join(format!("mae_{suffix}.csv"))
}

/// Write a variant's CSV atomically.
pub fn write_csv(scores: &VariantScores, path: &Path) -> Result<()> {
    write_bytes_atomically(path, scores.to_csv().as_bytes())
}

/// Several variants side by side.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The variants, in the order given.
    pub variants: Vec<VariantScores>,
    /// Every case id seen in any variant, sorted.
    pub cases: Vec<String>,
}

/// The score shown per case in a comparison: MAE inside the myocardium.
pub const PER_CASE_SCORE: &str = "mae_myocardium";

impl Comparison {
    /// Put `variants` side by side.
    pub fn new(variants: Vec<VariantScores>) -> Self {
        let mut cases: Vec<String> = variants.iter().flat_map(|v| v.rows.iter().map(|r| r.pid.clone())).collect();
        cases.sort();
        cases.dedup();
        Self { variants, cases }
    }

    /// Header and rows as cells: variant, `mean ± sd` of each score, then the per-case
    /// myocardium MAE.
    pub fn cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec!["variant".to_string(), "cases".to_string()];
        header.extend(SCORES.iter().map(|(n, _)| format!("{n} (mean ± sd)")));
        header.extend(self.cases.iter().map(|c| format!("{c} {PER_CASE_SCORE}")));
        let rows = self
            .variants
            .iter()
            .map(|v| {
                let mut row = vec![v.label.clone(), v.rows.len().to_string()];
                for (_, get) in SCORES {
                    row.push(v.summary(get).map(|(m, sd)| format!("{m:.3} ± {sd:.3}")).unwrap_or_default());
                }
                for c in &self.cases {
                    let value = v.rows.iter().find(|r| &r.pid == c).and_then(|r| r.scores.mae_myocardium);
                    row.push(value.map(|x| format!("{x:.2}")).unwrap_or_default());
                }
                row
            })
            .collect();
        (header, rows)
    }

    /// The table as GitHub Markdown.
    pub fn to_markdown(&self) -> String {
        let (header, rows) = self.cells();
        let mut s = format!("| {} |\n|{}|\n", header.join(" | "), vec!["---"; header.len()].join("|"));
        for row in rows {
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
        s
    }

    /// The table as CSV (cells containing commas are quoted).
    pub fn to_csv(&self) -> String {
        let (header, rows) = self.cells();
        let quote = |c: &String| if c.contains(',') { format!("\"{c}\"") } else { c.clone() };
        std::iter::once(header)
            .chain(rows)
            .map(|r| r.iter().map(quote).collect::<Vec<_>>().join(",") + "\n")
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(mae: f64, myo: Option<f64>) -> CaseScores {
        CaseScores { mae, mae_myocardium: myo, psnr: 30.0, ssim: 0.9 }
    }

    #[test]
    fn mean_and_sample_sd() {
        assert_eq!(mean_sd(&[]), None);
        assert_eq!(mean_sd(&[2.0]), Some((2.0, 0.0)));
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(m, 2.5);
        assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn csv_and_comparison_tables() {
        let a = VariantScores {
            label: "A".into(),
            dir: "a".into(),
            rows: vec![CaseRow { pid: "1".into(), scores: scores(1.0, Some(2.0)) }, CaseRow { pid: "2".into(), scores: scores(3.0, None) }],
            failed: vec![],
        };
        assert_eq!(a.to_csv().lines().next(), Some("suid,mae,mae_myocardium,psnr,ssim"));
        assert_eq!(a.to_csv().lines().nth(2), Some("2,3.0000,,30.0000,0.9000"));
        let b = VariantScores { label: "B".into(), dir: "b".into(), rows: vec![CaseRow { pid: "3".into(), scores: scores(5.0, Some(6.0)) }], failed: vec![] };
        let c = Comparison::new(vec![a, b]);
        assert_eq!(c.cases, vec!["1", "2", "3"]);
        let md = c.to_markdown();
        assert!(md.contains("| A | 2 | 2.000 ± 1.414 | 2.000 ± 0.000 |"), "{md}");
        assert!(md.lines().nth(3).unwrap().ends_with("|  |  | 6.00 |"), "{md}");
        assert_eq!(c.to_csv().lines().count(), 3);
    }

    #[test]
    fn default_csv_name_follows_the_reference() {
        assert_eq!(
            default_csv_path(Path::new("/r/6.inference_384x384x160_eval")),
            PathBuf::from("/r/7.analysis_result/mae_384x384x160_eval.csv")
        );
    }
}
