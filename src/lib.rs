//! # cta2mbf
//!
//! Predicting myocardial blood flow (MBF) from cardiac CT angiography (CTA): the
//! preprocessing stages that turn hospital DICOM into aligned CTA/MBF training pairs, and
//! 3-D networks written natively in [Burn](https://burn.dev).
//!
//! The library is organised like the pipeline; every stage is also a subcommand of the
//! `cta2mbf` binary:
//! - [`volume`]: a 3-D image with ITK-exact world geometry (crop, pad, flip, resample);
//! - [`io`]: NIfTI reading and writing, DICOM series reading and writing, atomic writes;
//! - [`phantom`]: the synthetic cardiac cohort used by tests and the demo;
//! - [`register`]: MIP→CTA registration (affine + B-spline, Mattes MI), applied to AVG and BF;
//! - [`preprocess`]: cohort stages (DICOM sort, extract, convert; chamber segmentation,
//!   connected components, myocardium MBF, heart crop);
//! - [`pipeline`]: every stage from a raw DICOM dump to training pairs, resumable;
//! - [`models`], [`ops`], [`data`]: the networks (CTA→MBF generators, discriminators, the
//!   chamber-segmentation U-Net) in Burn, the 3-D tensor operations Burn lacks, paired datasets
//!   with augmentation and intensity maps;
//! - [`predict`]: one volume through a network in memory (the generator, tiled; the U-Net);
//! - [`train`]: the generator and segmentation training loops, checkpoints, data parallelism;
//! - [`infer`], [`analysis`]: trained networks over folders of cases in train or eval norm
//!   mode, scores, tables, slice maps;
//! - [`interop`]: PyTorch `.pth`, safetensors and burnpack state dicts, one-file export;
//! - [`demo`], [`bench`]: the whole system on a phantom cohort in one call; timings;
//! - [`device`]: choosing the Burn backend (CPU `flex` by default);
//! - [`distributed`]: the processes of an MPI job (training and the pipeline across machines);
//! - [`fuzz`]: the readers of outside files as the fuzzers and the corpus-replay test call them.
//!
//! The design these modules follow is written down in `docs/design.md`.

#![warn(missing_docs)]

pub mod analysis;
pub mod bench;
pub mod cohort;
pub mod config;
pub mod data;
pub mod demo;
pub mod device;
pub mod distributed;
pub mod error;
pub mod fuzz;
pub mod infer;
pub mod interop;
pub mod io;
pub mod models;
pub mod ops;
pub mod phantom;
pub mod pipeline;
pub mod predict;
pub mod preprocess;
pub mod register;
pub mod store;
pub mod train;
pub mod volume;

pub use error::{Error, Result};
pub use volume::{Geometry, Volume};
