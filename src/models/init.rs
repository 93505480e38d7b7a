//! Seeded parameter initialization (docs/design.md §4: conv weights N(0, 0.02), norm weights
//! N(1, 0.02), biases 0), independent of the backend so that the same seed gives the same
//! network on every device.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Standard deviation of the reference's `init_type = normal` (pix2pix `init_gain`).
pub const INIT_GAIN: f64 = 0.02;

/// Draws initial parameter values from one seeded stream.
pub struct Initializer {
    rng: ChaCha8Rng,
    device: Device,
}

impl Initializer {
    /// A stream seeded with `seed`, producing parameters on `device`.
    pub fn new(seed: u64, device: &Device) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), device: device.clone() }
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A parameter of `shape` with values N(`mean`, `std`).
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], mean: f64, std: f64) -> Param<Tensor<D>> {
        let n: usize = shape.iter().product();
        let dist = Normal::new(mean, std).expect("finite standard deviation");
        let values: Vec<f32> = (0..n).map(|_| dist.sample(&mut self.rng) as f32).collect();
        Param::from_data(TensorData::new(values, shape), &self.device)
    }

    /// A parameter of `shape` filled with `value`.
    pub fn constant<const D: usize>(&self, shape: [usize; D], value: f32) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::full(shape, value, &self.device))
    }
}
