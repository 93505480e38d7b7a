//! NIfTI-1 single-file images (`.nii`, `.nii.gz`) with ITK's geometry rules.
//!
//! Reading follows ITK 5.4 (SimpleITK) exactly: spacing is `pixdim[1..=3]`; the rotation
//! and origin come from the sform when `sform_code` is 1 (scanner), or when it is set and
//! there is no qform; otherwise from the qform when `qform_code > 0`; otherwise identity
//! direction at origin 0. NIfTI's RAS+ world is turned into ITK's LPS. Writing stores the
//! same geometry in both sform and qform, with code 1, so every reader agrees.

use crate::error::{Error, Result};
use crate::io::atomic::write_atomically;
use crate::io::gzip::write_gzip_parallel;
use crate::volume::mat3::{self, Mat3, Vec3};
use crate::volume::{Geometry, Volume};
use ndarray::Array3;
use nifti::{Endianness, NiftiHeader};
use rayon::prelude::*;
use std::io::{Read, Write};
use std::path::Path;

/// Voxel datatypes cta2mbf reads (all of them) and writes (`U8`, `I16`, `F32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NiftiDtype {
    /// unsigned 8-bit (NIfTI code 2)
    U8,
    /// signed 8-bit (256)
    I8,
    /// signed 16-bit (4)
    I16,
    /// unsigned 16-bit (512)
    U16,
    /// signed 32-bit (8)
    I32,
    /// 32-bit float (16)
    F32,
    /// 64-bit float (64)
    F64,
}

impl NiftiDtype {
    /// The NIfTI `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            NiftiDtype::U8 => 2,
            NiftiDtype::I8 => 256,
            NiftiDtype::I16 => 4,
            NiftiDtype::U16 => 512,
            NiftiDtype::I32 => 8,
            NiftiDtype::F32 => 16,
            NiftiDtype::F64 => 64,
        }
    }

    /// The datatype of a NIfTI code, if supported.
    pub fn from_code(code: i16) -> Option<Self> {
        [Self::U8, Self::I8, Self::I16, Self::U16, Self::I32, Self::F32, Self::F64]
            .into_iter()
            .find(|d| d.code() == code)
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            NiftiDtype::U8 | NiftiDtype::I8 => 1,
            NiftiDtype::I16 | NiftiDtype::U16 => 2,
            NiftiDtype::I32 | NiftiDtype::F32 => 4,
            NiftiDtype::F64 => 8,
        }
    }

    /// Lower-case name as numpy spells it (`uint8`, `int16`, `float32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            NiftiDtype::U8 => "uint8",
            NiftiDtype::I8 => "int8",
            NiftiDtype::I16 => "int16",
            NiftiDtype::U16 => "uint16",
            NiftiDtype::I32 => "int32",
            NiftiDtype::F32 => "float32",
            NiftiDtype::F64 => "float64",
        }
    }

    /// The datatype of a numpy-style name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::U8, Self::I8, Self::I16, Self::U16, Self::I32, Self::F32, Self::F64]
            .into_iter()
            .find(|d| d.name() == name)
    }

    fn range(self) -> (f64, f64) {
        match self {
            NiftiDtype::U8 => (0.0, 255.0),
            NiftiDtype::I8 => (-128.0, 127.0),
            NiftiDtype::I16 => (-32768.0, 32767.0),
            NiftiDtype::U16 => (0.0, 65535.0),
            NiftiDtype::I32 => (i32::MIN as f64, i32::MAX as f64),
            NiftiDtype::F32 | NiftiDtype::F64 => (f64::NEG_INFINITY, f64::INFINITY),
        }
    }
}

/// The header fields cta2mbf uses, from a NIfTI-1 or a NIfTI-2 header.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeaderInfo {
    /// 1 for NIfTI-1 (348-byte header), 2 for NIfTI-2 (540 bytes).
    pub version: u8,
    /// Sizes of dimensions 1..=dim\[0\].
    pub dim: Vec<usize>,
    /// NIfTI datatype code.
    pub datatype: i16,
    /// `pixdim[0..8]` (`pixdim[0]` is qfac).
    pub pixdim: [f64; 8],
    /// Byte offset of the voxel data.
    pub vox_offset: f64,
    /// Value scaling slope (0 or NaN: none).
    pub scl_slope: f64,
    /// Value scaling intercept.
    pub scl_inter: f64,
    /// qform code (0: no qform).
    pub qform_code: i32,
    /// sform code (0: no sform).
    pub sform_code: i32,
    /// Quaternion b, c, d.
    pub quatern: [f64; 3],
    /// qform offset x, y, z (RAS mm).
    pub qoffset: [f64; 3],
    /// sform rows x, y, z.
    pub srow: [[f64; 4]; 3],
    /// Byte order of the file.
    pub little_endian: bool,
}

