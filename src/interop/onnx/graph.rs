//! An ONNX graph being built: nodes in execution order, initializers (`raw_data`,
//! little-endian), typed inputs and outputs with named dynamic axes, and the `ModelProto` around
//! it, encoded with [`crate::io::protobuf`] by the field numbers of `onnx.proto`.

use crate::error::{Error, Result};
use crate::io::protobuf::Message;
use burn::tensor::Tensor;
use std::collections::BTreeSet;

/// IR version of the written models (ONNX 1.12, the release of opset 17).
pub const IR_VERSION: i64 = 8;
/// Operator set of the default domain the graphs use.
pub const OPSET: i64 = 17;

/// `TensorProto.DataType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// 32-bit float.
    Float = 1,
    /// 64-bit signed integer.
    Int64 = 7,
    /// 64-bit float.
    Double = 11,
}

/// One axis of a graph input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// A fixed extent.
    Fixed(usize),
    /// A dynamic extent with this name (`dim_param`).
    Named(&'static str),
}

/// A node attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `INT`.
    Int(i64),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOAT`.
    Float(f32),
    /// `STRING`.
    Str(&'static str),
}

/// A graph under construction. Every value (input, initializer, node output) has a unique
/// name; a node's output is named after the node.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
    inputs: Vec<Message>,
    outputs: Vec<Message>,
    names: BTreeSet<String>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    fn claim(&mut self, name: &str) -> Result<()> {
        if self.names.insert(name.to_string()) { Ok(()) } else { Err(Error::invalid(format!("ONNX graph: the name '{name}' is used twice"))) }
    }

    /// Declare a graph input.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> Result<String> {
        self.claim(name)?;
        self.inputs.push(value_info(name, elem, dims));
        Ok(name.to_string())
    }

    /// Declare `value` (already produced by a node) a graph output.
    pub fn output(&mut self, value: &str, elem: DataType, dims: &[Dim]) {
        self.outputs.push(value_info(value, elem, dims));
    }

    /// A float initializer `name` of shape `dims`.
    pub fn floats(&mut self, name: &str, dims: &[usize], values: &[f32]) -> Result<String> {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len(), "{name}");
        self.claim(name)?;
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, DataType::Float, dims, &raw);
        Ok(name.to_string())
    }

    /// A one-dimensional int64 initializer `name`.
    pub fn ints(&mut self, name: &str, values: &[i64]) -> Result<String> {
        self.claim(name)?;
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, DataType::Int64, &[values.len()], &raw);
        Ok(name.to_string())
    }

    /// A float initializer `name` made once and shared by every later request for the same
    /// name (constants such as a norm's unit scale or the up-sampling factors).
    pub fn shared(&mut self, name: &str, dims: &[usize], values: &[f32]) -> Result<String> {
        if self.names.contains(name) {
            return Ok(name.to_string());
        }
        self.floats(name, dims, values)
    }

    /// A float scalar initializer `name`.
    pub fn scalar(&mut self, name: &str, value: f32) -> Result<String> {
        self.floats(name, &[], &[value])
    }

    /// The values of a network tensor as an initializer `name` of the tensor's shape.
    pub fn tensor<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Result<String> {
        let dims = t.dims();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::invalid(format!("ONNX export: cannot read tensor {name}: {e:?}")))?;
        self.floats(name, &dims, &values)
    }

    fn push_initializer(&mut self, name: &str, elem: DataType, dims: &[usize], raw: &[u8]) {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let t = Message::new().packed_int(1, &dims).int(2, elem as i64).string(8, name).bytes(9, raw);
        self.initializers.push(t);
    }

    /// A node of `op` named `name` on `inputs` (an empty name skips an optional input), whose
    /// one output is named `name`; returns the output's name.
    pub fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> Result<String> {
        self.claim(name)?;
        let mut n = Message::new();
        for i in inputs {
            n = n.string(1, i);
        }
        n = n.string(2, name).string(3, name).string(4, op);
        for (key, value) in attrs {
            n = n.message(5, &attribute(key, value));
        }
        self.nodes.push(n);
        Ok(name.to_string())
    }

    /// The `GraphProto` named `name`.
    pub fn encode(&self, name: &str, doc: &str) -> Message {
        let mut g = Message::new();
        for n in &self.nodes {
            g = g.message(1, n);
        }
        g = g.string(2, name);
        for t in &self.initializers {
            g = g.message(5, t);
        }
        g = g.string(10, doc);
        for i in &self.inputs {
            g = g.message(11, i);
        }
        for o in &self.outputs {
            g = g.message(12, o);
        }
        g
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> Message {
    let mut shape = Message::new();
    for d in dims {
        let dim = match *d {
            Dim::Fixed(n) => Message::new().int(1, n as i64),
            Dim::Named(p) => Message::new().string(2, p),
        };
        shape = shape.message(1, &dim);
    }
    let tensor = Message::new().int(1, elem as i64).message(2, &shape);
    Message::new().string(1, name).message(2, &Message::new().message(1, &tensor))
}

fn attribute(name: &str, value: &Attr) -> Message {
    // AttributeProto: name 1, f 2, i 3, s 4, ints 8, type 20 (FLOAT 1, INT 2, STRING 3, INTS 7).
    let a = Message::new().string(1, name);
    match value {
        Attr::Float(f) => a.float(2, *f).uint(20, 1),
        Attr::Int(i) => a.int(3, *i).uint(20, 2),
        Attr::Str(s) => a.string(4, s).uint(20, 3),
        Attr::Ints(v) => a.packed_int(8, v).uint(20, 7),
    }
}

/// The `ModelProto` of `graph`: IR [`IR_VERSION`], opset [`OPSET`], cta2mbf as producer,
/// `metadata` as `metadata_props`.
pub fn model(graph: &Graph, name: &str, doc: &str, metadata: &[(String, String)]) -> Vec<u8> {
    let opset = Message::new().string(1, "").int(2, OPSET);
    let mut m = Message::new()
        .int(1, IR_VERSION)
        .string(2, "cta2mbf")
        .string(3, env!("CARGO_PKG_VERSION"))
        .string(6, doc)
        .message(7, &graph.encode(name, doc))
        .message(8, &opset);
    for (k, v) in metadata {
        m = m.message(14, &Message::new().string(1, k).string(2, v));
    }
    m.into_bytes()
}
