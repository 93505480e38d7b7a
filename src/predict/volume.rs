//! One forward pass of the generator over a whole volume, in image units.

use crate::data::{IntensityMap, tensor_to_array, volume_to_tensor};
use crate::models::{Generator, NormMode};
use crate::volume::Volume;
use burn::tensor::Device;

/// Predict the target of `src` (whose sizes must be multiples of 8) in norm `mode`, mapping
/// intensities through `intensity`; the result has `src`'s geometry.
///
/// In train mode the generator's running statistics are updated, as PyTorch's would be; run
/// on a copy (`Module::valid`) to leave a model untouched.
pub fn predict_volume(g: &Generator, src: &Volume, mode: NormMode, intensity: &IntensityMap, device: &Device) -> Volume {
    let input = src.map(|v| intensity.src(v));
    let x = volume_to_tensor(&[&input], device);
    let y = g.forward(x, mode);
    let mut out = Volume::new(tensor_to_array(y, 0), src.geometry.clone());
    out.data.mapv_inplace(|v| intensity.dst_inverse(v));
    out
}
