//! Reading and writing volumes: NIfTI files, DICOM series, and the atomic-write helper every writer uses; the protocol-buffer encoding of TensorBoard and ONNX files.

pub mod atomic;
pub mod dicom;
pub mod gzip;
pub mod lock;
pub mod nifti;
pub mod png;
pub mod protobuf;

pub use atomic::write_atomically;
pub use nifti::{NiftiDtype, NiftiHeaderInfo, NiftiImage, read_nifti, read_nifti_image, write_nifti};
