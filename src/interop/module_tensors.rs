//! A Burn module's parameters moved to and from a state dict under a name map (module path ↔
//! stored name): how both reference layouts (the generator's and the segmentation network's)
//! load strictly and export.

use super::state_dict::{StateDict, StoredTensor, StoredValues};
use crate::error::{Error, Result};
use burn::store::ModuleSnapshot;
use burn::store::burn_pack::Tensor as PackTensor;
use std::collections::{BTreeMap, BTreeSet};

/// Set the parameters of `module` from `sd`: each `(module path, stored name)` of `names` must
/// be a float tensor of the parameter's shape, and `sd` may hold nothing else but the
/// `tolerated` names. On a mismatch nothing is applied and the message lists every missing,
/// mis-shaped and unexpected tensor.
pub fn load_named<M: ModuleSnapshot>(
    module: &mut M,
    names: &[(String, String)],
    sd: &StateDict,
    tolerated: &BTreeSet<String>,
) -> std::result::Result<(), String> {
    let shapes: BTreeMap<String, Vec<usize>> = module.collect(None, None, false).into_iter().map(|t| (t.name.clone(), t.shape.to_vec())).collect();
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    let mut tensors = Vec::new();
    for (path, stored) in names {
        let want = shapes.get(path).ok_or_else(|| format!("the network has no parameter {path}"))?;
        match sd.tensors.get(stored) {
            None => missing.push(format!("{stored} {want:?}")),
            Some(t) if &t.shape != want => misshaped.push(format!("{stored} is {:?}, expected {want:?}", t.shape)),
            Some(StoredTensor { values: StoredValues::Int(_), dtype, .. }) => {
                misshaped.push(format!("{stored} has integer type {dtype}, expected a float tensor"))
            }
            Some(t) => tensors.push(t.to_pack(path)),
        }
    }
    let known: BTreeSet<&str> = names.iter().map(|(_, s)| s.as_str()).collect();
    let unexpected: Vec<&str> = sd.tensors.keys().map(String::as_str).filter(|k| !known.contains(k) && !tolerated.contains(*k)).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {}", missing.join(", ")));
    }
    if !misshaped.is_empty() {
        parts.push(format!("wrong shape: {}", misshaped.join("; ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected {}", unexpected.join(", ")));
    }
    if !parts.is_empty() {
        return Err(parts.join("; "));
    }
    let result = module.apply(tensors, None, None, false);
    if !result.is_success() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(format!("cannot load: missing {:?}, unused {:?}, errors {:?}", result.missing, result.unused, result.errors));
    }
    Ok(())
}

/// The parameters of `module` under their stored names (`names`: module path ↔ stored name),
/// with their element types (f32, or i64 for integer buffers).
pub fn state_dict_of<M: ModuleSnapshot>(module: &M, names: &[(String, String)]) -> Result<StateDict> {
    let by_path: BTreeMap<String, PackTensor> = module.collect(None, None, false).into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut sd = StateDict::default();
    for (path, stored) in names {
        let t = by_path.get(path).ok_or_else(|| Error::invalid(format!("the network has no parameter {path}")))?;
        sd.tensors.insert(stored.clone(), StoredTensor::from_pack(t).map_err(Error::invalid)?);
    }
    Ok(sd)
}
