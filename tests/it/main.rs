//! The integration tests, one binary (Burn and wgpu are linked once): each module checks one
//! command or stage end to end against its reference (SimpleITK, nibabel, pydicom, PyTorch
//! fixtures, the phantom's truth). `common` holds the shared helpers. The binary's global
//! allocator is `fuzz_replay::agreement`'s: the system one, which also watches the allocations
//! of a thread that asks it to.

mod common;
mod checkpoint_interop;
mod cli;
mod connected_sitk;
mod dicom_malicious;
mod dicom_phantom;
mod dicom_real;
mod fuzz_replay;
mod infer;
mod kill_anywhere;
mod mask_qc;
mod mask_import;
#[cfg(feature = "mpi")]
mod mpi;
mod interop;
mod nifti_roundtrip;
mod norm_semantics;
mod onnx_export;
mod phantom;
mod pipeline;
mod pipeline_contract;
mod register;
mod resize_torch;
mod seg_reference;
mod seg_stages;
mod slicemap_page;
mod train;
mod train_seg;
#[cfg(feature = "wgpu")]
mod wgpu_device;
