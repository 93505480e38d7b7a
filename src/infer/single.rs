//! One case, one file: the generator run on a whole input volume whose prediction keeps the
//! input's grid (`cta2mbf infer --input ... --output ...`).

use crate::predict::{Tiling, fit_to_block, predict_volume};
use super::cohort::TrainedGenerator;
use crate::models::NormMode;
use crate::volume::Volume;
use burn::tensor::Device;

/// Predict `input` in norm `mode`. Without `block`, the volume is padded at its far end
/// (with the model's pad value) up to the next multiple of 8 per axis and the prediction cut
/// back, so the output has exactly the input's grid; with `block`, the input is first
/// centre-cropped or padded to it and the output has the block's grid (the origin follows).
/// In train mode the batch statistics are those of the (padded) volume.
pub fn predict_case(model: &TrainedGenerator, input: &Volume, mode: NormMode, block: Option<[usize; 3]>, device: &Device) -> Volume {
    let input = match block {
        Some(b) => fit_to_block(input, b, Tiling::Centred, model.settings.pad_value),
        None => input.clone(),
    };
    let shape = input.shape();
    let m = model.generator.config().size_multiple();
    let padded = shape.map(|n| n.div_ceil(m) * m);
    let src = if padded == shape { input } else { input.extract([0, 0, 0], padded, model.settings.pad_value) };
    let pred = predict_volume(&model.generator, &src, mode, &model.settings.intensity, device);
    if padded == shape { pred } else { pred.extract([0, 0, 0], shape, 0.0) }
}
