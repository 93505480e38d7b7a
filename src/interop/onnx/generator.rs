//! The CTA→MBF generators (ResNet and U-Net) as ONNX graphs, node for node as their
//! `forward` in one norm mode, between the intensity maps: HU in, ml/100 g/min out.

use super::graph::{Attr, DataType, Dim, Graph};
use super::layers::{conv, norm, relu, to_image, to_network, upsample};
use crate::error::Result;
use crate::interop::GeneratorSettings;
use crate::models::conv_norm_relu::ConvNormRelu;
use crate::models::{Generator, NormMode, ResnetGenerator, UnetGenerator};

/// Name of the graph's input (CTA, HU).
pub const INPUT: &str = "cta";
/// Name of the graph's output (MBF, ml/100 g/min).
pub const OUTPUT: &str = "mbf";

/// `relu(norm(conv(x)))`.
fn stage(g: &mut Graph, name: &str, x: &str, s: &ConvNormRelu, mode: NormMode) -> Result<String> {
    let h = conv(g, &format!("{name}.conv"), x, &s.conv)?;
    let h = norm(g, &format!("{name}.norm"), &h, &s.norm, mode)?;
    relu(g, &format!("{name}.relu"), &h)
}

fn resnet(g: &mut Graph, x: &str, net: &ResnetGenerator, mode: NormMode) -> Result<String> {
    let mut h = stage(g, "stem", x, &net.stem, mode)?;
    for (i, s) in net.down.iter().enumerate() {
        h = stage(g, &format!("down.{i}"), &h, s, mode)?;
    }
    for (i, b) in net.blocks.iter().enumerate() {
        let mut f = h.clone();
        for (j, s) in b.stages.iter().enumerate() {
            f = stage(g, &format!("blocks.{i}.stages.{j}"), &f, s, mode)?;
        }
        h = g.node("Add", &format!("blocks.{i}.add"), &[&h, &f], &[])?;
    }
    for (i, u) in net.up.iter().enumerate() {
        let name = format!("up.{i}");
        let up = upsample(g, &format!("{name}.conv"), &h, &u.conv)?;
        let n = norm(g, &format!("{name}.norm"), &up, &u.norm, mode)?;
        h = relu(g, &format!("{name}.relu"), &n)?;
    }
    conv(g, "head", &h, &net.head)
}

fn unet(g: &mut Graph, x: &str, net: &UnetGenerator, mode: NormMode) -> Result<String> {
    let mut skips = Vec::with_capacity(net.encoder.len());
    let mut h = x.to_string();
    for (i, level) in net.encoder.iter().enumerate() {
        for (j, s) in level.iter().enumerate() {
            h = stage(g, &format!("encoder.{i}.{j}"), &h, s, mode)?;
        }
        skips.push(h.clone());
    }
    skips.pop();
    for (i, up) in net.decoder.iter().enumerate() {
        let name = format!("decoder.{i}");
        let skip = skips.pop().expect("one skip per decoder level");
        let u = upsample(g, &format!("{name}.up"), &h, &up.up)?;
        let n = norm(g, &format!("{name}.norm"), &u, &up.norm, mode)?;
        let r = relu(g, &format!("{name}.relu"), &n)?;
        h = g.node("Concat", &format!("{name}.cat"), &[&r, &skip], &[("axis", Attr::Int(1))])?;
        for (j, s) in up.stages.iter().enumerate() {
            h = stage(g, &format!("{name}.stages.{j}"), &h, s, mode)?;
        }
    }
    conv(g, "head", &h, &net.head)
}

/// The graph of `generator` with its normalization in `mode`: input [`INPUT`] (HU,
/// `[1, 1, x, y, z]` in train mode, whose statistics are the volume's own; `[batch, 1, x, y,
/// z]` in eval mode), output [`OUTPUT`] of the same shape, the intensity maps of `settings`
/// at both ends.
pub fn graph(generator: &Generator, settings: &GeneratorSettings, mode: NormMode) -> Result<Graph> {
    let mut g = Graph::new();
    let batch = match mode {
        NormMode::Train => Dim::Fixed(1),
        NormMode::Eval => Dim::Named("batch"),
    };
    let dims = [batch, Dim::Fixed(1), Dim::Named("x"), Dim::Named("y"), Dim::Named("z")];
    let x = g.input(INPUT, DataType::Float, &dims)?;
    let im = &settings.intensity;
    let h = to_network(&mut g, &x, im.src_clip, im.src_offset, im.src_scale)?;
    let y = match generator {
        Generator::Resnet(net) => resnet(&mut g, &h, net, mode)?,
        Generator::Unet(net) => unet(&mut g, &h, net, mode)?,
    };
    let out = to_image(&mut g, &y, im.dst_scale, im.dst_offset, OUTPUT)?;
    g.output(&out, DataType::Float, &dims);
    Ok(g)
}
