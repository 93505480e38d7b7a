//! Checkpoint interoperability with the reference's PyTorch code: state dicts read from
//! `.pth` and `.safetensors` files, the reference layouts of the generator and of the
//! chamber-segmentation network (architectures inferred from names and shapes), both
//! networks loaded from, and exported to, one file; and the networks exported as ONNX graphs
//! for inference runtimes.

pub mod generator_file;
pub mod generator_layout;
pub mod module_tensors;
pub mod onnx;
pub mod segmentation_file;
pub mod segmentation_layout;
pub mod state_dict;

pub use generator_file::{ExportFormat, GeneratorSettings, SETTINGS_KEY, export_generator, load_generator_file};
pub use generator_layout::{generator_from_state_dict, infer_config, state_dict_from_generator};
pub use segmentation_file::{SegmentationSettings, export_segmentation, load_segmentation_file, segmentation_from_state_dict};
pub use segmentation_layout::{infer_reference_config, is_reference_segmentation, reference_unet_from_state_dict, state_dict_from_reference_unet};
pub use state_dict::{StateDict, StateDictFormat, StoredTensor, StoredValues, sniff_format};
