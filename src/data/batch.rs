//! One loaded case and the conversion between volumes and `[batch, 1, x, y, z]` tensors.

use crate::volume::Volume;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array3;

/// One case: input, target and optional mask on one grid.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Case identifier.
    pub pid: String,
    /// Network input (CTA, HU).
    pub src: Volume,
    /// Target (MBF).
    pub dst: Volume,
    /// Mask for the masked L1 term.
    pub mask: Option<Volume>,
}

/// Stack volumes of one shape into a `[n, 1, x, y, z]` tensor on `device`.
pub fn volume_to_tensor(volumes: &[&Volume], device: &Device) -> Tensor<5> {
    let shape = volumes[0].shape();
    let mut values = Vec::with_capacity(volumes.len() * shape.iter().product::<usize>());
    for v in volumes {
        assert_eq!(v.shape(), shape, "volumes of one batch must share a shape");
        values.extend(v.data.iter().copied());
    }
    Tensor::from_data(TensorData::new(values, [volumes.len(), 1, shape[0], shape[1], shape[2]]), device)
}

/// Sample `b`, channel 0 of a `[n, c, x, y, z]` tensor as an array.
pub fn tensor_to_array(t: Tensor<5>, b: usize) -> Array3<f32> {
    let [_, _, nx, ny, nz] = t.dims();
    let one = t.slice([b..b + 1, 0..1]);
    let values = one.into_data().try_to_vec::<f32>().expect("float tensor");
    Array3::from_shape_vec((nx, ny, nz), values).expect("shape matches")
}
