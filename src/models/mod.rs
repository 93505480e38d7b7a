//! The networks, written natively in Burn: the normalization layer with an explicit
//! train/eval mode, the CTA→MBF ResNet generator and the PatchGAN/pixel discriminators.
//!
//! Tensors are `[batch, channel, x, y, z]`, as TorchIO feeds the reference network.

pub mod discriminator;
pub mod generator;
pub mod init;
pub mod layers;
pub mod norm;

pub use discriminator::{Discriminator, DiscriminatorConfig, DiscriminatorKind};
pub use generator::{Generator, GeneratorConfig, UpsampleKind};
pub use norm::{Norm, NormKind, NormMode};
