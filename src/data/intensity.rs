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

/// The segmentation network's input mapping: clip to `[clip[0], clip[1]]`, then
/// `(v − offset) / scale`. Saved with the model, so that inference maps a CTA exactly as
/// training did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipNormalize {
    /// Lowest and highest value kept (HU); values outside are set to the bound.
    pub clip: [f32; 2],
    /// Subtracted after clipping.
    pub offset: f32,
    /// Divides after the offset.
    pub scale: f32,
}

impl Default for ClipNormalize {
    /// Soft tissue to contrast blood: [−200, 800] HU mapped to about [−1, 1].
    fn default() -> Self {
        Self { clip: [-200.0, 800.0], offset: 300.0, scale: 500.0 }
    }
}

impl ClipNormalize {
    /// Check that the window is ordered and the scale usable.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.clip[0].is_finite() && self.clip[1].is_finite() && self.clip[0] < self.clip[1]) {
            return Err(crate::Error::invalid(format!("intensity.clip must be an increasing pair of numbers, got {:?}", self.clip)));
        }
        if !(self.scale.is_finite() && self.scale != 0.0 && self.offset.is_finite()) {
            return Err(crate::Error::invalid(format!("intensity.scale must be finite and non-zero, got {}", self.scale)));
        }
        Ok(())
    }

    /// Image value → network input.
    pub fn apply(&self, v: f32) -> f32 {
        (v.clamp(self.clip[0], self.clip[1]) - self.offset) / self.scale
    }
}
