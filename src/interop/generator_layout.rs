//! The generator in the reference's PyTorch layout: its architecture read from a state dict's
//! names and shapes, a [`Generator`] built from a state dict, and a state dict made from a
//! [`Generator`] that `load_state_dict(strict=True)` accepts.

use super::module_tensors::{load_named, state_dict_of};
use super::state_dict::{StateDict, StoredTensor};
use crate::error::{Error, Result};
use crate::models::generator::N_DOWNSAMPLING;
use crate::models::init::Initializer;
use crate::models::{Generator, GeneratorConfig, NormKind, UpsampleKind};
use burn::tensor::Device;
use std::collections::BTreeSet;
use std::path::Path;

/// Metadata key of the generator's architecture in an exported file (needed for a U-Net,
/// whose architecture its tensor names do not tell; a ResNet's is also read from its names).
pub const GENERATOR_KEY: &str = "cta2mbf.generator";

/// Suffix of the batch-norm counter PyTorch keeps beside the running statistics.
const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";

/// The batch-norm counter stored beside a running mean.
fn counter_of(name: &str) -> Option<String> {
    name.strip_suffix(".running_mean").map(|p| format!("{p}.{NUM_BATCHES_TRACKED}"))
}

fn shape_of<'a>(sd: &'a StateDict, name: &str) -> Option<&'a [usize]> {
    sd.tensors.get(name).map(|t| t.shape.as_slice())
}

/// The generator architecture a state dict in the reference layout holds: ngf from the first
/// convolution, the number of residual blocks from the `conv_block` entries, the norm kind
/// from the presence of norm parameters, the up-sampling from where the first up-sampling
/// weight sits. `path` names the file in errors.
pub fn infer_config(sd: &StateDict, path: &Path) -> Result<GeneratorConfig> {
    let not_generator = |why: String| Error::format(path, format!("not a cta2mbf/reference generator state dict: {why}"));
    let first = shape_of(sd, "model.0.weight").ok_or_else(|| not_generator(format!("no tensor model.0.weight (found {})", preview_names(sd))))?;
    let ngf = match first {
        [ngf, 1, 7, 7, 7] => *ngf,
        other => return Err(not_generator(format!("model.0.weight has shape {other:?}, expected [ngf, 1, 7, 7, 7]"))),
    };
    let norm = if sd.tensors.contains_key("model.1.weight") || sd.tensors.contains_key("model.1.running_mean") {
        NormKind::Batch
    } else if sd.tensors.contains_key("model.0.bias") {
        NormKind::Instance
    } else {
        NormKind::None
    };
    let first_block = 3 * (N_DOWNSAMPLING + 1);
    let blocks: BTreeSet<usize> = sd
        .tensors
        .keys()
        .filter_map(|k| {
            let rest = k.strip_prefix("model.")?;
            let (i, rest) = rest.split_once('.')?;
            rest.starts_with("conv_block.").then(|| i.parse::<usize>().ok()).flatten()
        })
        .collect();
    let n_blocks = blocks.len();
    if n_blocks == 0 {
        return Err(not_generator("no residual blocks (model.<i>.conv_block.*)".into()));
    }
    let expected: BTreeSet<usize> = (first_block..first_block + n_blocks).collect();
    if blocks != expected {
        return Err(not_generator(format!("residual blocks at model indices {blocks:?}, expected {expected:?}")));
    }
    let up = first_block + n_blocks;
    let d = ngf << N_DOWNSAMPLING;
    let upsample = match (shape_of(sd, &format!("model.{up}.weight")), shape_of(sd, &format!("model.{}.weight", up + 1))) {
        (Some([a, b, 3, 3, 3]), _) if *a == d && *b == d / 2 => UpsampleKind::Transposed,
        (None, Some([a, b, 3, 3, 3])) if *a == d / 2 && *b == d => UpsampleKind::Trilinear,
        _ => {
            return Err(not_generator(format!(
                "no up-sampling weight of [{d}, {}, 3, 3, 3] at model.{up} (transposed conv) or [{}, {d}, 3, 3, 3] at model.{} (trilinear + conv)",
                d / 2,
                d / 2,
                up + 1
            )));
        }
    };
    Ok(GeneratorConfig { kind: crate::models::GeneratorKind::Resnet, ngf, n_blocks, levels: GeneratorConfig::default().levels, norm, upsample })
}