impl NiftiHeaderInfo {
    fn from_nifti1(h: &NiftiHeader) -> Self {
        let ndim = (h.dim[0] as usize).min(7);
        NiftiHeaderInfo {
            version: 1,
            dim: (1..=ndim).map(|a| h.dim[a] as usize).collect(),
            datatype: h.datatype,
            pixdim: h.pixdim.map(|v| v as f64),
            vox_offset: h.vox_offset as f64,
            scl_slope: h.scl_slope as f64,
            scl_inter: h.scl_inter as f64,
            qform_code: h.qform_code as i32,
            sform_code: h.sform_code as i32,
            quatern: [h.quatern_b, h.quatern_c, h.quatern_d].map(|v| v as f64),
            qoffset: [h.quatern_x, h.quatern_y, h.quatern_z].map(|v| v as f64),
            srow: [h.srow_x, h.srow_y, h.srow_z].map(|r| r.map(|v| v as f64)),
            little_endian: h.endianness == Endianness::Little,
        }
    }

    /// Parse a NIfTI-2 header (540 bytes, magic "n+2"); `bytes` holds at least 540 bytes.
    fn from_nifti2(path: &Path, bytes: &[u8], little_endian: bool) -> Result<Self> {
        macro_rules! at {
            ($t:ty, $o:expr) => {{
                let a: [u8; std::mem::size_of::<$t>()] = bytes[$o..$o + std::mem::size_of::<$t>()].try_into().unwrap();
                if little_endian { <$t>::from_le_bytes(a) } else { <$t>::from_be_bytes(a) }
            }};
        }
        let i64_at = |o: usize| at!(i64, o);
        let f64_at = |o: usize| at!(f64, o);
        if &bytes[4..7] != b"n+2" {
            return Err(Error::format(path, "bad NIfTI-2 magic (expected \"n+2\"; separate .hdr/.img pairs are not supported)"));
        }
        let ndim = i64_at(16);
        if !(1..=7).contains(&ndim) {
            return Err(Error::format(path, format!("invalid number of dimensions dim[0] = {ndim}")));
        }
        let mut dim = Vec::new();
        for a in 1..=ndim as usize {
            let d = i64_at(16 + 8 * a);
            if d < 0 {
                return Err(Error::format(path, format!("negative dimension dim[{a}] = {d}")));
            }
            dim.push(d as usize);
        }
        let vox_offset = i64_at(168);
        Ok(NiftiHeaderInfo {
            version: 2,
            dim,
            datatype: at!(i16, 12),
            pixdim: [0, 1, 2, 3, 4, 5, 6, 7].map(|i| f64_at(104 + 8 * i)),
            vox_offset: vox_offset as f64,
            scl_slope: f64_at(176),
            scl_inter: f64_at(184),
            qform_code: at!(i32, 344),
            sform_code: at!(i32, 348),
            quatern: [f64_at(352), f64_at(360), f64_at(368)],
            qoffset: [f64_at(376), f64_at(384), f64_at(392)],
            srow: [0, 1, 2].map(|r| [0, 1, 2, 3].map(|c| f64_at(400 + 32 * r + 8 * c))),
            little_endian,
        })
    }
}

/// A NIfTI file as read: its volumes (scaling applied), the stored datatype and the header.
#[derive(Debug, Clone)]
pub struct NiftiImage {
    /// Voxel values (after `scl_slope`/`scl_inter`) and ITK geometry: one volume for a 3-D
    /// file, one per frame (dims 4–7 flattened) for a 4-D or higher file.
    pub volumes: Vec<Volume>,
    /// The datatype stored in the file.
    pub dtype: NiftiDtype,
    /// The header fields that matter.
    pub header: NiftiHeaderInfo,
}

/// Read a 3-D `.nii` or `.nii.gz` file into a [`Volume`] (a file with several frames is an error).
pub fn read_nifti(path: impl AsRef<Path>) -> Result<Volume> {
    let path = path.as_ref();
    let mut image = read_nifti_image(path)?;
    if image.volumes.len() != 1 {
        return Err(Error::format(
            path,
            format!("has {} dimensions {:?}; a 3-D volume is needed here", image.header.dim.len(), image.header.dim),
        ));
    }
    Ok(image.volumes.remove(0))
}

/// Read a `.nii` or `.nii.gz` file of any dimensionality, keeping its datatype and header.
pub fn read_nifti_image(path: impl AsRef<Path>) -> Result<NiftiImage> {
    let path = path.as_ref();
    if path.is_dir() {
        return Err(Error::format(path, "is a directory, not a NIfTI file"));
    }
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) { gunzip_bounded(path, &raw)? } else { raw };
    parse(path, &bytes)
}

