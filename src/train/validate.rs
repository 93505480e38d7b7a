//! Held-out evaluation during training: each validation case centred in the training crop, or
//! covered by overlapping windows of it (`sliding_window`),
//! predicted in both norm modes, scored by MAE over the block and inside the mask.

use crate::data::{Pair, Sample};
use crate::error::Result;
use crate::predict::{fit_to_block, predict_tiled};
use crate::models::{Generator, NormMode};
use crate::train::TrainConfig;
use burn::tensor::Device;
use serde::Serialize;

/// Scores of one case in one norm mode, in image units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CaseMetrics {
    /// Mean |prediction − target| over the block.
    pub mae: f64,
    /// The same inside the mask (`mask == mask_label`), when there is a mask.
    pub mae_mask: Option<f64>,
}

/// MAE over the block and inside `mask == label`.
pub fn score(pred: &ndarray::Array3<f32>, target: &ndarray::Array3<f32>, mask: Option<(&ndarray::Array3<f32>, f32)>) -> CaseMetrics {
    let n = pred.len() as f64;
    let mae = pred.iter().zip(target).map(|(p, t)| (p - t).abs() as f64).sum::<f64>() / n;
    let mae_mask = mask.and_then(|(m, label)| {
        let (mut sum, mut count) = (0.0, 0usize);
        for ((p, t), &v) in pred.iter().zip(target).zip(m) {
            if v == label {
                sum += (p - t).abs() as f64;
                count += 1;
            }
        }
        (count > 0).then(|| sum / count as f64)
    });
    CaseMetrics { mae, mae_mask }
}

/// Evaluate `g` (on a plain, non-autodiff device) on one case in `modes`, in the given order.
/// Train-mode passes update the running statistics of `g`, so pass a copy.
pub fn evaluate_case(g: &Generator, pair: &Pair, cfg: &TrainConfig, modes: &[NormMode], device: &Device) -> Result<Vec<CaseMetrics>> {
    let tiling = cfg.tiling();
    let s = pair.load()?;
    let fit = |v: &crate::volume::Volume, pad: f32| fit_to_block(v, cfg.crop_size, tiling, pad);
    let pad = cfg.augment.pad_value;
    let sample = Sample { src: fit(&s.src, pad), dst: fit(&s.dst, pad), mask: s.mask.as_ref().map(|m| fit(m, 0.0)), pid: s.pid };
    let label = cfg.mask_label as f32;
    Ok(modes
        .iter()
        .map(|&mode| {
            let pred = predict_tiled(g, &sample.src, cfg.crop_size, tiling, mode, &cfg.intensity, device);
            score(&pred.data, &sample.dst.data, sample.mask.as_ref().map(|m| (&m.data, label)))
        })
        .collect())
}
