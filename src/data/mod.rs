//! Training data: the paired CTA/MBF dataset of a `5.mbf_myocardium` folder, seeded
//! augmentation, and background loading with a bounded prefetch queue.

pub mod augment;
pub mod batch;
pub mod dataset;
pub mod intensity;
pub mod prefetch;

pub use augment::{AugmentConfig, augment, augment_labelled};
pub use batch::{Sample, volume_to_tensor, tensor_to_array};
pub use intensity::{ClipNormalize, IntensityMap};
pub use dataset::{PairPattern, PairedDataset, Pair};
pub use prefetch::Prefetcher;
pub use augment::center;