/// Decompress a `.nii.gz` no further than its header says the image needs: the header is read
/// first, and a header claiming more data than the compressed file could hold
/// ([`super::gzip::inflated_capacity`]) is refused before anything large is allocated (a gzip bomb stops there).
fn gunzip_bounded(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |e: std::io::Error| Error::format(path, format!("corrupt or truncated gzip data ({e})"));
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    let mut out = Vec::new();
    (&mut decoder).take(540).read_to_end(&mut out).map_err(corrupt)?;
    let layout = layout(path, &out)?;
    let total = layout.offset.checked_add(layout.need).ok_or_else(|| Error::format(path, "the header's data size overflows"))?;
    if total > super::gzip::inflated_capacity(raw.len()) {
        return Err(Error::format(
            path,
            format!("the header claims {total} bytes of image data (dims {:?}), more than a {}-byte gzip file can hold", layout.header.dim, raw.len()),
        ));
    }
    (&mut decoder).take(total.saturating_sub(out.len()) as u64).read_to_end(&mut out).map_err(corrupt)?;
    Ok(out)
}

/// Where a file's voxels are, from its header alone: the header, the grid and frame count,
/// the datatype, the data's byte offset and length (sizes checked against overflow).
struct Layout {
    header: NiftiHeaderInfo,
    shape: [usize; 3],
    dtype: NiftiDtype,
    offset: usize,
    count: usize,
    need: usize,
}

