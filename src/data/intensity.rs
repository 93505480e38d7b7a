//! The intensity mapping between image units (CTA in HU, MBF in ml/100 g/min) and network
//! units: an optional CT window on the input, then linear maps. Saved with the model so
//! inference maps back exactly. The identity (the reference's choice: raw HU in, raw MBF out)
//! is the default; a window and a standardized target (nnU-Net's CT normalization, and the
//! target's mean and standard deviation over the training set) are the usual choice.

use serde::{Deserialize, Serialize};

/// `network = (image − offset) / scale`, for the input and the target separately; the input
/// is first clamped to `src_clip` when set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntensityMap {
    /// CT window: the input is clamped to `[lo, hi]` before the offset and scale.
    pub src_clip: Option<[f32; 2]>,
    /// Subtracted from the input.
    pub src_offset: f32,
    /// Divides the input after the offset.
    pub src_scale: f32,
    /// Subtracted from the target.
    pub dst_offset: f32,
    /// Divides the target after the offset; the prediction is multiplied back.
    pub dst_scale: f32,
    /// Standardize the target: when training starts, `dst_offset` and `dst_scale` are set to
    /// the mean and standard deviation of the training targets inside the loss mask (the
    /// whole volume without a mask); the values used are saved with the run.
    pub dst_standardize: bool,
}

impl Default for IntensityMap {
    fn default() -> Self {
        Self { src_clip: None, src_offset: 0.0, src_scale: 1.0, dst_offset: 0.0, dst_scale: 1.0, dst_standardize: false }
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
        if let Some([lo, hi]) = self.src_clip
            && !(lo.is_finite() && hi.is_finite() && lo < hi)
        {
            return Err(crate::Error::invalid(format!("intensity.src_clip must be an increasing pair of numbers, got [{lo}, {hi}]")));
        }
        Ok(())
    }

    /// Input image value → network input.
    pub fn src(&self, v: f32) -> f32 {
        let v = match self.src_clip {
            Some([lo, hi]) => v.clamp(lo, hi),
            None => v,
        };
        (v - self.src_offset) / self.src_scale
    }

    /// Mean and (population) standard deviation of `values`; `None` when there are fewer
    /// than two or they are all equal. What [`IntensityMap::dst_standardize`] sets.
    pub fn mean_sd(values: impl Iterator<Item = f32>) -> Option<(f32, f32)> {
        let (mut n, mut sum, mut sum2) = (0usize, 0.0f64, 0.0f64);
        for v in values {
            n += 1;
            sum += v as f64;
            sum2 += (v as f64) * (v as f64);
        }
        if n < 2 {
            return None;
        }
        let mean = sum / n as f64;
        let sd = (sum2 / n as f64 - mean * mean).max(0.0).sqrt();
        (sd > 0.0).then_some((mean as f32, sd as f32))
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
    /// Raw HU, as the reference fed its networks: only values outside the range CT stores
    /// (−1024 … 3071) are clamped, so out-of-field padding (−2048, −3024) reads as air; offset
    /// 0, scale 1.
    pub fn raw_hu() -> Self {
        Self { clip: [-1024.0, 3071.0], offset: 0.0, scale: 1.0 }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_clamps_before_the_linear_map_and_the_target_maps_back() {
        let m = IntensityMap { src_clip: Some([-200.0, 600.0]), src_offset: 200.0, src_scale: 400.0, dst_offset: 150.0, dst_scale: 50.0, dst_standardize: false };
        assert_eq!(m.src(-1024.0), -1.0);
        assert_eq!(m.src(1000.0), 1.0);
        assert_eq!(m.src(400.0), 0.5);
        assert_eq!(m.dst_inverse(m.dst(123.0)), 123.0);
        assert!(IntensityMap { src_clip: Some([5.0, 5.0]), ..m }.validate().is_err());
    }

    #[test]
    fn mean_and_sd_of_the_values() {
        let (mean, sd) = IntensityMap::mean_sd([1.0f32, 3.0, 5.0, 7.0].into_iter()).unwrap();
        assert_eq!(mean, 4.0);
        assert!((sd - 5.0f32.sqrt()).abs() < 1e-6);
        assert_eq!(IntensityMap::mean_sd([2.0f32, 2.0].into_iter()), None);
        assert_eq!(IntensityMap::mean_sd(std::iter::once(1.0f32)), None);
    }
}
