//! The reference's chamber-segmentation network in its PyTorch layout
//! ([`crate::models::ReferenceUNet3d`]: `conv3d_c1_1.weight`, `norm_lrelu_conv_c2.2.weight`, …,
//! `ds3_1x1_conv3d.weight`; instance norms without affine parameters store nothing): its
//! architecture read from the names and shapes, the network built from a state dict, and a
//! state dict made from the network that `load_state_dict(strict=True)` accepts.
//!
//! Accepted around those names: a `module.` prefix (a model saved from `nn.DataParallel`) and a
//! checkpoint dict holding the state dict under `state_dict` or `model` (its other entries,
//! such as an optimizer's state, are ignored).

use super::generator_layout::preview_names;
use super::module_tensors::{load_named, state_dict_of};
use super::state_dict::StateDict;
use crate::error::{Error, Result};
use crate::models::init::Initializer;
use crate::models::{ReferenceUNet3d, ReferenceUNet3dConfig};
use burn::tensor::Device;
use std::collections::BTreeSet;
use std::path::Path;

/// The first convolution's name: the architecture's input channels and base filters.
const FIRST: &str = "conv3d_c1_1.weight";
/// The final 1³ convolution's name: the classes.
const LAST: &str = "conv3d_l4.weight";
/// Keys a checkpoint dict may hold the state dict under.
const WRAPPERS: [&str; 3] = ["", "state_dict.", "model."];
/// The prefix `nn.DataParallel` adds.
const DATA_PARALLEL: &str = "module.";

/// Where the reference names sit in `sd`: the checkpoint-dict key that scopes them (empty for
/// a bare state dict) and the whole prefix before each name.
fn locate(sd: &StateDict) -> Option<(&'static str, String)> {
    WRAPPERS.iter().find_map(|w| {
        ["", DATA_PARALLEL].iter().map(|p| format!("{w}{p}")).find(|prefix| sd.tensors.contains_key(&format!("{prefix}{FIRST}"))).map(|prefix| (*w, prefix))
    })
}

/// Whether `sd` holds the reference segmentation network's first convolution under one of
/// the accepted prefixes (what tells it from a generator).
pub fn is_reference_segmentation(sd: &StateDict) -> bool {
    locate(sd).is_some()
}

/// The state dict under the reference names alone: the tensors in the located scope with the
/// prefix removed (a tensor in the scope without the prefix keeps its name, and is reported as
/// unexpected). `None` when the first convolution is nowhere.
fn scoped(sd: &StateDict) -> Option<StateDict> {
    let (wrapper, prefix) = locate(sd)?;
    let tensors =
        sd.tensors.iter().filter(|(k, _)| k.starts_with(wrapper)).map(|(k, t)| (k.strip_prefix(prefix.as_str()).unwrap_or(k).to_string(), t.clone())).collect();
    Some(StateDict { tensors, metadata: sd.metadata.clone() })
}

/// The architecture of a state dict in the reference layout, run on `input_size`: input
/// channels and `base_n_filter` from the first convolution (`[b, in, 3, 3, 3]`), classes from
/// the last (`[classes, 2b, 1, 1, 1]`). `path` names the file in errors.
pub fn infer_reference_config(sd: &StateDict, path: &Path, input_size: [usize; 3]) -> Result<ReferenceUNet3dConfig> {
    let sd = scoped(sd).ok_or_else(|| not_segmentation(path, format!("no tensor {FIRST} (found {})", preview_names(sd))))?;
    config_of(&sd, path, input_size)
}

fn not_segmentation(path: &Path, why: String) -> Error {
    Error::format(path, format!("not a reference chamber-segmentation state dict (Modified3DUNet layout): {why}"))
}

fn config_of(sd: &StateDict, path: &Path, input_size: [usize; 3]) -> Result<ReferenceUNet3dConfig> {
    let shape = |name: &str| sd.tensors.get(name).map(|t| t.shape.as_slice());
    let (base_n_filter, in_channels) = match shape(FIRST) {
        Some(&[b, c, 3, 3, 3]) if b > 0 && c > 0 => (b, c),
        other => return Err(not_segmentation(path, format!("{FIRST} has shape {other:?}, expected [base_n_filter, in_channels, 3, 3, 3]"))),
    };
    let classes = match shape(LAST) {
        Some(&[n, c, 1, 1, 1]) if c == 2 * base_n_filter => n,
        other => return Err(not_segmentation(path, format!("{LAST} has shape {other:?}, expected [classes, {}, 1, 1, 1]", 2 * base_n_filter))),
    };
    let config = ReferenceUNet3dConfig { in_channels, classes, base_n_filter, input_size };
    config.validate().map_err(|e| Error::format(path, e.to_string()))?;
    Ok(config)
}

