//! The chamber-segmentation U-Net as an ONNX graph, with the resampling of
//! [`UNet3d::forward_resampled`] inside it: HU of any size in, clipped and normalized as in
//! training, resized to the network's fixed grid (trilinear, aligned corners), the U-Net, the
//! logits resized back to the input's grid the same way, and their argmax.

use super::graph::{Attr, DataType, Dim, Graph};
use super::layers::{conv, instance_norm, leaky_relu, to_network, upsample_nearest2};
use crate::data::ClipNormalize;
use crate::error::Result;
use crate::models::UNet3d;
use crate::models::norm::NORM_EPS;
use crate::models::unet3d::{LEAKY_SLOPE, LEVELS};

/// Name of the graph's input (CTA, HU).
pub const INPUT: &str = "cta";
/// Name of the logits output, `[batch, classes, x, y, z]`.
pub const LOGITS: &str = "logits";
/// Name of the label output (argmax over the classes, int64), `[batch, x, y, z]`.
pub const LABELS: &str = "labels";

/// `leaky_relu(instance_norm(x))`.
fn norm_act(g: &mut Graph, name: &str, x: &str) -> Result<String> {
    let n = instance_norm(g, &format!("{name}.norm"), x, NORM_EPS)?;
    leaky_relu(g, &format!("{name}.act"), &n, LEAKY_SLOPE)
}

/// `Resize` of `x` to `sizes` (an int64 value of five extents), trilinear with aligned corners.
fn resize_aligned(g: &mut Graph, name: &str, x: &str, sizes: &str) -> Result<String> {
    let attrs = [("mode", Attr::Str("linear")), ("coordinate_transformation_mode", Attr::Str("align_corners"))];
    g.node("Resize", name, &[x, "", "", sizes], &attrs)
}

/// The first two extents of `x` (batch, channels) followed by `spatial`.
fn leading_then(g: &mut Graph, name: &str, x: &str, spatial: &str) -> Result<String> {
    let lead = g.node("Shape", &format!("{name}.leading"), &[x], &[("end", Attr::Int(2))])?;
    g.node("Concat", name, &[&lead, spatial], &[("axis", Attr::Int(0))])
}

/// The U-Net's forward pass (dropout off) on `x`, already on the fixed grid.
fn unet(g: &mut Graph, x: &str, net: &UNet3d) -> Result<String> {
    let mut skips = Vec::with_capacity(LEVELS - 1);
    let mut h = x.to_string();
    for (k, level) in net.context.iter().enumerate() {
        let name = format!("context.{k}");
        let e = conv(g, &format!("{name}.entry"), &h, &level.entry)?;
        let a = norm_act(g, &format!("{name}.pre_a"), &e)?;
        let a = conv(g, &format!("{name}.conv_a"), &a, &level.conv_a)?;
        let b = norm_act(g, &format!("{name}.pre_b"), &a)?;
        let b = conv(g, &format!("{name}.conv_b"), &b, &level.conv_b)?;
        let sum = g.node("Add", &format!("{name}.add"), &[&e, &b], &[])?;
        h = norm_act(g, &format!("{name}.out"), &sum)?;
        if k + 1 < LEVELS {
            skips.push(h.clone());
        }
    }
    let up = upsample_nearest2(g, "bottom_up.up", &h)?;
    let up = conv(g, "bottom_up.conv", &up, &net.bottom_up.conv)?;
    h = norm_act(g, "bottom_up", &up)?;
    let mut supervision: Option<String> = None;
    let mut heads = net.heads.iter().enumerate();
    for (i, level) in net.localization.iter().enumerate() {
        let name = format!("localization.{i}");
        let skip = skips.pop().expect("one skip per localization level");
        let cat = g.node("Concat", &format!("{name}.cat"), &[&h, &skip], &[("axis", Attr::Int(1))])?;
        let f = conv(g, &format!("{name}.conv"), &cat, &level.conv)?;
        let features = norm_act(g, &format!("{name}.conv"), &f)?;
        // Localization indices 1 and 2 are levels 3 and 2: the deep-supervision levels.
        if i == 1 || i == 2 {
            let (j, head) = heads.next().expect("two heads");
            let s = conv(g, &format!("heads.{j}"), &features, head)?;
            supervision = Some(match supervision {
                Some(coarser) => {
                    let up = upsample_nearest2(g, &format!("heads.{j}.coarser_up"), &coarser)?;
                    g.node("Add", &format!("heads.{j}.add"), &[&up, &s], &[])?
                }
                None => s,
            });
        }
        h = conv(g, &format!("{name}.reduce"), &features, &level.reduce)?;
        if let Some(u) = &level.up {
            let up = upsample_nearest2(g, &format!("{name}.up.up"), &h)?;
            let up = conv(g, &format!("{name}.up.conv"), &up, &u.conv)?;
            h = norm_act(g, &format!("{name}.up"), &up)?;
        }
    }
    match supervision {
        Some(s) => {
            let up = upsample_nearest2(g, "heads.up", &s)?;
            g.node("Add", "heads.add", &[&h, &up], &[])
        }
        None => Ok(h),
    }
}

/// The graph of `net` with the input mapping `intensity`: input [`INPUT`] (HU, `[batch, 1, x,
/// y, z]`, any sizes), outputs [`LOGITS`] on the input's grid and [`LABELS`].
pub fn graph(net: &UNet3d, intensity: &ClipNormalize) -> Result<Graph> {
    let mut g = Graph::new();
    let (batch, x, y, z) = (Dim::Named("batch"), Dim::Named("x"), Dim::Named("y"), Dim::Named("z"));
    let cfg = &net.config;
    let input = g.input(INPUT, DataType::Float, &[batch, Dim::Fixed(cfg.in_channels), x, y, z])?;
    let h = to_network(&mut g, &input, Some(intensity.clip), intensity.offset, intensity.scale)?;
    let grid: Vec<i64> = cfg.input_size.iter().map(|&n| n as i64).collect();
    let grid = g.ints("fixed_grid", &grid)?;
    let to_grid = leading_then(&mut g, "to_grid.sizes", &h, &grid)?;
    let h = resize_aligned(&mut g, "to_grid", &h, &to_grid)?;
    let logits = unet(&mut g, &h, net)?;
    let spatial = g.node("Shape", "input_grid", &[&input], &[("start", Attr::Int(2))])?;
    let back = leading_then(&mut g, "to_input.sizes", &logits, &spatial)?;
    let out = resize_aligned(&mut g, LOGITS, &logits, &back)?;
    let labels = g.node("ArgMax", LABELS, &[&out], &[("axis", Attr::Int(1)), ("keepdims", Attr::Int(0))])?;
    g.output(&out, DataType::Float, &[batch, Dim::Fixed(cfg.classes), x, y, z]);
    g.output(&labels, DataType::Int64, &[batch, x, y, z]);
    Ok(g)
}
