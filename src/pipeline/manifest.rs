//! The per-patient manifest that makes the pipeline resumable: for each finished stage, the
//! settings it ran with and the size and modification time of every input and output file.
//! A stage is up to date when all of them still match; it is recorded only after its outputs
//! are complete (each written atomically), so a killed run leaves the stage unrecorded.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A file's identity for change detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// The path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
}

impl FileStamp {
    /// The stamp of an existing file.
    pub fn of(path: &Path) -> Result<FileStamp> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let mtime_ns = meta.modified().map_err(|e| Error::io(path, e))?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Ok(FileStamp { path: path.to_path_buf(), size: meta.len(), mtime_ns })
    }

    /// Stamps of several files, in the given order.
    pub fn all(paths: &[PathBuf]) -> Result<Vec<FileStamp>> {
        paths.iter().map(|p| FileStamp::of(p)).collect()
    }
}

/// One finished stage of one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The settings the stage ran with (as a string that changes when they do).
    pub settings: String,
    /// Its input files.
    pub inputs: Vec<FileStamp>,
    /// The files it wrote.
    pub outputs: Vec<FileStamp>,
}

/// Every finished stage of one patient, by stage name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Stage name → record.
    pub stages: BTreeMap<String, StageRecord>,
}

impl Manifest {
    /// Read the manifest at `path`; a missing or unreadable one is empty (everything reruns).
    pub fn read(path: &Path) -> Manifest {
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Write atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serialises");
        crate::io::atomic::write_bytes_atomically(path, &bytes)
    }

    /// True when `stage` is recorded with these settings and inputs, and its outputs are unchanged.
    pub fn up_to_date(&self, stage: &str, settings: &str, inputs: &[FileStamp]) -> bool {
        let Some(r) = self.stages.get(stage) else { return false };
        r.settings == settings && r.inputs == inputs && r.outputs.iter().all(|o| FileStamp::of(&o.path).ok().as_ref() == Some(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_input_or_output_or_setting_is_out_of_date() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"in").unwrap();
        std::fs::write(&b, b"out").unwrap();
        let mut m = Manifest::default();
        let inputs = FileStamp::all(&[a.clone()]).unwrap();
        m.stages.insert("s".into(), StageRecord { settings: "x".into(), inputs: inputs.clone(), outputs: FileStamp::all(&[b.clone()]).unwrap() });
        let path = dir.path().join("m.json");
        m.write(&path).unwrap();
        let m = Manifest::read(&path);
        assert!(m.up_to_date("s", "x", &inputs));
        assert!(!m.up_to_date("s", "y", &inputs));
        assert!(!m.up_to_date("t", "x", &inputs));
        std::fs::write(&b, b"changed output").unwrap();
        assert!(!m.up_to_date("s", "x", &inputs));
        std::fs::write(&a, b"changed input").unwrap();
        assert!(!m.up_to_date("s", "x", &FileStamp::all(&[a]).unwrap()));
    }
}