/// Build the network a reference-layout state dict holds, run on `input_size`, on `device`.
/// Every expected tensor must be present with its shape and nothing else may be (all problems
/// listed in one error naming `path`); a file whose values cannot hold the architecture its
/// names describe is refused before the network is allocated.
pub fn reference_unet_from_state_dict(sd: &StateDict, path: &Path, input_size: [usize; 3], device: &Device) -> Result<ReferenceUNet3d> {
    let sd = scoped(sd).ok_or_else(|| not_segmentation(path, format!("no tensor {FIRST} (found {})", preview_names(sd))))?;
    let config = config_of(&sd, path, input_size)?;
    let stored: usize = sd.tensors.values().map(|t| t.shape.iter().product::<usize>()).sum();
    if config.largest_kernel_floats() > stored {
        return Err(Error::format(path, format!("describes a network of base_n_filter {} larger than the {stored} values it stores", config.base_n_filter)));
    }
    let mut net = config.init(&mut Initializer::new(0, device));
    let names = net.torch_names();
    load_named(&mut net, &names, &sd, &BTreeSet::new()).map_err(|problems| {
        Error::format(
            path,
            format!(
                "does not match the reference segmentation network its names describe (in_channels {}, base_n_filter {}, {} classes): {problems}",
                config.in_channels, config.base_n_filter, config.classes
            ),
        )
    })?;
    Ok(net)
}

/// The network's weights under the reference's names, as f32 (no metadata).
pub fn state_dict_from_reference_unet(net: &ReferenceUNet3d) -> Result<StateDict> {
    state_dict_of(net, &net.torch_names())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::StoredTensor;
    use burn::tensor::{Distribution, Tensor};

    fn net(device: &Device) -> ReferenceUNet3d {
        ReferenceUNet3dConfig { in_channels: 1, classes: 4, base_n_filter: 2, input_size: [16, 16, 16] }.init(&mut Initializer::new(5, device))
    }

    #[test]
    fn names_round_trip_with_or_without_wrappers() {
        let device = Device::flex();
        let original = net(&device);
        let sd = state_dict_from_reference_unet(&original).unwrap();
        assert_eq!(sd.tensors.len(), 26);
        assert!(sd.tensors.contains_key("norm_lrelu_upscale_conv_norm_lrelu_l1.3.weight") && sd.tensors.contains_key("lrelu_conv_c1.1.weight"));
        let x: Tensor<5> = Tensor::random([1, 1, 16, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let want = original.forward(x.clone());
        let path = Path::new("wrapped.pth");
        for prefix in ["", "module.", "state_dict.", "model.module."] {
            let mut wrapped = StateDict::default();
            for (k, t) in &sd.tensors {
                wrapped.tensors.insert(format!("{prefix}{k}"), t.clone());
            }
            if prefix.starts_with("model.") {
                wrapped.tensors.insert("optimizer.state.0.exp_avg".into(), StoredTensor::f32(vec![2], vec![0.0; 2]));
            }
            let back = reference_unet_from_state_dict(&wrapped, path, [16, 16, 16], &device).unwrap();
            assert_eq!(back.config, original.config, "{prefix}");
            let diff = (back.forward(x.clone()) - want.clone()).abs().max().into_scalar::<f32>();
            assert_eq!(diff, 0.0, "{prefix}");
        }
    }

    #[test]
    fn problems_are_listed_in_one_error_and_huge_shapes_refused_before_allocating() {
        let device = Device::flex();
        let mut sd = state_dict_from_reference_unet(&net(&device)).unwrap();
        sd.tensors.remove("conv3d_c3.weight");
        sd.tensors.insert("norm_lrelu_conv_c2.2.weight".into(), StoredTensor::f32(vec![4, 4, 3, 3, 1], vec![0.0; 144]));
        sd.tensors.insert("inorm3d_c1.weight".into(), StoredTensor::f32(vec![2], vec![1.0; 2]));
        let err = reference_unet_from_state_dict(&sd, Path::new("bad.pth"), [16, 16, 16], &device).unwrap_err().to_string();
        for needle in [
            "bad.pth",
            "base_n_filter 2, 4 classes",
            "missing conv3d_c3.weight [8, 4, 3, 3, 3]",
            "norm_lrelu_conv_c2.2.weight is [4, 4, 3, 3, 1], expected [4, 4, 3, 3, 3]",
            "unexpected inorm3d_c1.weight",
        ] {
            assert!(err.contains(needle), "'{needle}' not in: {err}");
        }
        let mut huge = StateDict::default();
        huge.tensors.insert(FIRST.into(), StoredTensor::f32(vec![4096, 1, 3, 3, 3], vec![0.0; 4096 * 27]));
        huge.tensors.insert(LAST.into(), StoredTensor::f32(vec![8, 8192, 1, 1, 1], vec![0.0; 8 * 8192]));
        let err = reference_unet_from_state_dict(&huge, Path::new("huge.pth"), [16, 16, 16], &device).unwrap_err().to_string();
        assert!(err.contains("huge.pth") && err.contains("larger than"), "{err}");
    }
}
