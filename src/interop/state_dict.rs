//! A PyTorch-style state dict held in memory: named tensors as `.pth` and `.safetensors` files
//! store them, read from and written to either format.
//!
//! The format of a file is told by its first bytes, not by its extension: a ZIP archive
//! (`torch.save` since PyTorch 1.6) or a pickle stream (older `torch.save`) is a PyTorch file,
//! an 8-byte header length followed by a JSON header is safetensors, the `BURN` magic is
//! Burn's burnpack. Text metadata (cta2mbf writes its training settings there) travels in
//! the safetensors header and the burnpack metadata; `.pth` files carry none.

use crate::error::{Error, Result};
use crate::io::atomic::write_bytes_atomically;
use burn::store::burn_pack::{Bytes, DType as PackDType, Tensor as PackTensor};
use std::collections::BTreeMap;
use std::path::Path;

/// The container formats a state dict can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateDictFormat {
    /// `torch.save` of a state dict (ZIP or legacy pickle).
    Pytorch,
    /// A safetensors file.
    Safetensors,
    /// A Burn burnpack file.
    Burnpack,
}

impl std::fmt::Display for StateDictFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateDictFormat::Pytorch => "PyTorch",
            StateDictFormat::Safetensors => "safetensors",
            StateDictFormat::Burnpack => "burnpack",
        })
    }
}

/// Values of one stored tensor: floating types are widened or narrowed to `f32`, integer
/// types kept as `i64`.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredValues {
    /// A floating-point tensor (stored as f16, bf16, f32 or f64).
    Float(Vec<f32>),
    /// An integer tensor (e.g. batch norm's `num_batches_tracked`).
    Int(Vec<i64>),
}

/// One named tensor of a state dict.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    /// Extents, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// Element type as the file stored it (`F32`, `I64`, ...).
    pub dtype: String,
    /// The values, row-major.
    pub values: StoredValues,
}

impl StoredTensor {
    /// A float32 tensor.
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        Self { shape, dtype: "F32".into(), values: StoredValues::Float(values) }
    }

    /// An int64 tensor.
    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Self {
        Self { shape, dtype: "I64".into(), values: StoredValues::Int(values) }
    }

    /// The values of a burnpack tensor (a module snapshot or a burnpack file's entry), which
    /// must be F32 or I64; the error says what it is otherwise.
    pub fn from_pack(t: &PackTensor) -> std::result::Result<Self, String> {
        let elem = match t.dtype {
            PackDType::F32 => Elem::F32,
            PackDType::I64 => Elem::I64,
            other => return Err(format!("tensor {} has unsupported element type {other:?}", t.name)),
        };
        let bytes = t.to_bytes().map_err(|e| format!("cannot read tensor {}: {e:?}", t.name))?;
        let (dtype, values) = decode(elem, &bytes, true);
        Ok(Self { shape: t.shape.to_vec(), dtype: dtype.into(), values })
    }

    /// This tensor as a burnpack tensor named `name` (F32 or I64).
    pub fn to_pack(&self, name: &str) -> PackTensor {
        let (dtype, bytes) = match &self.values {
            StoredValues::Float(v) => (PackDType::F32, Bytes::from_elems(v.clone())),
            StoredValues::Int(v) => (PackDType::I64, Bytes::from_elems(v.clone())),
        };
        PackTensor::new(name.to_string(), dtype, self.shape.clone(), None, bytes)
    }
}

/// Named tensors in name order, with the file's text metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    /// The tensors by name.
    pub tensors: BTreeMap<String, StoredTensor>,
    /// Text metadata (safetensors `__metadata__`, burnpack metadata; empty for `.pth`).
    pub metadata: BTreeMap<String, String>,
}

/// The format of the file at `path`, from its first bytes; `None` when it is neither.
pub fn sniff_format(path: &Path) -> Result<Option<StateDictFormat>> {
    use std::io::Read;
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    if n >= 4 && u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) == burn::store::burn_pack::MAGIC_NUMBER {
        return Ok(Some(StateDictFormat::Burnpack));
    }
    if n >= 4 && head[..4] == *b"PK\x03\x04" || n >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Ok(Some(StateDictFormat::Pytorch));
    }
    if n == 9 {
        let header = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if header > 1 && header <= len.saturating_sub(8) && head[8] == b'{' {
            return Ok(Some(StateDictFormat::Safetensors));
        }
    }
    Ok(None)
}

/// Element types a stored tensor may have.
#[derive(Debug, Clone, Copy)]
enum Elem {
    F32,
    F64,
    F16,
    Bf16,
    I64,
    I32,
}

/// Decode row-major element bytes (little- or big-endian) into values, with the type's name.
fn decode(elem: Elem, data: &[u8], little: bool) -> (&'static str, StoredValues) {
    fn words<const N: usize>(data: &[u8], little: bool) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(move |b| {
            let mut w: [u8; N] = b.try_into().expect("chunk of N bytes");
            if !little {
                w.reverse();
            }
            w
        })
    }
    use StoredValues::{Float, Int};
    match elem {
        Elem::F32 => ("F32", Float(words::<4>(data, little).map(f32::from_le_bytes).collect())),
        Elem::F64 => ("F64", Float(words::<8>(data, little).map(|w| f64::from_le_bytes(w) as f32).collect())),
        Elem::F16 => ("F16", Float(words::<2>(data, little).map(|w| half::f16::from_le_bytes(w).to_f32()).collect())),
        Elem::Bf16 => ("BF16", Float(words::<2>(data, little).map(|w| half::bf16::from_le_bytes(w).to_f32()).collect())),
        Elem::I64 => ("I64", Int(words::<8>(data, little).map(i64::from_le_bytes).collect())),
        Elem::I32 => ("I32", Int(words::<4>(data, little).map(|w| i32::from_le_bytes(w) as i64).collect())),
    }
}

