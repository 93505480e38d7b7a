//! Tensor operations Burn does not provide in 3-D, written once and shared by the networks
//! (generator up-sampling, the segmentation wrapper, single-channel convolutions at inference).

pub mod argmax_resize;
mod buffer;
pub mod conv_cpu;
pub mod conv_gemm;
pub mod direct_conv;
pub mod direct_weight_grad;
pub mod resize;
pub mod simd;

pub use argmax_resize::argmax_of_resized;
pub use resize::{resize_trilinear, upsample_nearest2};

/// Deterministic test values shared by the kernels' tests.
#[cfg(test)]
pub(crate) mod test_data {
    /// `n` values in [−0.5, 0.5) from a linear congruential generator seeded by `seed`.
    pub fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }
}