fn layout(path: &Path, bytes: &[u8]) -> Result<Layout> {
    if bytes.len() < 348 {
        return Err(Error::format(
            path,
            format!("too short for a NIfTI header ({} bytes, need 348)", bytes.len()),
        ));
    }
    let size_le = i32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let size_be = i32::from_be_bytes(bytes[0..4].try_into().unwrap());
    let header = if size_le == 540 || size_be == 540 {
        if bytes.len() < 540 {
            return Err(Error::format(path, format!("too short for a NIfTI-2 header ({} bytes, need 540)", bytes.len())));
        }
        NiftiHeaderInfo::from_nifti2(path, bytes, size_le == 540)?
    } else if size_le == 348 || size_be == 348 {
        match &bytes[344..348] {
            b"n+1\0" => {}
            b"ni1\0" => {
                return Err(Error::format(
                    path,
                    "is the header of a .hdr/.img pair; only single-file .nii/.nii.gz is supported",
                ));
            }
            m => return Err(Error::format(path, format!("bad NIfTI magic {:?} (expected \"n+1\")", String::from_utf8_lossy(m)))),
        }
        let h = NiftiHeader::from_reader(bytes)
            .map_err(|e| Error::format(path, format!("unreadable NIfTI header ({e})")))?;
        if !(1..=7).contains(&h.dim[0]) {
            return Err(Error::format(path, format!("invalid number of dimensions dim[0] = {}", h.dim[0])));
        }
        NiftiHeaderInfo::from_nifti1(&h)
    } else {
        return Err(Error::format(path, "not a NIfTI file (header size field is neither 348 nor 540)"));
    };
    let ndim = header.dim.len();
    let dim = |a: usize| if a <= ndim { header.dim[a - 1] } else { 1 };
    let shape = [dim(1), dim(2), dim(3)];
    if header.dim.contains(&0) {
        return Err(Error::format(path, format!("a dimension is zero: {:?}", header.dim)));
    }
    let frames = (4..=ndim).try_fold(1usize, |n, a| n.checked_mul(dim(a))).ok_or_else(|| Error::format(path, format!("dims {:?} overflow any addressable size", header.dim)))?;
    let dtype = NiftiDtype::from_code(header.datatype).ok_or_else(|| {
        Error::format(path, format!("unsupported NIfTI datatype code {}", header.datatype))
    })?;
    let offset = header.vox_offset as usize;
    let min_offset = if header.version == 1 { 348.0 } else { 540.0 };
    if header.vox_offset < min_offset || header.vox_offset.fract() != 0.0 {
        return Err(Error::format(path, format!("invalid vox_offset {}", header.vox_offset)));
    }
    let overflow = || Error::format(path, format!("dims {:?} of {} overflow any addressable size", header.dim, dtype.name()));
    let count = shape[0].checked_mul(shape[1]).and_then(|n| n.checked_mul(shape[2])).ok_or_else(overflow)?;
    let need = count.checked_mul(frames).and_then(|n| n.checked_mul(dtype.size())).ok_or_else(overflow)?;
    if offset.checked_add(need).is_none() {
        return Err(overflow());
    }
    Ok(Layout { header, shape, dtype, offset, count, need })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<NiftiImage> {
    let Layout { header, shape, dtype, offset, count, need } = layout(path, bytes)?;
    if bytes.len() - offset.min(bytes.len()) < need {
        return Err(Error::format(
            path,
            format!(
                "data size mismatch: dims {:?} of {} need {} bytes after offset {}, the file has {}",
                header.dim,
                dtype.name(),
                need,
                offset,
                bytes.len().saturating_sub(offset)
            ),
        ));
    }
    let geometry = geometry_from_header(&header);
    check_geometry(path, &geometry, &header)?;
    let (slope, inter) = (header.scl_slope, header.scl_inter);
    let scale = (slope != 0.0 && slope.is_finite() && (slope != 1.0 || inter != 0.0)).then_some((slope, if inter.is_finite() { inter } else { 0.0 }));
    let volumes = bytes[offset..offset + need]
        .chunks_exact(count * dtype.size())
        .map(|frame| Volume::new(decode_frame(frame, shape, dtype, header.little_endian, scale), geometry))
        .collect();
    Ok(NiftiImage { volumes, dtype, header })
}

/// One frame of voxels stored x fastest (NIfTI order) as cta2mbf's standard-layout `[x, y, z]`
/// array, each value read as `dtype` in the file's byte order and, when `scale` is given,
/// mapped to `v * slope + intercept` (computed in f64).
fn decode_frame(frame: &[u8], shape: [usize; 3], dtype: NiftiDtype, le: bool, scale: Option<(f64, f64)>) -> Array3<f32> {
    macro_rules! conv {
        ($t:ty) => {
            decode_as(frame, shape, |b| {
                let v = if le { <$t>::from_le_bytes(b) } else { <$t>::from_be_bytes(b) };
                match scale {
                    Some((slope, inter)) => (v as f64 * slope + inter) as f32,
                    None => v as f32,
                }
            })
        };
    }
    match dtype {
        NiftiDtype::U8 => conv!(u8),
        NiftiDtype::I8 => conv!(i8),
        NiftiDtype::I16 => conv!(i16),
        NiftiDtype::U16 => conv!(u16),
        NiftiDtype::I32 => conv!(i32),
        NiftiDtype::F32 => conv!(f32),
        NiftiDtype::F64 => conv!(f64),
    }
}

/// [`decode_frame`] with the value decoder `value`: the inverse of [`encode_as`], in parallel
/// slabs of x (contiguous in the output) and tiles of y rows.
fn decode_as<const W: usize>(frame: &[u8], [nx, ny, nz]: [usize; 3], value: impl Fn([u8; W]) -> f32 + Sync) -> Array3<f32> {
    let mut out = vec![0f32; nx * ny * nz];
    let x_slab = nx.div_ceil(4 * rayon::current_num_threads()).max(1);
    out.par_chunks_mut(x_slab * ny * nz).enumerate().for_each(|(slab, chunk)| {
        let x0 = slab * x_slab;
        let width = chunk.len() / (ny * nz);
        for y0 in (0..ny).step_by(Y_TILE) {
            for z in 0..nz {
                for y in y0..(y0 + Y_TILE).min(ny) {
                    let row = &frame[((z * ny + y) * nx + x0) * W..][..width * W];
                    for (dx, b) in row.chunks_exact(W).enumerate() {
                        chunk[(dx * ny + y) * nz + z] = value(b.try_into().unwrap());
                    }
                }
            }
        }
    });
    Array3::from_shape_vec([nx, ny, nz], out).expect("length is the product of the shape")
}

/// RAS ↔ LPS: negate the first two world axes.
fn flip_xy_rows(m: &Mat3) -> Mat3 {
    [m[0].map(|v| -v), m[1].map(|v| -v), m[2]]
}

fn spacing_from_pixdim(h: &NiftiHeaderInfo) -> Vec3 {
    [1, 2, 3].map(|a| {
        let v = h.pixdim[a].abs();
        if v > 0.0 && v.is_finite() { v } else { 1.0 }
    })
}

/// Normalised columns of `m` (a column of zeros becomes the unit axis).
fn normalize_columns(m: &Mat3) -> Mat3 {
    let mut out = *m;
    for c in 0..3 {
        let n = mat3::norm(mat3::column(m, c));
        for r in 0..3 {
            out[r][c] = if n > 0.0 { m[r][c] / n } else if r == c { 1.0 } else { 0.0 };
        }
    }
    out
}

/// Refuse a geometry that cannot place voxels in the world and back: a non-finite origin or
/// direction, or direction columns that are (nearly) parallel, as in an sform whose columns
/// repeat (the determinant of the unit-column direction is below 1e-3, an angle of about 0.06°).
fn check_geometry(path: &Path, geometry: &Geometry, header: &NiftiHeaderInfo) -> Result<()> {
    let source = if header.sform_code > 0 && (header.sform_code == 1 || header.qform_code <= 0) { "sform" } else { "qform" };
    if geometry.origin.iter().chain(geometry.direction.iter().flatten()).any(|v| !v.is_finite()) {
        return Err(Error::format(path, format!("the header's {source} holds a non-finite value: the voxels have no position")));
    }
    let det = mat3::det(&geometry.direction);
    if det.abs() < 1e-3 {
        return Err(Error::format(
            path,
            format!("the header's {source} has (nearly) parallel axes: its direction matrix is singular (determinant {det:.1e}), so the voxels have no position"),
        ));
    }
    Ok(())
}

/// The ITK geometry of a NIfTI header (see the module documentation for the rules).
pub fn geometry_from_header(h: &NiftiHeaderInfo) -> Geometry {
    let spacing = spacing_from_pixdim(h);
    let use_sform = h.sform_code > 0 && (h.sform_code == 1 || h.qform_code <= 0);
    if use_sform {
        let m = [0, 1, 2].map(|r| [h.srow[r][0], h.srow[r][1], h.srow[r][2]]);
        let o = [h.srow[0][3], h.srow[1][3], h.srow[2][3]];
        return Geometry { spacing, origin: [-o[0], -o[1], o[2]], direction: flip_xy_rows(&normalize_columns(&m)) };
    }
    if h.qform_code > 0 {
        let [b, c, d] = h.quatern;
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let mut r = quaternion_to_rotation(b, c, d);
        for row in r.iter_mut() {
            row[2] *= qfac;
        }
        let o = h.qoffset;
        return Geometry { spacing, origin: [-o[0], -o[1], o[2]], direction: flip_xy_rows(&r) };
    }
    Geometry { spacing, origin: [0.0; 3], direction: mat3::IDENTITY }
}

fn quaternion_to_rotation(b: f64, c: f64, d: f64) -> Mat3 {
    let s = b * b + c * c + d * d;
    let (a, b, c, d) = if 1.0 - s < 1e-7 {
        let n = s.sqrt();
        (0.0, b / n, c / n, d / n)
    } else {
        ((1.0 - s).sqrt(), b, c, d)
    };
    [
        [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
        [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
        [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ]
}

/// Quaternion (b, c, d) and qfac of an orthonormal matrix (NIfTI-1 convention).
fn rotation_to_quaternion(m: &Mat3) -> ([f64; 3], f64) {
    let mut r = *m;
    let qfac = if mat3::det(&r) < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (mut a, mut b, mut c, mut d);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a;
        c = 0.25 * (r[0][2] - r[2][0]) / a;
        d = 0.25 * (r[1][0] - r[0][1]) / a;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r[0][1] + r[1][0]) / b;
            d = 0.25 * (r[0][2] + r[2][0]) / b;
            a = 0.25 * (r[2][1] - r[1][2]) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r[0][1] + r[1][0]) / c;
            d = 0.25 * (r[1][2] + r[2][1]) / c;
            a = 0.25 * (r[0][2] - r[2][0]) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r[0][2] + r[2][0]) / d;
            c = 0.25 * (r[1][2] + r[2][1]) / d;
            a = 0.25 * (r[1][0] - r[0][1]) / d;
        }
        if a < 0.0 {
            b = -b;
            c = -c;
            d = -d;
            a = -a;
        }
    }
    let _ = a;
    ([b, c, d], qfac)
}

