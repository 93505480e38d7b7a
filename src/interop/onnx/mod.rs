//! ONNX export of the trained networks, for onnxruntime, TensorRT, OpenVINO and Triton: the
//! generators with the norm mode baked in and the chamber-segmentation U-Net with its
//! resampling, each with the intensity mapping inside the graph (HU in, image units out),
//! named dynamic spatial axes, opset [`OPSET`], and the training settings in
//! `metadata_props` (docs/design.md §8). The protobuf is written by the crate's own encoder
//! ([`crate::io::protobuf`]); the file is written atomically.

pub mod generator;
pub mod graph;
pub mod layers;
pub mod segmentation;

pub use graph::{IR_VERSION, OPSET};

use super::generator_file::{GeneratorSettings, SETTINGS_KEY};
use crate::data::ClipNormalize;
use crate::error::Result;
use crate::io::atomic::write_bytes_atomically;
use crate::models::{Generator, NormMode, UNet3d};
use std::path::Path;

/// Metadata key of the network's architecture (JSON).
pub const NETWORK_KEY: &str = "cta2mbf.network";
/// Metadata key of the norm mode baked into a generator's graph.
pub const NORM_MODE_KEY: &str = "cta2mbf.norm_mode";
/// Metadata key of the segmentation network's CTA mapping (JSON).
pub const INTENSITY_KEY: &str = "cta2mbf.intensity";

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("settings serialize")
}

/// Write `generator` to `out` as an ONNX model whose normalization is in `mode`: eval →
/// `BatchNormalization` with the running statistics (any batch size); train → each channel's
/// mean and biased variance over the volume, computed in the graph (float64 sums, see
/// [`layers`]), with the batch norms' γ and β: batch statistics at batch size 1 (the graph's
/// batch axis is fixed to 1). Input `cta` in HU, output `mbf` in the
/// target's image units, spatial sizes multiples of [`GeneratorConfig::size_multiple`](crate::models::GeneratorConfig::size_multiple).
pub fn write_generator(generator: &Generator, settings: &GeneratorSettings, mode: NormMode, out: &Path) -> Result<()> {
    let g = generator::graph(generator, settings, mode)?;
    let cfg = generator.config();
    let m = cfg.size_multiple();
    let doc = format!(
        "cta2mbf {:?} generator, norm mode {mode}. Input '{}': CTA in HU, [{}, 1, x, y, z], each spatial size a multiple of {m}. \
         Output '{}': MBF in ml/100 g/min, same shape. The intensity mapping is part of the graph.",
        cfg.kind,
        generator::INPUT,
        if mode == NormMode::Train { "1" } else { "batch" },
        generator::OUTPUT,
    );
    let metadata = vec![
        (SETTINGS_KEY.to_string(), json(settings)),
        (NETWORK_KEY.to_string(), json(cfg)),
        (NORM_MODE_KEY.to_string(), mode.to_string()),
    ];
    write_bytes_atomically(out, &graph::model(&g, "cta2mbf_generator", &doc, &metadata))
}

/// Write the segmentation network `net` with its CTA mapping `intensity` to `out` as an ONNX
/// model: input `cta` in HU of any spatial size, outputs `logits` (on the input's grid) and
/// `labels` (their argmax, int64). Its norms are instance norms, the same in either norm mode.
pub fn write_segmentation(net: &UNet3d, intensity: &ClipNormalize, out: &Path) -> Result<()> {
    let g = segmentation::graph(net, intensity)?;
    let cfg = &net.config;
    let [gx, gy, gz] = cfg.input_size;
    let doc = format!(
        "cta2mbf chamber-segmentation U-Net. Input '{}': CTA in HU, [batch, {}, x, y, z], any size; it is clipped to {:?}, \
         normalized and resized to the network's {gx}x{gy}x{gz} grid inside the graph. Outputs '{}': [batch, {}, x, y, z] \
         logits resized back to the input's grid; '{}': their argmax, [batch, x, y, z], int64.",
        segmentation::INPUT,
        cfg.in_channels,
        intensity.clip,
        segmentation::LOGITS,
        cfg.classes,
        segmentation::LABELS,
    );
    let metadata = vec![(NETWORK_KEY.to_string(), json(cfg)), (INTENSITY_KEY.to_string(), json(intensity))];
    write_bytes_atomically(out, &graph::model(&g, "cta2mbf_segmentation", &doc, &metadata))
}
