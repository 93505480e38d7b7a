//! Learning curves of a generator training run: the held-out myocardium MAE per epoch in
//! each norm mode, read back from the run's `metrics.jsonl` (one JSON object per epoch with
//! `epoch` and `val_train_mode` / `val_eval_mode`, each `null` or holding `mae_mask`).

use crate::error::{Error, Result};
use std::path::Path;

/// File name of a training run's per-epoch log.
pub const METRICS: &str = "metrics.jsonl";

/// The validation entries of a metrics line and the norm mode each was scored in.
const MODES: [(&str, &str); 2] = [("val_train_mode", "train"), ("val_eval_mode", "eval")];

/// One line of a plot: held-out myocardium MAE against epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct LearningCurve {
    /// Legend text: the run's folder name and the norm mode of validation.
    pub label: String,
    /// `(epoch, MAE)`, in the file's order.
    pub points: Vec<(usize, f64)>,
}

/// The curves of the run folder `run_dir`, one per norm mode that has a held-out myocardium
/// MAE in its `metrics.jsonl`. A missing or garbled file, or one without any held-out
/// myocardium MAE (a run without `val_cases` or a mask), is an error naming the file.
pub fn read_learning_curves(run_dir: &Path) -> Result<Vec<LearningCurve>> {
    let path = run_dir.join(METRICS);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let run = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| run_dir.display().to_string());
    let mut points: [Vec<(usize, f64)>; 2] = Default::default();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let garbled = |why: &str| Error::format(&path, format!("line {}: {why}", i + 1));
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| garbled(&format!("not JSON ({e})")))?;
        let epoch = value.get("epoch").and_then(|e| e.as_u64()).ok_or_else(|| garbled("no integer \"epoch\""))?;
        for ((key, _), points) in MODES.iter().zip(&mut points) {
            match value.get(*key).map(|v| (v, v.get("mae_mask"))) {
                None | Some((serde_json::Value::Null, _)) | Some((_, None | Some(serde_json::Value::Null))) => {}
                Some((_, Some(mae))) => {
                    let mae = mae.as_f64().ok_or_else(|| garbled(&format!("\"{key}.mae_mask\" is not a number")))?;
                    points.push((epoch as usize, mae));
                }
            }
        }
    }
    let curves: Vec<LearningCurve> = MODES
        .iter()
        .zip(points)
        .filter(|(_, p)| !p.is_empty())
        .map(|((_, mode), points)| LearningCurve { label: format!("{run}, {mode} norm"), points })
        .collect();
    if curves.is_empty() {
        return Err(Error::format(&path, "no held-out myocardium MAE (val_train_mode/val_eval_mode.mae_mask) in any line: was the run trained with val_cases?"));
    }
    Ok(curves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(lines: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("demo_train");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join(METRICS), lines).unwrap();
        (tmp, run)
    }

    #[test]
    fn reads_one_curve_per_norm_mode() {
        let (_tmp, run) = run_with(concat!(
            r#"{"epoch":1,"lr":0.001,"val_train_mode":{"mae":900.0,"mae_mask":40.5},"val_eval_mode":{"mae":910.0,"mae_mask":42.0}}"#,
            "\n",
            r#"{"epoch":2,"lr":0.001,"val_train_mode":{"mae":800.0,"mae_mask":35.25},"val_eval_mode":{"mae":810.0,"mae_mask":null}}"#,
            "\n\n",
        ));
        let curves = read_learning_curves(&run).unwrap();
        assert_eq!(
            curves,
            vec![
                LearningCurve { label: "demo_train, train norm".into(), points: vec![(1, 40.5), (2, 35.25)] },
                LearningCurve { label: "demo_train, eval norm".into(), points: vec![(1, 42.0)] },
            ]
        );
    }

    #[test]
    fn missing_garbled_or_empty_logs_are_errors_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = read_learning_curves(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(METRICS), "{err}");
        for (lines, why) in [
            ("{\"epoch\":1}\n{\"epoch\":2,", "line 2: not JSON"),
            ("{\"lr\":1}", "line 1: no integer \"epoch\""),
            ("{\"epoch\":1,\"val_eval_mode\":{\"mae_mask\":\"x\"}}", "val_eval_mode.mae_mask\" is not a number"),
            ("{\"epoch\":1,\"val_train_mode\":null,\"val_eval_mode\":null}", "no held-out myocardium MAE"),
        ] {
            let (_tmp, run) = run_with(lines);
            let err = read_learning_curves(&run).unwrap_err().to_string();
            assert!(err.contains(&run.join(METRICS).display().to_string()) && err.contains(why), "{lines}: {err}");
        }
    }
}
