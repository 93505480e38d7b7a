//! The losses of docs/design.md §4: L1, masked L1 and the GAN objectives.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use crate::config::GanMode;

/// Added to the mask sum of the masked L1 (the reference's constant).
pub const MASK_EPS: f64 = 1e-6;

/// Mean absolute error over every voxel.
pub fn l1(fake: Tensor<5>, real: Tensor<5>) -> Tensor<1> {
    (fake - real).abs().mean()
}

/// `Σ |fake − real| · m / (Σ m + 1e−6)` for a 0/1 mask `m`.
pub fn masked_l1(fake: Tensor<5>, real: Tensor<5>, mask: Tensor<5>) -> Tensor<1> {
    let num = ((fake - real).abs() * mask.clone()).sum();
    num / (mask.sum().add_scalar(MASK_EPS))
}

/// The GAN loss of discriminator logits against an all-real or all-fake target.
pub fn gan_loss(mode: GanMode, logits: Tensor<5>, target_is_real: bool) -> Tensor<1> {
    let t = if target_is_real { 1.0 } else { 0.0 };
    match mode {
        // BCEWithLogits: max(x, 0) − x·t + log(1 + exp(−|x|)), numerically stable.
        GanMode::Vanilla => {
            let softplus = logits.clone().abs().neg().exp().log1p();
            (relu(logits.clone()) - logits.mul_scalar(t) + softplus).mean()
        }
        GanMode::Lsgan => logits.sub_scalar(t).powi_scalar(2).mean(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t(v: &[f32]) -> Tensor<5> {
        Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex()).reshape([1, 1, v.len(), 1, 1])
    }

    fn scalar(x: Tensor<1>) -> f32 {
        x.into_scalar()
    }

    #[test]
    fn bce_with_logits_matches_torch() {
        // BCEWithLogitsLoss for x = [-2, 0, 3]: mean softplus(-x) against ones = 0.956221,
        // mean softplus(x) against zeros = 1.289554.
        let x = t(&[-2.0, 0.0, 3.0]);
        assert!((scalar(gan_loss(GanMode::Vanilla, x.clone(), true)) - 0.956_220_8).abs() < 1e-5);
        assert!((scalar(gan_loss(GanMode::Vanilla, x.clone(), false)) - 1.289_554_2).abs() < 1e-5);
        // MSE: ((-3)^2 + 1 + 4) / 3 against 1
        assert!((scalar(gan_loss(GanMode::Lsgan, x, true)) - 14.0 / 3.0).abs() < 1e-5);
    }

    #[test]
    fn masked_l1_averages_inside_the_mask() {
        let fake = t(&[1.0, 2.0, 3.0, 4.0]);
        let real = t(&[0.0, 0.0, 0.0, 0.0]);
        let mask = t(&[0.0, 1.0, 1.0, 0.0]);
        assert!((scalar(masked_l1(fake.clone(), real.clone(), mask)) - 2.5).abs() < 1e-5);
        assert!((scalar(l1(fake, real)) - 2.5).abs() < 1e-6);
    }
}