pub(super) fn preview_names(sd: &StateDict) -> String {
    let names: Vec<&str> = sd.tensors.keys().take(4).map(String::as_str).collect();
    if names.is_empty() { "no tensors".into() } else { format!("{}{}", names.join(", "), if sd.tensors.len() > 4 { ", ..." } else { "" }) }
}

/// Build the generator a reference-layout state dict holds, on `device`. Every expected
/// tensor must be present with its shape; anything else is refused, all problems listed in
/// one error. `num_batches_tracked` counters are accepted and ignored.
pub fn generator_from_state_dict(sd: &StateDict, path: &Path, device: &Device) -> Result<Generator> {
    let config = match sd.metadata.get(GENERATOR_KEY) {
        Some(json) => {
            let c: GeneratorConfig = serde_json::from_str(json).map_err(|e| Error::format(path, format!("unreadable {GENERATOR_KEY} metadata: {e}")))?;
            c.validate().map_err(|e| Error::format(path, format!("{GENERATOR_KEY} metadata: {e}")))?;
            // Refused before it is allocated: a described generator must fit in the values the
            // file stores (its tensors must match the architecture's shapes anyway).
            let stored: usize = sd.tensors.values().map(|t| t.shape.iter().product::<usize>()).sum();
            let needed = crate::config::generator::parameter_count(&c);
            if needed > stored.saturating_mul(2).saturating_add(1024) {
                return Err(Error::format(path, format!("{GENERATOR_KEY} metadata describes a generator of about {needed} parameters; the file stores {stored} values")));
            }
            c
        }
        None => infer_config(sd, path)?,
    };
    let mut g = config.init(&mut Initializer::new(0, device));
    let names = g.torch_names();
    let counters: BTreeSet<String> = names.iter().filter_map(|(_, t)| counter_of(t)).collect();
    load_named(&mut g, &names, sd, &counters).map_err(|problems| {
        Error::format(
            path,
            format!("does not match the generator its names describe ({:?}, ngf {}, {} blocks, {} levels, {:?} norm): {problems}", config.kind, config.ngf, config.n_blocks, config.levels, config.norm),
        )
    })?;
    Ok(g)
}

/// The generator's parameters and running statistics under the reference's names, as f32,
/// plus an int64 `num_batches_tracked` (set to `batches_tracked`) for each batch norm, so that
/// PyTorch's `load_state_dict(strict=True)` accepts it.
pub fn state_dict_from_generator(g: &Generator, batches_tracked: i64) -> Result<StateDict> {
    let mut sd = state_dict_of(g, &g.torch_names())?;
    sd.metadata.insert(GENERATOR_KEY.into(), serde_json::to_string(g.config()).expect("config serialises"));
    let counters: Vec<String> = sd.tensors.keys().filter_map(|t| counter_of(t)).collect();
    for name in counters {
        sd.tensors.insert(name, StoredTensor::i64(vec![], vec![batches_tracked]));
    }
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{GeneratorKind, NormMode};
    use burn::tensor::{Distribution, Tensor};

    /// A U-Net has no reference layout: it goes out under its module paths with its
    /// architecture in the metadata, and comes back as the same network.
    #[test]
    fn unet_round_trips_through_a_safetensors_file() {
        let device = Device::flex();
        let cfg = GeneratorConfig { kind: GeneratorKind::Unet, ngf: 4, levels: 3, ..GeneratorConfig::default() };
        let g = cfg.init(&mut Initializer::new(7, &device));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unet.safetensors");
        state_dict_from_generator(&g, 3).unwrap().write_safetensors(&path).unwrap();
        let sd = StateDict::read(&path).unwrap();
        assert!(sd.tensors.contains_key("encoder.0.0.conv.weight") && sd.tensors.contains_key("head.bias"));
        let back = generator_from_state_dict(&sd, &path, &device).unwrap();
        assert_eq!(back.config(), &cfg);
        let x: Tensor<5> = Tensor::random([1, 1, 8, 8, 4], Distribution::Normal(0.0, 1.0), &device);
        for mode in [NormMode::Eval, NormMode::Train] {
            let diff = (g.forward(x.clone(), mode) - back.forward(x.clone(), mode)).abs().max().into_scalar::<f32>();
            assert_eq!(diff, 0.0, "{mode}");
        }
        // Without the architecture in the metadata the names describe no known generator.
        let mut bare = StateDict::read(&path).unwrap();
        bare.metadata.clear();
        let err = generator_from_state_dict(&bare, &path, &device).unwrap_err().to_string();
        assert!(err.contains("model.0.weight"), "{err}");
    }
}