/// A header describing `geometry` (sform and qform both code 1, units mm).
fn header_for(geometry: &Geometry) -> NiftiHeader {
    let mut h = NiftiHeader::default();
    let ras = flip_xy_rows(&geometry.direction);
    let origin_ras = [-geometry.origin[0], -geometry.origin[1], geometry.origin[2]];
    let ([qb, qc, qd], qfac) = rotation_to_quaternion(&ras);
    h.pixdim = [qfac as f32, geometry.spacing[0] as f32, geometry.spacing[1] as f32, geometry.spacing[2] as f32, 0.0, 0.0, 0.0, 0.0];
    h.xyzt_units = 2; // millimetres
    h.qform_code = 1;
    h.sform_code = 1;
    h.quatern_b = qb as f32;
    h.quatern_c = qc as f32;
    h.quatern_d = qd as f32;
    h.quatern_x = origin_ras[0] as f32;
    h.quatern_y = origin_ras[1] as f32;
    h.quatern_z = origin_ras[2] as f32;
    let row = |r: usize| {
        [
            (ras[r][0] * geometry.spacing[0]) as f32,
            (ras[r][1] * geometry.spacing[1]) as f32,
            (ras[r][2] * geometry.spacing[2]) as f32,
            origin_ras[r] as f32,
        ]
    };
    h.srow_x = row(0);
    h.srow_y = row(1);
    h.srow_z = row(2);
    let mut descrip = b"cta2mbf".to_vec();
    descrip.resize(80, 0);
    h.descrip = descrip;
    h
}

/// The voxels of `volume` in memory order (z fastest), copied only if its array is not in
/// standard layout.
fn voxels(volume: &Volume) -> std::borrow::Cow<'_, [f32]> {
    match volume.data.as_slice() {
        Some(values) => values.into(),
        None => volume.data.iter().copied().collect::<Vec<_>>().into(),
    }
}

/// The smallest lossless storage type of `volume` among those [`write_nifti`] offers:
/// int16 when every value is an integer in its range, float32 otherwise.
pub fn lossless_dtype(volume: &Volume) -> NiftiDtype {
    // In that range, `v as i32` is exact for integers and truncates anything else; NaN fails.
    let fits = |v: &f32| (-32768.0..=32767.0).contains(v) && (*v as i32) as f32 == *v;
    let int16 = voxels(volume).par_chunks(1 << 16).all(|c| c.iter().all(fits));
    if int16 { NiftiDtype::I16 } else { NiftiDtype::F32 }
}

