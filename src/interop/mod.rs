//! Checkpoint interoperability with the reference's PyTorch code: state dicts read from
//! `.pth` and `.safetensors` files, the generator's reference layout (architecture inferred
//! from names and shapes), and generators loaded from any checkpoint cta2mbf understands;
//! and the networks exported as ONNX graphs for inference runtimes.

pub mod generator_file;
pub mod generator_layout;
pub mod onnx;
pub mod state_dict;

pub use generator_file::{ExportFormat, GeneratorSettings, SETTINGS_KEY, export_generator, load_generator_file};
pub use generator_layout::{generator_from_state_dict, infer_config, state_dict_from_generator};
pub use state_dict::{StateDict, StateDictFormat, StoredTensor, StoredValues, sniff_format};
