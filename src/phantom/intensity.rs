//! What each modality shows for each tissue: CTA and perfusion HU, and the BF flow map.

use super::anatomy::{Tissue, TissueClass};
use rand::Rng;
use serde::Serialize;

/// The modalities the phantom renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    /// CT angiogram (HU).
    Cta,
    /// Temporal maximum of the perfusion series: contrast CT at peak enhancement (HU).
    Mip,
    /// Temporal average of the perfusion series: a weaker contrast CT (HU).
    Avg,
    /// Blood-flow map, ml/100 g/min, over the whole field.
    Bf,
}

/// Fraction of the arterial enhancement that myocardium with no flow would show (the
/// blood and extracellular space of the muscle itself).
pub const UPTAKE_AT_ZERO_FLOW: f64 = 0.03;
/// Rise of that fraction per ml/100 g/min of local flow (0.14 more at 250).
pub const UPTAKE_PER_FLOW: f64 = 0.14 / 250.0;

/// CTA attenuation of myocardium perfused at `mbf` ml/100 g/min: 40 HU plus the arterial
/// enhancement (`blood_left_hu` − 40) times the uptake fraction at that flow.
fn myocardium_cta_hu(blood_left_hu: f64, uptake_offset: f64, mbf: f64) -> f64 {
    let uptake = UPTAKE_AT_ZERO_FLOW + UPTAKE_PER_FLOW * mbf + uptake_offset;
    40.0 + (blood_left_hu - 40.0) * uptake
}

/// Per-patient contrast and flow parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Contrast {
    /// CTA attenuation of left-heart and aortic blood, HU.
    pub blood_left_hu: f64,
    /// CTA attenuation of right-heart and pulmonary blood, HU.
    pub blood_right_hu: f64,
    /// Normal myocardial flow, ml/100 g/min (100–250).
    pub mbf_normal: f64,
    /// This patient's deviation from the cohort's uptake fraction (±0.003).
    pub uptake_offset: f64,
    /// CTA attenuation of normally perfused myocardium, HU (about 68–113).
    pub myocardium_hu: f64,
    /// Attenuation of fat, HU.
    pub fat_hu: f64,
    /// Attenuation of lung, HU.
    pub lung_hu: f64,
}

impl Contrast {
    /// Random parameters. Left-heart blood is 380–460 HU (a bolus-tracked scan starts at a
    /// fixed aortic threshold, so the arterial level varies little). The myocardium's
    /// enhancement over 40 HU is a fraction of the arterial enhancement that rises with the
    /// local flow ([`Contrast::myocardium_cta_hu`]: iodine reaches the muscle in proportion
    /// to flow), so normal muscle, the ±6 % flow variation and the defects all show on the
    /// CTA through the flow they carry, as hypo-attenuation does in real first-pass CTA.
    pub fn random(rng: &mut impl Rng) -> Contrast {
        let mbf_normal = rng.random_range(100.0..250.0);
        let blood_left_hu = rng.random_range(380.0..460.0);
        let blood_right_hu = rng.random_range(310.0..420.0);
        let uptake_offset = rng.random_range(-0.003..0.003);
        Contrast {
            blood_left_hu,
            blood_right_hu,
            mbf_normal,
            uptake_offset,
            myocardium_hu: myocardium_cta_hu(blood_left_hu, uptake_offset, mbf_normal),
            fat_hu: rng.random_range(-110.0..-90.0),
            lung_hu: rng.random_range(-870.0..-830.0),
        }
    }

    /// CTA attenuation of this patient's myocardium perfused at `mbf` ml/100 g/min.
    pub fn myocardium_cta_hu(&self, mbf: f64) -> f64 {
        myocardium_cta_hu(self.blood_left_hu, self.uptake_offset, mbf)
    }

    /// The noise-free value of `tissue` in `modality`.
    pub fn value(&self, tissue: &Tissue, modality: Modality) -> f64 {
        use Modality::*;
        use TissueClass::*;
        match (tissue.class, modality) {
            (Air, Bf) => 1.0,
            (Air, _) => -1000.0,
            (Lung, Bf) => 2.0,
            (Lung, _) => self.lung_hu,
            (Fat, Bf) => 4.0,
            (Fat, _) => self.fat_hu,
            (Muscle, Bf) => 15.0,
            (Muscle, _) => 45.0,
            (Bone, Bf) => 8.0,
            (Bone, _) => 450.0,
            (Cortex, Bf) => 6.0,
            (Cortex, _) => 900.0,
            (Wall, Bf) => 0.35 * self.mbf_normal,
            (Wall, Cta) => 70.0,
            (Wall, Mip) => 90.0,
            (Wall, Avg) => 60.0,
            (BloodLeft, Cta) => self.blood_left_hu,
            (BloodRight, Cta) => self.blood_right_hu,
            (BloodLeft, Mip) => self.blood_left_hu + 120.0,
            (BloodRight, Mip) => self.blood_right_hu + 140.0,
            (BloodLeft, Avg) => 0.5 * self.blood_left_hu,
            (BloodRight, Avg) => 0.5 * self.blood_right_hu,
            (BloodLeft | BloodRight, Bf) => 30.0,
            (Myocardium, Cta) => self.myocardium_cta_hu(self.mbf_normal * tissue.flow),
            (Myocardium, Mip) => 60.0 + 0.45 * self.mbf_normal * tissue.flow,
            (Myocardium, Avg) => 45.0 + 0.2 * self.mbf_normal * tissue.flow,
            (Myocardium, Bf) => self.mbf_normal * tissue.flow,
        }
    }
}

/// CTA noise of a clinical scan, HU, at [`CTA_NOISE_VOXEL_MM3`].
pub const CTA_NOISE_CLINICAL_HU: f64 = 25.0;
/// Voxel volume of that clinical scan: 0.4 × 0.4 × 0.5 mm.
pub const CTA_NOISE_VOXEL_MM3: f64 = 0.4 * 0.4 * 0.5;

/// Noise of each modality on voxels of `voxel_mm3`: additive Gaussian HU for CT images,
/// relative for BF. The CTA's noise falls with the square root of the voxel volume, as
/// averaging a clinical scan's independent voxels into coarser ones would: 25 HU at
/// 0.4 × 0.4 × 0.5 mm, about 1.3 HU at the demo's 3.1 mm voxels. The perfusion images
/// keep fixed levels of their own coarser grid.
pub fn noise_sigma(modality: Modality, voxel_mm3: f64) -> f64 {
    match modality {
        Modality::Cta => CTA_NOISE_CLINICAL_HU * (CTA_NOISE_VOXEL_MM3 / voxel_mm3).sqrt(),
        Modality::Mip => 14.0,
        Modality::Avg => 9.0,
        Modality::Bf => 0.06,
    }
}
