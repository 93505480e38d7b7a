//! Tensor operations Burn does not provide in 3-D, written once and shared by the networks
//! (generator up-sampling, the segmentation wrapper, single-channel convolutions at inference).

pub mod argmax_resize;
mod buffer;
pub mod conv_cpu;
pub mod conv_gemm;
pub mod direct_conv;
pub mod resize;

pub use argmax_resize::argmax_of_resized;
pub use resize::{resize_trilinear, upsample_nearest2};
