//! Chamber segmentation of one CTA volume: clip and normalize as in training, resize to the
//! network's fixed grid, run the U-Net (cta2mbf's own or the reference's,
//! [`SegmentationNetwork`]), resize the logits back to the CTA grid and take the most likely
//! class per voxel. The last two steps are one CPU pass
//! ([`argmax_of_resized`]), so that a 512×512×300 CTA never holds the eight full-size logit
//! volumes.

use crate::data::{ClipNormalize, volume_to_tensor};
use crate::models::{ReferenceUNet3d, UNet3d};
use crate::ops::{argmax_of_resized, resize_trilinear};
use crate::volume::Volume;
use burn::tensor::{Device, Tensor};

/// A segmentation network run at inference on a fixed grid.
pub trait SegmentationNetwork {
    /// The grid (x, y, z) every input is resampled to.
    fn input_size(&self) -> [usize; 3];
    /// Logits `[batch, classes, x, y, z]` of an input on that grid (dropout off).
    fn logits(&self, x: Tensor<5>) -> Tensor<5>;
}

impl SegmentationNetwork for UNet3d {
    fn input_size(&self) -> [usize; 3] {
        self.config.input_size
    }
    fn logits(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward(x, false)
    }
}

impl SegmentationNetwork for ReferenceUNet3d {
    fn input_size(&self) -> [usize; 3] {
        self.config.input_size
    }
    fn logits(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward(x)
    }
}

/// The label map (`0..classes`, stored as floats) of `cta`, on the CTA's grid and geometry.
pub fn segment_volume(net: &dyn SegmentationNetwork, cta: &Volume, intensity: &ClipNormalize, device: &Device) -> Volume {
    let input = cta.map(|v| intensity.apply(v));
    let x = volume_to_tensor(&[&input], device);
    let logits = net.logits(resize_trilinear(x, net.input_size(), true));
    let [_, classes, sx, sy, sz] = logits.dims();
    let scores = logits.into_data().convert::<f32>().try_into_vec::<f32>().expect("float logits");
    // The same separable resize, in the same axis order, as `UNet3d::forward_resampled`.
    let labels = argmax_of_resized(&scores, [classes, sx, sy, sz], cta.shape(), true);
    Volume::new(labels, cta.geometry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::UNet3dConfig;
    use crate::models::init::Initializer;
    use crate::volume::Geometry;
    use burn::tensor::Int;
    use ndarray::Array3;

    #[test]
    fn labels_are_the_argmax_of_the_resampled_logits() {
        let device = Device::flex();
        let cfg = UNet3dConfig { in_channels: 1, classes: 4, base_n_filter: 2, dropout: 0.0, input_size: [16, 16, 16] };
        let net = cfg.init(&mut Initializer::new(3, &device));
        let data = Array3::from_shape_fn((23, 19, 11), |(i, j, k)| ((i * 7 + j * 13 + k * 29) % 17) as f32 * 60.0 - 300.0);
        let cta = Volume::new(data, Geometry::axial([0.7, 0.8, 2.0], [1.0, 2.0, 3.0]));
        let intensity = ClipNormalize::default();
        let labels = segment_volume(&net, &cta, &intensity, &device);
        assert_eq!(labels.shape(), [23, 19, 11]);
        assert_eq!(labels.geometry, cta.geometry);
        let x = volume_to_tensor(&[&cta.map(|v| intensity.apply(v))], &device);
        let whole: Tensor<5, Int> = net.forward_resampled(x, false).argmax(1);
        let whole: Vec<f32> = whole.into_data().convert::<i64>().try_to_vec::<i64>().unwrap().into_iter().map(|v| v as f32).collect();
        assert_eq!(labels.data.iter().copied().collect::<Vec<_>>(), whole);
    }
}
