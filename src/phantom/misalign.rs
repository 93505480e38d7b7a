//! The known misalignment between the CT-perfusion study and the CTA: rigid motion about
//! the heart plus a smooth non-rigid displacement.

use crate::volume::mat3::{self, Mat3, Vec3};
use rand::Rng;
use serde::Serialize;

/// One Gaussian displacement bump of the non-rigid part.
#[derive(Debug, Clone, Serialize)]
pub struct Bump {
    /// Centre, perfusion-world LPS mm.
    pub center: Vec3,
    /// Width (standard deviation), mm.
    pub sigma_mm: f64,
    /// Displacement at the centre, mm.
    pub amplitude_mm: Vec3,
}

/// Maps a perfusion-world point `q` to the CTA-world point showing the same anatomy:
/// `p = R·(q − c) + c + t + Σₖ Aₖ·exp(−|q − μₖ|² / (2σₖ²))`.
///
/// Resampling the perfusion volumes onto the CTA grid needs the inverse (CTA point →
/// perfusion point), which [`Misalignment::inverse`] computes by fixed-point iteration.
#[derive(Debug, Clone, Serialize)]
pub struct Misalignment {
    /// Convention of the parameters, for readers of `phantom_truth.json`.
    pub convention: String,
    /// Unit rotation axis.
    pub rotation_axis: Vec3,
    /// Rotation angle, degrees.
    pub rotation_deg: f64,
    /// Rotation centre `c` (the heart centre), LPS mm.
    pub center: Vec3,
    /// Translation `t`, mm.
    pub translation_mm: Vec3,
    /// The non-rigid bumps.
    pub bumps: Vec<Bump>,
    #[serde(skip)]
    rotation: Mat3,
}

impl Misalignment {
    /// A random misalignment around `center`, `strength` scaling its size (1 = typical:
    /// 2–5° rotation, 6–11 mm translation, 2–4 mm non-rigid bumps).
    pub fn random(rng: &mut impl Rng, center: Vec3, strength: f64) -> Misalignment {
        let unit = |rng: &mut dyn rand::RngCore| {
            let v: Vec3 = [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)];
            mat3::scale(v, 1.0 / mat3::norm(v).max(1e-6))
        };
        let axis = unit(rng);
        let angle = rng.random_range(2.0..5.0) * strength;
        let dir = unit(rng);
        let translation = mat3::scale(dir, rng.random_range(6.0..11.0) * strength);
        let bumps = (0..3)
            .map(|_| Bump {
                center: mat3::add(center, mat3::scale(unit(rng), rng.random_range(0.0..40.0))),
                sigma_mm: rng.random_range(30.0..50.0),
                amplitude_mm: mat3::scale(unit(rng), rng.random_range(2.0..4.0) * strength),
            })
            .collect();
        Self::new(axis, angle, center, translation, bumps)
    }

    /// A misalignment from its parameters.
    pub fn new(rotation_axis: Vec3, rotation_deg: f64, center: Vec3, translation_mm: Vec3, bumps: Vec<Bump>) -> Self {
        Misalignment {
            convention: "p = R(q - center) + center + translation + sum_k amplitude_k * exp(-|q - center_k|^2 / (2 sigma_k^2)) maps a perfusion-world point q (LPS mm) to the CTA-world point p with the same anatomy; R rotates by rotation_deg about rotation_axis".into(),
            rotation_axis,
            rotation_deg,
            center,
            translation_mm,
            bumps,
            rotation: mat3::rotation(rotation_axis, rotation_deg.to_radians()),
        }
    }

    fn displacement(&self, q: Vec3) -> Vec3 {
        let mut d = [0.0; 3];
        for b in &self.bumps {
            let r2 = mat3::dot(mat3::sub(q, b.center), mat3::sub(q, b.center));
            d = mat3::add(d, mat3::scale(b.amplitude_mm, (-r2 / (2.0 * b.sigma_mm * b.sigma_mm)).exp()));
        }
        d
    }

    /// Perfusion-world point → CTA-world point.
    pub fn forward(&self, q: Vec3) -> Vec3 {
        let rigid = mat3::add(mat3::mul_vec(&self.rotation, mat3::sub(q, self.center)), mat3::add(self.center, self.translation_mm));
        mat3::add(rigid, self.displacement(q))
    }

    /// CTA-world point → perfusion-world point (the inverse of [`forward`](Self::forward),
    /// to better than 1e-6 mm for displacement fields as gentle as these).
    pub fn inverse(&self, p: Vec3) -> Vec3 {
        let rt = mat3::transpose(&self.rotation);
        let base = mat3::sub(p, mat3::add(self.center, self.translation_mm));
        let mut q = mat3::add(self.center, mat3::mul_vec(&rt, base));
        for _ in 0..30 {
            let next = mat3::add(self.center, mat3::mul_vec(&rt, mat3::sub(base, self.displacement(q))));
            let step = mat3::norm(mat3::sub(next, q));
            q = next;
            if step < 1e-9 {
                break;
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn inverse_undoes_forward() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let m = Misalignment::random(&mut rng, [10.0, -20.0, 30.0], 1.5);
        for q in [[0.0, 0.0, 0.0], [10.0, -20.0, 30.0], [60.0, 40.0, -80.0]] {
            let back = m.inverse(m.forward(q));
            assert!(mat3::norm(mat3::sub(back, q)) < 1e-6, "{q:?} -> {back:?}");
        }
    }
}