/// Write `volume` to `path` (`.nii` or `.nii.gz`) as `dtype` (`U8`, `I16` or `F32`), atomically.
///
/// Integer outputs are rounded to nearest; a value that does not fit the integer type, or
/// is not finite, is an error and nothing is written.
pub fn write_nifti(path: impl AsRef<Path>, volume: &Volume, dtype: NiftiDtype) -> Result<()> {
    let path = path.as_ref();
    let name = path.to_string_lossy();
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        return Err(Error::format(path, "output name must end in .nii or .nii.gz"));
    }
    if !matches!(dtype, NiftiDtype::U8 | NiftiDtype::I16 | NiftiDtype::F32) {
        return Err(Error::format(path, format!("cannot write {} (uint8, int16 or float32 only)", dtype.name())));
    }
    let (lo, hi) = dtype.range();
    // Every f32, NaN and infinities included, is storable as float32.
    // round(v) lies in [lo, hi] exactly when v lies in (lo - 0.5, hi + 0.5); NaN fails too.
    let unstorable = |v: &f32| !((*v as f64) > lo - 0.5 && (*v as f64) < hi + 0.5);
    let values = voxels(volume);
    let bad = match dtype {
        NiftiDtype::F32 => None,
        _ => values.par_chunks(1 << 16).find_map_first(|c| c.iter().copied().find(|v| unstorable(v))),
    };
    if let Some(bad) = bad {
        return Err(Error::format(path, format!("value {bad} cannot be stored as {}", dtype.name())));
    }
    let mut header = header_for(&volume.geometry);
    let [nx, ny, nz] = volume.shape();
    if nx * ny * nz == 0 {
        return Err(Error::format(path, format!("cannot write an empty {nx}x{ny}x{nz} volume")));
    }
    if [nx, ny, nz].iter().any(|&n| n > i16::MAX as usize) {
        return Err(Error::format(path, format!("a {nx}x{ny}x{nz} grid does not fit NIfTI-1 (at most 32767 voxels per axis)")));
    }
    header.dim = [3, nx as u16, ny as u16, nz as u16, 1, 1, 1, 1];
    header.datatype = dtype.code();
    header.bitpix = 8 * dtype.size() as i16;
    header.scl_slope = 1.0;
    header.magic = *b"n+1\0";
    let bytes = encode_voxels(&encode_header(&header), volume, dtype);
    let gzip = name.ends_with(".gz");
    write_atomically(path, |tmp| {
        let file = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        let written = if gzip { write_gzip_parallel(std::io::BufWriter::new(file), &bytes, 1) } else { (&file).write_all(&bytes) };
        written.map_err(|e| Error::io(tmp, e))
    })
}

