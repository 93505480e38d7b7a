//! Normalized cross-correlation of fixed and moving values, returned as −NCC.

use super::metric::Similarity;

/// The fixed side of NCC: the samples' fixed values.
pub struct Ncc {
    fixed: Vec<f64>,
}

/// Smallest variance product (and moving variance) divided by, against a flat image.
const FLAT: f64 = 1e-12;

impl Ncc {
    /// Prepare for fixed sample values `fixed`.
    pub fn new(fixed: &[f32]) -> Ncc {
        Ncc { fixed: fixed.iter().map(|&f| f as f64).collect() }
    }
}

impl Similarity for Ncc {
    /// −NCC and `∂(−NCC)/∂m` per sample.
    fn cost(&self, sampled: &[Option<f64>], _valid: usize) -> (f64, Vec<f64>) {
        let (mut n, mut sf, mut sm) = (0.0, 0.0, 0.0);
        for (s, &f) in sampled.iter().zip(&self.fixed) {
            if let Some(m) = s {
                n += 1.0;
                sf += f;
                sm += m;
            }
        }
        let (fbar, mbar) = (sf / n, sm / n);
        let (mut sff, mut smm, mut sfm) = (0.0, 0.0, 0.0);
        for (s, &f) in sampled.iter().zip(&self.fixed) {
            if let Some(m) = s {
                sff += (f - fbar) * (f - fbar);
                smm += (m - mbar) * (m - mbar);
                sfm += (f - fbar) * (m - mbar);
            }
        }
        let denom = (sff * smm).sqrt().max(FLAT);
        let ncc = sfm / denom;
        let d = sampled
            .iter()
            .zip(&self.fixed)
            .map(|(s, &f)| match s {
                Some(m) => -((f - fbar) / denom - ncc * (m - mbar) / smm.max(FLAT)),
                None => 0.0,
            })
            .collect();
        (-ncc, d)
    }
}
