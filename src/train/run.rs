//! What every training loop shares about its run folder, its randomness and its optimizer:
//! the `metrics.jsonl` log (one JSON line per finished epoch, trimmed back when a run
//! resumes) and the derivation of per-epoch, per-item random streams from the run seed.

use crate::error::{Error, Result};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// File name of the per-epoch metrics log inside a run folder (defined beside its reader).
pub use crate::analysis::curve::METRICS;

/// Mix the run seed with an epoch and an index into one stream seed.
pub fn stream_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [epoch as u64, index as u64] {
        h = (h ^ v).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    h
}

/// Append one epoch's metrics as a JSON line to `run_dir/metrics.jsonl`.
pub fn append_metrics(run_dir: &Path, metrics: &impl Serialize) -> Result<()> {
    let path = run_dir.join(METRICS);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
    writeln!(f, "{}", serde_json::to_string(metrics).expect("metrics serialize")).map_err(|e| Error::io(&path, e))
}

/// Keep only the `metrics.jsonl` lines of epochs up to `epoch` (the checkpoint resumed from).
pub fn trim_metrics(run_dir: &Path, epoch: usize) -> Result<()> {
    let path = run_dir.join(METRICS);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["epoch"].as_u64()).is_some_and(|e| e as usize <= epoch))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept != text {
        crate::io::atomic::write_bytes_atomically(&path, kept.as_bytes())?;
    }
    Ok(())
}

/// The value of a one-element tensor.
pub fn scalar(t: &burn::tensor::Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}