/// The 348-byte NIfTI-1 header of `h` in little-endian order, followed by the four zero bytes
/// that say "no extensions": the 352 bytes before the voxels of a single-file `.nii`.
fn encode_header(h: &NiftiHeader) -> [u8; 352] {
    let mut out = [0u8; 352];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        out[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    put(&h.sizeof_hdr.to_le_bytes());
    put(&h.data_type);
    put(&h.db_name);
    put(&h.extents.to_le_bytes());
    put(&h.session_error.to_le_bytes());
    put(&[h.regular, h.dim_info]);
    h.dim.iter().for_each(|d| put(&d.to_le_bytes()));
    [h.intent_p1, h.intent_p2, h.intent_p3].iter().for_each(|f| put(&f.to_le_bytes()));
    [h.intent_code, h.datatype, h.bitpix, h.slice_start].iter().for_each(|i| put(&i.to_le_bytes()));
    h.pixdim.iter().chain(&[h.vox_offset, h.scl_slope, h.scl_inter]).for_each(|f| put(&f.to_le_bytes()));
    put(&h.slice_end.to_le_bytes());
    put(&[h.slice_code, h.xyzt_units]);
    [h.cal_max, h.cal_min, h.slice_duration, h.toffset].iter().for_each(|f| put(&f.to_le_bytes()));
    [h.glmax, h.glmin].iter().for_each(|i| put(&i.to_le_bytes()));
    let mut descrip = [0u8; 80];
    descrip.iter_mut().zip(&h.descrip).for_each(|(d, s)| *d = *s);
    put(&descrip);
    put(&h.aux_file);
    [h.qform_code, h.sform_code].iter().for_each(|i| put(&i.to_le_bytes()));
    [h.quatern_b, h.quatern_c, h.quatern_d, h.quatern_x, h.quatern_y, h.quatern_z]
        .iter()
        .chain(&h.srow_x)
        .chain(&h.srow_y)
        .chain(&h.srow_z)
        .for_each(|f| put(&f.to_le_bytes()));
    put(&h.intent_name);
    put(&h.magic);
    debug_assert_eq!(at, 348);
    out
}

/// Rows (y) handled together, so that each output plane's part of them is a page or two.
const Y_TILE: usize = 4;

/// `v + ½·sign(v)`, exact in f64. Cast to an integer type, which truncates toward zero, it
/// is `v` rounded to nearest with halves away from zero, as `f32::round` rounds, without a
/// libm call per voxel.
fn plus_half_away(v: f32) -> f64 {
    v as f64 + 0.5f64.copysign(v as f64)
}

/// `prefix` followed by the voxels of `volume` as little-endian `dtype` values in NIfTI order
/// (x varies fastest). Values were checked to fit `dtype`.
fn encode_voxels(prefix: &[u8], volume: &Volume, dtype: NiftiDtype) -> Vec<u8> {
    match dtype {
        NiftiDtype::U8 => encode_as(prefix, volume, |v| [plus_half_away(v) as u8]),
        NiftiDtype::I16 => encode_as(prefix, volume, |v| (plus_half_away(v) as i16).to_le_bytes()),
        _ => encode_as(prefix, volume, f32::to_le_bytes),
    }
}

/// [`encode_voxels`] with the value encoder `encode`, converted in parallel slabs of z planes.
fn encode_as<const W: usize>(prefix: &[u8], volume: &Volume, encode: impl Fn(f32) -> [u8; W] + Sync) -> Vec<u8> {
    let [nx, ny, nz] = volume.shape();
    let plane = nx * ny * W;
    let data = voxels(volume);
    let mut out = vec![0u8; prefix.len() + plane * nz];
    out[..prefix.len()].copy_from_slice(prefix);
    // A few slabs per thread; each reads long runs of z (contiguous) from every column.
    let z_slab = nz.div_ceil(4 * rayon::current_num_threads()).max(1);
    out[prefix.len()..].par_chunks_mut(plane * z_slab).enumerate().for_each(|(slab, chunk)| {
        let z0 = slab * z_slab;
        let depth = chunk.len() / plane;
        for y0 in (0..ny).step_by(Y_TILE) {
            for x in 0..nx {
                for y in y0..(y0 + Y_TILE).min(ny) {
                    let column = &data[(x * ny + y) * nz + z0..][..depth];
                    let at = (y * nx + x) * W;
                    for (dz, &v) in column.iter().enumerate() {
                        chunk[dz * plane + at..][..W].copy_from_slice(&encode(v));
                    }
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternion_round_trip_covers_all_branches() {
        let mats = [
            mat3::IDENTITY,
            mat3::rotation([0.2, 0.9, -0.4], 2.9),
            mat3::rotation([1.0, 0.0, 0.0], std::f64::consts::PI),
            mat3::rotation([0.0, 1.0, 0.0], std::f64::consts::PI),
            mat3::rotation([0.0, 0.0, 1.0], std::f64::consts::PI),
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]],
        ];
        for m in mats {
            let ([b, c, d], qfac) = rotation_to_quaternion(&m);
            let mut r = quaternion_to_rotation(b, c, d);
            for row in r.iter_mut() {
                row[2] *= qfac;
            }
            for i in 0..3 {
                for j in 0..3 {
                    assert!((r[i][j] - m[i][j]).abs() < 1e-9, "{m:?} -> {r:?}");
                }
            }
        }
    }

    /// The same file through the `nifti` crate's writer: the reference for the bytes.
    fn written_by_nifti_crate(path: &Path, volume: &Volume, dtype: NiftiDtype) {
        let header = header_for(&volume.geometry);
        let options = nifti::writer::WriterOptions::new(path).reference_header(&header);
        match dtype {
            NiftiDtype::U8 => options.write_nifti(&volume.data.mapv(|v| v.round() as u8)),
            NiftiDtype::I16 => options.write_nifti(&volume.data.mapv(|v| v.round() as i16)),
            _ => options.write_nifti(&volume.data),
        }
        .unwrap();
    }

    #[test]
    fn files_are_byte_for_byte_those_of_the_nifti_crate() {
        let dir = tempfile::tempdir().unwrap();
        let geometry = Geometry { spacing: [0.7, 0.8, 2.5], origin: [-30.0, 12.5, -140.0], direction: mat3::rotation([0.3, -0.2, 0.9], 0.7) };
        // Quarter steps, so halves (rounded away from zero) and negatives occur.
        // 37 z planes: more than two slabs, the last one short; x, y and z all different.
        let mut volume = Volume::filled([5, 3, 37], 0.0, geometry);
        volume.data.indexed_iter_mut().for_each(|((x, y, z), v)| *v = (x as f32 * 100.0 + y as f32 * 10.0 + z as f32) * 0.25 - 40.5);
        for dtype in [NiftiDtype::U8, NiftiDtype::I16, NiftiDtype::F32] {
            let v = if dtype == NiftiDtype::U8 { volume.map(|x| x.abs()) } else { volume.clone() };
            let (ours, theirs) = (dir.path().join("ours.nii"), dir.path().join("theirs.nii"));
            write_nifti(&ours, &v, dtype).unwrap();
            written_by_nifti_crate(&theirs, &v, dtype);
            assert_eq!(std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap(), "{dtype:?}");
            // The gzip file holds the same bytes.
            let gz = dir.path().join("ours.nii.gz");
            write_nifti(&gz, &v, dtype).unwrap();
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()).read_to_end(&mut inflated).unwrap();
            assert_eq!(inflated, std::fs::read(&ours).unwrap(), "{dtype:?} gz");
        }
    }

    #[test]
    fn a_value_out_of_range_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut volume = Volume::filled([4, 4, 4], 1.0, Geometry::axial([1.0; 3], [0.0; 3]));
        let path = dir.path().join("v.nii.gz");
        // Rounded to nearest, halves away from zero: 32767.49 fits int16, 32767.5 does not.
        for (value, dtype, fits) in [(32767.49, NiftiDtype::I16, true), (32767.5, NiftiDtype::I16, false), (-32768.5, NiftiDtype::I16, false), (-0.49, NiftiDtype::U8, true), (-0.5, NiftiDtype::U8, false), (f32::NAN, NiftiDtype::I16, false), (f32::INFINITY, NiftiDtype::F32, true)] {
            volume.data[[3, 2, 1]] = value;
            let result = write_nifti(&path, &volume, dtype);
            assert_eq!(result.is_ok(), fits, "{value} as {dtype:?}");
            if let Err(e) = result {
                assert!(e.to_string().contains(dtype.name()), "{e}");
                assert!(!path.exists());
            }
            let _ = std::fs::remove_file(&path);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_volume_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.nii");
        let err = write_nifti(&path, &Volume::filled([4, 0, 3], 0.0, Geometry::default()), NiftiDtype::F32).unwrap_err().to_string();
        assert!(err.contains("empty 4x0x3"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn a_singular_sform_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parallel.nii");
        write_nifti(&path, &Volume::filled([4, 4, 4], 1.0, Geometry::axial([0.8, 0.8, 2.0], [1.0, 2.0, 3.0])), NiftiDtype::I16).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // srow_x/y/z start at bytes 280, 296, 312: make the second column equal the first.
        for row in [280, 296, 312] {
            let first: [u8; 4] = bytes[row..row + 4].try_into().unwrap();
            bytes[row + 4..row + 8].copy_from_slice(&first);
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = read_nifti(&path).unwrap_err().to_string();
        assert!(err.contains("parallel.nii") && err.contains("sform has (nearly) parallel axes"), "{err}");
        // A NaN in the sform is refused too.
        bytes[292..296].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_nifti(&path).unwrap_err().to_string();
        assert!(err.contains("non-finite"), "{err}");
    }

    /// A small int16 file's bytes with dims patched to `dims` (NIfTI-1 `dim[1..=3]`).
    fn claiming(dims: [i16; 3]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.nii");
        write_nifti(&path, &Volume::filled([4, 4, 4], 1.0, Geometry::default()), NiftiDtype::I16).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        for (a, d) in dims.iter().enumerate() {
            bytes[42 + 2 * a..44 + 2 * a].copy_from_slice(&d.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn a_header_claiming_more_than_the_file_holds_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        // 30000^3 int16 = 54 TB claimed by a file of a few hundred bytes, plain and gzipped.
        let bytes = claiming([30000, 30000, 30000]);
        let plain = dir.path().join("bomb.nii");
        std::fs::write(&plain, &bytes).unwrap();
        let err = read_nifti(&plain).unwrap_err().to_string();
        assert!(err.contains("data size mismatch") && err.contains("bomb.nii"), "{err}");
        let gz = dir.path().join("bomb.nii.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &bytes).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let err = read_nifti(&gz).unwrap_err().to_string();
        assert!(err.contains("more than a") && err.contains("gzip file can hold") && err.contains("bomb.nii.gz"), "{err}");
    }

    #[test]
    fn dimensions_whose_product_overflows_are_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        // NIfTI-2 carries 64-bit dims: 2^62 × 2^62 × 4 voxels overflow.
        let mut h = vec![0u8; 544];
        h[0..4].copy_from_slice(&540i32.to_le_bytes());
        h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
        h[12..14].copy_from_slice(&4i16.to_le_bytes());
        h[14..16].copy_from_slice(&16i16.to_le_bytes());
        for (i, d) in [3i64, 1 << 62, 1 << 62, 4, 1, 1, 1, 1].iter().enumerate() {
            h[16 + 8 * i..24 + 8 * i].copy_from_slice(&d.to_le_bytes());
        }
        for i in 0..8 {
            h[104 + 8 * i..112 + 8 * i].copy_from_slice(&1f64.to_le_bytes());
        }
        h[168..176].copy_from_slice(&544i64.to_le_bytes());
        let path = dir.path().join("overflow.nii");
        std::fs::write(&path, &h).unwrap();
        let err = read_nifti(&path).unwrap_err().to_string();
        assert!(err.contains("overflow") && err.contains("overflow.nii"), "{err}");
    }
}
