//! The linear intensity mapping between image units (CTA in HU, MBF in ml/100 g/min) and
//! network units. Saved with the model so inference maps back exactly. The identity (the
//! reference's choice: raw HU in, raw MBF out) is the default.

use serde::{Deserialize, Serialize};

/// `network = (image − offset) / scale`, for the input and the target separately.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntensityMap {
    /// Subtracted from the input.
    pub src_offset: f32,
    /// Divides the input after the offset.
    pub src_scale: f32,
    /// Subtracted from the target.
    pub dst_offset: f32,
    /// Divides the target after the offset; the prediction is multiplied back.
    pub dst_scale: f32,
}

impl Default for IntensityMap {
    fn default() -> Self {
        Self { src_offset: 0.0, src_scale: 1.0, dst_offset: 0.0, dst_scale: 1.0 }
    }
}

impl IntensityMap {
    /// Check that the scales are usable.
    pub fn validate(&self) -> crate::Result<()> {
        for (name, s) in [("src_scale", self.src_scale), ("dst_scale", self.dst_scale)] {
            if !(s.is_finite() && s != 0.0) {
                return Err(crate::Error::invalid(format!("intensity.{name} must be finite and non-zero, got {s}")));
            }
        }
        Ok(())
    }

    /// Input image value → network input.
    pub fn src(&self, v: f32) -> f32 {
        (v - self.src_offset) / self.src_scale
    }

    /// Target image value → network target.
    pub fn dst(&self, v: f32) -> f32 {
        (v - self.dst_offset) / self.dst_scale
    }

    /// Network output → target image units.
    pub fn dst_inverse(&self, v: f32) -> f32 {
        v * self.dst_scale + self.dst_offset
    }
}
