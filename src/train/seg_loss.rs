//! Segmentation losses (docs/design.md §5): multi-class soft Dice on softmax probabilities, and
//! cross-entropy as an optional extra term. Targets are per-class probabilities
//! `[batch, classes, x, y, z]` (one-hot labels, or their trilinear resampling).

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, softmax};

/// Added to numerator and denominator of each class's Dice, so that a class absent from both
/// prediction and target scores 1 and the gradient stays finite.
pub const DICE_SMOOTH: f64 = 1e-5;

/// `1 − mean_c (2 Σ p_c t_c + s) / (Σ p_c + Σ t_c + s)`, sums over the batch and the grid,
/// `p = softmax(logits)` over the class axis. Classes before `first_class` are left out
/// (1 leaves out the background).
pub fn soft_dice_loss(logits: Tensor<5>, target: Tensor<5>, first_class: usize) -> Tensor<1> {
    let [b, c, nx, ny, nz] = logits.dims();
    assert_eq!(target.dims(), [b, c, nx, ny, nz], "target must have the logits' shape");
    assert!(first_class < c, "no class left to score");
    let probs = softmax(logits, 1);
    // [classes, batch·voxels] so that one sum over dim 1 gives per-class totals.
    let flat = |t: Tensor<5>| t.swap_dims(0, 1).reshape([c, b * nx * ny * nz]).narrow(0, first_class, c - first_class);
    let (p, t) = (flat(probs), flat(target));
    let intersection = (p.clone() * t.clone()).sum_dim(1);
    let total = p.sum_dim(1) + t.sum_dim(1);
    let dice = intersection.mul_scalar(2.0).add_scalar(DICE_SMOOTH) / total.add_scalar(DICE_SMOOTH);
    dice.mean().neg().add_scalar(1.0)
}

/// Mean over voxels of `−Σ_c t_c log softmax(logits)_c`.
pub fn cross_entropy(logits: Tensor<5>, target: Tensor<5>) -> Tensor<1> {
    let [b, _, nx, ny, nz] = logits.dims();
    let voxels = (b * nx * ny * nz) as f64;
    (log_softmax(logits, 1) * target).sum().neg().div_scalar(voxels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t(values: Vec<f32>, c: usize, n: usize) -> Tensor<5> {
        Tensor::<1>::from_data(TensorData::new(values, [c * n]), &Device::flex()).reshape([1, c, n, 1, 1])
    }

    #[test]
    fn dice_of_confident_correct_prediction_is_near_zero_loss() {
        // Two classes over 3 voxels: labels 0, 1, 1; logits strongly favour the truth.
        let target = t(vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0], 2, 3);
        let good = t(vec![20.0, -20.0, -20.0, -20.0, 20.0, 20.0], 2, 3);
        let loss: f32 = soft_dice_loss(good, target.clone(), 0).into_scalar();
        assert!(loss.abs() < 1e-4, "{loss}");
        let bad = t(vec![-20.0, 20.0, 20.0, 20.0, -20.0, -20.0], 2, 3);
        let loss: f32 = soft_dice_loss(bad, target, 0).into_scalar();
        assert!((loss - 1.0).abs() < 1e-4, "{loss}");
    }

    #[test]
    fn dice_matches_hand_computation_for_uniform_probabilities() {
        // Equal logits: p = 0.5 everywhere. Class 1 target [0, 1, 1]: 2·1 / (1.5 + 2) = 4/7.
        let target = t(vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0], 2, 3);
        let logits = t(vec![0.0; 6], 2, 3);
        let loss: f32 = soft_dice_loss(logits.clone(), target.clone(), 1).into_scalar();
        assert!((loss - (1.0 - 4.0 / 7.0)).abs() < 1e-5, "{loss}");
        // Cross-entropy of p = 0.5 is ln 2.
        let ce: f32 = cross_entropy(logits, target).into_scalar();
        assert!((ce - std::f32::consts::LN_2).abs() < 1e-6, "{ce}");
    }
}
