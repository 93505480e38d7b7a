//! The pipeline's outcome per patient and stage, as a table (`ROOT/pipeline_report.md`) and
//! as JSON (`ROOT/pipeline_report.json`).

use super::Stage;
use crate::preprocess::mask_qc::MaskQc;
use std::collections::BTreeMap;
use crate::error::Result;
use serde_json::json;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// Folder of the per-patient manifests under the cohort root.
pub const MANIFEST_FOLDER: &str = "pipeline";
/// The report's file name (without extension) under the cohort root.
pub const REPORT_NAME: &str = "pipeline_report";

/// What happened to one patient's stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// Ran now, in this many seconds, with an optional note (skipped files, warnings).
    Done {
        /// Wall-clock seconds.
        seconds: f64,
        /// Something worth knowing.
        note: Option<String>,
    },
    /// Up to date: same settings, same inputs, outputs untouched.
    Skipped,
    /// Failed with this reason.
    Failed(String),
    /// Ran, but the chamber mask failed quality control for these reasons, so the patient's
    /// later stages do not run (`--accept-qc-failures` lets them).
    QcFailed(String),
    /// Not run because an earlier stage of the patient failed.
    NotRun,
}

impl Outcome {
    /// Whether the stage failed (or its mask failed quality control).
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::QcFailed(_))
    }

    /// Short text for a table cell.
    pub fn cell(&self) -> String {
        match self {
            Outcome::Done { seconds, .. } => format!("done {seconds:.1} s"),
            Outcome::Skipped => "skipped".into(),
            Outcome::Failed(_) => "FAILED".into(),
            Outcome::QcFailed(_) => "QC FAILED".into(),
            Outcome::NotRun => "—".into(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Outcome::Done { seconds, note } => json!({"status": "done", "seconds": seconds, "note": note}),
            Outcome::Skipped => json!({"status": "skipped"}),
            Outcome::Failed(why) => json!({"status": "failed", "reason": why}),
            Outcome::QcFailed(why) => json!({"status": "qc failed", "reason": why}),
            Outcome::NotRun => json!({"status": "not run", "reason": "an earlier stage failed"}),
        }
    }
}

/// Every patient's outcome per stage.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// The stages run, in order.
    pub stages: Vec<Stage>,
    /// `(patient id, one outcome per stage)`.
    pub patients: Vec<(String, Vec<Outcome>)>,
    /// Entries of the input folder that are not patient folders, with the reason.
    pub ignored: Vec<(PathBuf, String)>,
    /// The mask quality-control figures of each patient whose connected mask has them.
    pub qc: BTreeMap<String, MaskQc>,
}

impl PipelineReport {
    /// Patients with a failed stage (quality control included).
    pub fn failed(&self) -> usize {
        self.patients.iter().filter(|(_, o)| o.iter().any(Outcome::is_failure)).count()
    }

    /// `(done, skipped)` stage runs over all patients.
    pub fn counts(&self) -> (usize, usize) {
        let all = self.patients.iter().flat_map(|(_, o)| o);
        let done = all.clone().filter(|x| matches!(x, Outcome::Done { .. })).count();
        (done, all.filter(|x| matches!(x, Outcome::Skipped)).count())
    }

    /// The report as Markdown: the table, then each failure's reason and each note.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| patient |");
        for st in &self.stages {
            let _ = write!(s, " {} |", st.name());
        }
        s.push_str("\n|---|");
        s.push_str(&"---|".repeat(self.stages.len()));
        s.push('\n');
        for (pid, outcomes) in &self.patients {
            let _ = write!(s, "| {pid} |");
            for o in outcomes {
                let _ = write!(s, " {} |", o.cell());
            }
            s.push('\n');
        }
        let mut details = String::new();
        for (pid, outcomes) in &self.patients {
            for (st, o) in self.stages.iter().zip(outcomes) {
                match o {
                    Outcome::Failed(why) => {
                        let _ = writeln!(details, "- {pid} {} FAILED: {why}", st.name());
                    }
                    Outcome::QcFailed(why) => {
                        let _ = writeln!(details, "- {pid} {} QC FAILED: {why}", st.name());
                    }
                    Outcome::Done { note: Some(n), .. } => {
                        let _ = writeln!(details, "- {pid} {}: {n}", st.name());
                    }
                    _ => {}
                }
            }
        }
        for (pid, qc) in &self.qc {
            let _ = writeln!(details, "- {pid} mask: {qc}");
        }
        for (path, why) in &self.ignored {
            let _ = writeln!(details, "- ignored {}: {why}", path.display());
        }
        if !details.is_empty() {
            s.push('\n');
            s.push_str(&details);
        }
        s
    }

    /// The report as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "stages": self.stages.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "patients": self.patients.iter().map(|(pid, o)| json!({
                "pid": pid,
                "stages": self.stages.iter().zip(o).map(|(s, x)| (s.name().to_string(), x.json())).collect::<serde_json::Map<_, _>>(),
                "mask_qc": self.qc.get(pid),
            })).collect::<Vec<_>>(),
            "ignored": self.ignored.iter().map(|(p, why)| json!({"path": p, "reason": why})).collect::<Vec<_>>(),
            "failed_patients": self.failed(),
        })
    }

    /// Write `ROOT/pipeline_report.{json,md}` atomically.
    pub fn write(&self, root: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.json()).expect("report serialises");
        crate::io::atomic::write_bytes_atomically(&root.join(format!("{REPORT_NAME}.json")), &json)?;
        crate::io::atomic::write_bytes_atomically(&root.join(format!("{REPORT_NAME}.md")), self.markdown().as_bytes())
    }
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.markdown())?;
        let (done, skipped) = self.counts();
        write!(f, "\npipeline: {} patients, {done} stage runs done, {skipped} skipped (up to date), {} patients failed", self.patients.len(), self.failed())
    }
}