impl StateDict {
    /// Read a `.pth` or `.safetensors` file, whichever its content is.
    pub fn read(path: &Path) -> Result<StateDict> {
        match sniff_format(path)? {
            Some(StateDictFormat::Pytorch) => Self::read_pytorch(path),
            Some(StateDictFormat::Safetensors) => Self::read_safetensors(path),
            Some(StateDictFormat::Burnpack) => Self::read_burnpack(path),
            None => Err(Error::format(path, "neither a PyTorch state dict (.pth), a safetensors file nor a burnpack file")),
        }
    }

    /// Read the state dict saved by `torch.save(model.state_dict(), path)` (also accepted:
    /// a checkpoint dict holding it under `state_dict`).
    pub fn read_pytorch(path: &Path) -> Result<StateDict> {
        use burn::store::pytorch_reader::{DType, PytorchReader};
        let bad = |e: String| Error::format(path, format!("cannot read as a PyTorch file (truncated or corrupt?): {e}"));
        let reader = PytorchReader::new(path).map_err(|e| bad(e.to_string()))?;
        let reader = if reader.keys().iter().all(|k| k.starts_with("state_dict.")) && !reader.is_empty() {
            PytorchReader::with_top_level_key(path, "state_dict").map_err(|e| bad(e.to_string()))?
        } else {
            reader
        };
        let mut tensors = BTreeMap::new();
        for (name, t) in reader.tensors() {
            let bytes = t.read().map_err(|e| bad(e.to_string()))?;
            let elem = match t.dtype() {
                DType::F32 => Elem::F32,
                DType::F64 => Elem::F64,
                DType::F16 => Elem::F16,
                DType::BF16 => Elem::Bf16,
                DType::I64 => Elem::I64,
                DType::I32 => Elem::I32,
                other => return Err(Error::format(path, format!("tensor {name} has unsupported element type {other:?}"))),
            };
            // The reader hands out native-endian bytes.
            let (dtype, values) = decode(elem, &bytes, cfg!(target_endian = "little"));
            tensors.insert(name.clone(), StoredTensor { shape: t.shape().to_vec(), dtype: dtype.into(), values });
        }
        Ok(StateDict { tensors, metadata: BTreeMap::new() })
    }

    /// Read a safetensors file.
    pub fn read_safetensors(path: &Path) -> Result<StateDict> {
        use safetensors::{Dtype, SafeTensors};
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::format(path, format!("cannot read as safetensors (truncated or corrupt?): {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let elem = match view.dtype() {
                Dtype::F32 => Elem::F32,
                Dtype::F64 => Elem::F64,
                Dtype::F16 => Elem::F16,
                Dtype::BF16 => Elem::Bf16,
                Dtype::I64 => Elem::I64,
                Dtype::I32 => Elem::I32,
                other => return Err(Error::format(path, format!("tensor {name} has unsupported element type {other:?}"))),
            };
            let (dtype, values) = decode(elem, view.data(), true);
            tensors.insert(name, StoredTensor { shape: view.shape().to_vec(), dtype: dtype.into(), values });
        }
        let metadata = SafeTensors::read_metadata(&bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        Ok(StateDict { tensors, metadata })
    }

    /// Read a burnpack file whose tensors carry state-dict names (as `export --format burn`
    /// writes them).
    pub fn read_burnpack(path: &Path) -> Result<StateDict> {
        let bad = |e: String| Error::format(path, format!("cannot read as burnpack (truncated or corrupt?): {e}"));
        let reader = burn::store::burn_pack::Reader::from_file(path).map_err(|e| bad(format!("{e:?}")))?;
        let metadata = reader.metadata().clone();
        let mut tensors = BTreeMap::new();
        for t in reader.into_tensors().map_err(|e| bad(format!("{e:?}")))? {
            let stored = StoredTensor::from_pack(&t).map_err(|e| Error::format(path, e))?;
            tensors.insert(t.name, stored);
        }
        Ok(StateDict { tensors, metadata })
    }

    /// The safetensors encoding of this state dict (float tensors as F32, integer ones as
    /// I64), its metadata in the header.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        let metadata = (!self.metadata.is_empty()).then(|| self.metadata.clone().into_iter().collect::<std::collections::HashMap<_, _>>());
        use safetensors::{Dtype, tensor::TensorView};
        let buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let (dtype, bytes) = match &t.values {
                    StoredValues::Float(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                    StoredValues::Int(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                };
                (name.clone(), dtype, t.shape.clone(), bytes)
            })
            .collect();
        let views = buffers
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v)).map_err(|e| Error::invalid(format!("tensor {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, metadata).map_err(|e| Error::invalid(format!("cannot encode safetensors: {e}")))
    }

    /// Write this state dict as a safetensors file (atomically).
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        write_bytes_atomically(path, &self.to_safetensors_bytes()?)
    }

    /// Write this state dict as a burnpack file (atomically): the same names, shapes and
    /// element types, the metadata as burnpack metadata.
    pub fn write_burnpack(&self, path: &Path) -> Result<()> {
        use burn::store::burn_pack::Writer;
        let tensors = self.tensors.iter().map(|(name, t)| t.to_pack(name)).collect();
        let mut writer = Writer::new(tensors);
        for (k, v) in &self.metadata {
            writer = writer.with_metadata(k, v);
        }
        let bytes = writer.into_bytes().map_err(|e| Error::invalid(format!("cannot encode burnpack: {e:?}")))?;
        write_bytes_atomically(path, &bytes)
    }
}
