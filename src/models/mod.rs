//! The networks, written natively in Burn: the normalization layer with an explicit
//! train/eval mode, the CTA→MBF generators (the reference's ResNet and a U-Net), the PatchGAN/pixel discriminators and the
//! chamber-segmentation U-Nets (cta2mbf's own and the reference's).
//!
//! Tensors are `[batch, channel, x, y, z]`, as TorchIO feeds the reference network.

pub mod conv3;
pub mod conv_norm_relu;
pub mod conv_transpose3;
pub mod discriminator;
pub mod generator;
pub mod init;
pub mod norm;
pub mod unet3d;
pub mod unet3d_reference;
pub mod unet_generator;
pub mod upsample;

pub use discriminator::{Discriminator, DiscriminatorConfig, DiscriminatorKind};
pub use generator::{Generator, GeneratorConfig, GeneratorKind, ResnetGenerator, UpsampleKind};
pub use unet_generator::UnetGenerator;
pub use norm::{Norm, NormKind, NormMode};
pub use unet3d::{UNet3d, UNet3dConfig};
pub use unet3d_reference::{ReferenceUNet3d, ReferenceUNet3dConfig};
