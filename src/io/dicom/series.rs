//! A DICOM series (one folder of single-frame slices) as a [`Volume`], the way SimpleITK's
//! `ImageSeriesReader` reads the file list of `GetGDCMSeriesFileNames`:
//!
//! - slices ordered as GDCM orders them: by ImagePositionPatient projected on the normal
//!   `n = row × column` (ImageOrientationPatient) of the first file the directory lists,
//!   ascending; when two positions coincide, by InstanceNumber; when those repeat too, by
//!   file name;
//! - origin: the position of the first slice; direction: columns `row`, `column`, `n` of the
//!   first slice (`n` turned round if the last slice lies behind the first);
//! - in-plane spacing from PixelSpacing (x = column spacing, y = row spacing); slice spacing
//!   `|p_last − p_first| / (slices − 1)` from the actual positions, not SliceThickness
//!   (1 mm when first and last coincide).
//!
//! A single image without position or orientation is placed at the origin, axis-aligned,
//! as ITK does. Uneven slice gaps, missing slices and sheared stacks are reported as
//! warnings (ITK reads them on the mean spacing too). Slices of different orientations or
//! at one position do not form a volume: they are stacked as ITK stacks them, with a
//! warning, and [`SeriesVolume::not_a_volume`] says why (`convert --strict` refuses them).
//! Different slice sizes and files of another series are errors.

use super::header::{DicomFile, SliceHeader, dicm_offset, parse_dicom};
use super::pixels::{DecodedSlice, decode_slice};
use crate::error::{Error, Result};
use crate::volume::mat3::{self, Vec3};
use crate::volume::{Geometry, Volume};
use ndarray::Array3;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Relative tolerance on slice gaps before they are reported as uneven.
const GAP_TOLERANCE: f64 = 0.01;
/// Largest angle (as 1 − cos) between two slices' orientations still taken as parallel.
const ORIENTATION_TOLERANCE: f64 = 1e-4;

/// A series read into a volume, with what was noticed on the way.
#[derive(Debug, Clone)]
pub struct SeriesVolume {
    /// The voxels (rescaled values) and their geometry.
    pub volume: Volume,
    /// Headers of the slices, in volume order (z index).
    pub slices: Vec<SliceHeader>,
    /// Files of the folder that are not part of the volume, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Irregularities that did not stop the conversion (uneven spacing, missing slices,
    /// slices that do not form one volume).
    pub warnings: Vec<String>,
    /// Why the slices do not form one volume, when they do not (see [`SliceGeometry`]).
    pub not_a_volume: Option<String>,
}

impl SeriesVolume {
    /// True when every value is an integer in the int16 range (write as int16).
    pub fn fits_int16(&self) -> bool {
        crate::io::nifti::lossless_dtype(&self.volume) == crate::io::nifti::NiftiDtype::I16
    }
}

/// The regular files directly inside `dir` (not hidden), sorted by name.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = files_in_directory_order(dir)?;
    files.sort();
    Ok(files)
}

/// The regular files directly inside `dir` (not hidden), in the order the file system lists
/// them (as GDCM, and so ITK, sees them).
pub fn files_in_directory_order(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_file() {
            files.push(entry.path());
        }
    }
    Ok(files)
}

/// Where the slices of a series sit: their order and the grid geometry.
#[derive(Debug, Clone)]
pub struct SliceGeometry {
    /// `order[k]` is the index (in the input) of the slice at z index `k`.
    pub order: Vec<usize>,
    /// How the order was found.
    pub rule: OrderRule,
    /// The grid.
    pub geometry: Geometry,
    /// Irregularities (uneven gaps, missing slices, shear).
    pub warnings: Vec<String>,
    /// Why the slices do not form one volume (orientations differ, positions repeat), when
    /// they do not: they were stacked the way ITK stacks them, but the grid is not true.
    pub not_a_volume: Option<String>,
}

/// The rule that ordered the slices, tried in this order as GDCM's `SerieHelper` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderRule {
    /// Ascending position along the normal of the first slice in directory order.
    Position,
    /// Ascending InstanceNumber (positions repeat, instance numbers do not).
    InstanceNumber,
    /// File name (positions and instance numbers both repeat).
    FileName,
}

fn normalized(v: Vec3) -> Option<Vec3> {
    let n = mat3::norm(v);
    (n > 1e-6).then(|| mat3::scale(v, 1.0 / n))
}

/// Row and column directions (unit vectors) of an ImageOrientationPatient.
fn row_and_column(h: &SliceHeader, iop: [f64; 6]) -> Result<(Vec3, Vec3)> {
    let row = normalized([iop[0], iop[1], iop[2]]).ok_or_else(|| Error::format(&h.path, "ImageOrientationPatient has a zero row direction"))?;
    let col = normalized([iop[3], iop[4], iop[5]]).ok_or_else(|| Error::format(&h.path, "ImageOrientationPatient has a zero column direction"))?;
    Ok((row, col))
}

/// The slice order GDCM's `SerieHelper` gives (what SimpleITK's `GetGDCMSeriesFileNames`
/// returns): by the position along the normal of the *first file in directory order*, when
/// those positions are all different; else by InstanceNumber, when those are all different;
/// else by file name. The normal and distances are computed as GDCM does (raw cosines,
/// exact comparison), so ties are broken the same way. Also returns two slices found at one
/// position, when the position rule failed.
fn gdcm_order(headers: &[SliceHeader], iops: &[[f64; 6]], positions: &[Vec3]) -> (Vec<usize>, OrderRule, Option<(usize, usize, f64)>) {
    let c = iops[0];
    let normal = [c[1] * c[5] - c[2] * c[4], c[2] * c[3] - c[0] * c[5], c[0] * c[4] - c[1] * c[3]];
    let distance: Vec<f64> = positions.iter().map(|p| (0..3).fold(0.0, |d, i| d + normal[i] * p[i])).collect();
    let mut order: Vec<usize> = (0..headers.len()).collect();
    order.sort_by(|&a, &b| distance[a].total_cmp(&distance[b]));
    let tie = order.windows(2).find(|w| distance[w[0]] == distance[w[1]]).map(|w| (w[0], w[1], distance[w[0]]));
    if headers.len() > 1 && tie.is_none() {
        return (order, OrderRule::Position, None);
    }
    // GDCM reads a missing InstanceNumber as -1.
    let number = |i: usize| headers[i].instance_number.unwrap_or(-1);
    order.sort_by_key(|&i| number(i));
    if order.windows(2).all(|w| number(w[0]) != number(w[1])) {
        return (order, OrderRule::InstanceNumber, tie);
    }
    order.sort_by(|&a, &b| headers[a].path.as_os_str().as_encoded_bytes().cmp(headers[b].path.as_os_str().as_encoded_bytes()));
    (order, OrderRule::FileName, tie)
}

/// Order and grid of the slices with the given headers (all of one series, same size), in
/// directory order (the first one sets the normal used for ordering, as in GDCM).
///
/// The grid is what ITK's `ImageSeriesReader` builds: origin, row, column and normal of the
/// first slice in order (the normal turned round when the last slice lies behind the
/// first), slice spacing `|p_last − p_first| / (n − 1)` (1 mm when that is 0).
/// Slices of different orientations or at repeated positions do not form one volume: they
/// are stacked all the same, as ITK does, and `not_a_volume` says why.
pub fn slice_geometry(headers: &[SliceHeader]) -> Result<SliceGeometry> {
    let first = headers.first().ok_or_else(|| Error::invalid("a series needs at least one slice"))?;
    let missing = |h: &SliceHeader, what: &str| Error::format(&h.path, format!("{what} is missing or malformed"));
    // A lone image without position or orientation (secondary capture) sits at the origin,
    // axis-aligned, as ITK reads it; a stack needs both.
    let lone = headers.len() == 1;
    let mut iops = Vec::with_capacity(headers.len());
    let mut positions = Vec::with_capacity(headers.len());
    for h in headers {
        let iop = match h.image_orientation {
            None if lone => [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            other => other.ok_or_else(|| missing(h, "ImageOrientationPatient (0020,0037)"))?,
        };
        let (row, col) = row_and_column(h, iop)?;
        normalized(mat3::cross(row, col)).ok_or_else(|| Error::format(&h.path, "ImageOrientationPatient: row and column directions are parallel"))?;
        iops.push(iop);
        positions.push(match h.image_position {
            None if lone => [0.0; 3],
            other => other.ok_or_else(|| missing(h, "ImagePositionPatient (0020,0032)"))?,
        });
    }
    let (order, rule, tie) = gdcm_order(headers, &iops, &positions);
    let lead = order[0];
    let (row, col) = row_and_column(&headers[lead], iops[lead])?;
    let mut normal = normalized(mat3::cross(row, col)).expect("checked above");
    let ps = headers[lead].pixel_spacing.map(|[r, c]| [c, r]).unwrap_or([1.0, 1.0]);
    let n = order.len();
    let mut warnings = Vec::new();
    let mut not_a_volume = None;
    let z_spacing = if n == 1 {
        first.spacing_between_slices.filter(|&s| s > 0.0).unwrap_or(1.0)
    } else {
        let oblique = (0..n).find(|&i| {
            let (r, c) = row_and_column(&headers[i], iops[i]).expect("checked above");
            mat3::dot(r, row) < 1.0 - ORIENTATION_TOLERANCE || mat3::dot(c, col) < 1.0 - ORIENTATION_TOLERANCE
        });
        let span = mat3::sub(positions[order[n - 1]], positions[lead]);
        let spacing = mat3::norm(span) / (n - 1) as f64;
        if mat3::dot(span, normal) < 0.0 {
            normal = mat3::scale(normal, -1.0);
        }
        if let Some(i) = oblique {
            not_a_volume = Some(format!(
                "ImageOrientationPatient {:?} of {} differs from {:?} of {}: the slices do not form one volume",
                iops[i],
                headers[i].path.display(),
                iops[lead],
                headers[lead].path.display()
            ));
        } else if let Some((a, b, at)) = tie {
            not_a_volume = Some(format!(
                "{} is at the same position as {} ({at:.4} mm along the normal): the slices do not form one volume",
                headers[b].path.display(),
                headers[a].path.display()
            ));
        } else {
            warnings.extend(spacing_warnings(&positions, &order, normal, spacing));
        }
        if let Some(why) = &not_a_volume {
            let how = match rule {
                OrderRule::Position => format!("along the normal of {}, the first file in directory order", first.path.display()),
                OrderRule::InstanceNumber => "by InstanceNumber".to_string(),
                OrderRule::FileName => "by file name".to_string(),
            };
            warnings.push(format!("{why}; stacked as ITK's ImageSeriesReader does ({how}, geometry of the first slice)"));
        }
        if spacing > 1e-9 { spacing } else { 1.0 }
    };
    let direction = [0, 1, 2].map(|r| [row[r], col[r], normal[r]]);
    let geometry = Geometry { spacing: [ps[0], ps[1], z_spacing], origin: positions[lead], direction };
    Ok(SliceGeometry { order, rule, geometry, warnings, not_a_volume })
}

/// Shear, missing slices and uneven gaps of a stack of parallel slices at distinct positions.
fn spacing_warnings(positions: &[Vec3], order: &[usize], normal: Vec3, spacing: f64) -> Vec<String> {
    let mut warnings = Vec::new();
    let n = order.len();
    let span = mat3::sub(positions[order[n - 1]], positions[order[0]]);
    let along = mat3::dot(span, normal) / mat3::norm(span);
    if along < 1.0 - ORIENTATION_TOLERANCE {
        warnings.push(format!(
            "slices are sheared (gantry tilt?): the stack runs {:.3}° off the slice normal; the grid ignores the shear",
            along.clamp(-1.0, 1.0).acos().to_degrees()
        ));
    }
    let distance: Vec<f64> = positions.iter().map(|&p| mat3::dot(p, normal)).collect();
    let gaps: Vec<f64> = order.windows(2).map(|w| distance[w[1]] - distance[w[0]]).collect();
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    let missing_after: Vec<usize> = gaps.iter().enumerate().filter(|(_, g)| **g > 1.5 * median).map(|(k, _)| k).collect();
    if !missing_after.is_empty() {
        let shown: Vec<String> = missing_after.iter().take(5).map(|&k| format!("after z index {k} ({:.3} mm gap)", gaps[k])).collect();
        warnings.push(format!("missing slice(s): {} of {} gaps exceed 1.5x the usual {median:.4} mm: {}", missing_after.len(), gaps.len(), shown.join(", ")));
    } else if hi - lo > GAP_TOLERANCE * median {
        warnings.push(format!("uneven slice spacing: gaps from {lo:.4} to {hi:.4} mm; the grid uses their mean {spacing:.4} mm"));
    }
    warnings
}

/// One file of a series folder: its header, or why it is left out. The pixel data is
/// decoded later, a batch of slices at a time, so that the encoded copies of all the files
/// are never held at once.
enum Entry {
    Slice(Box<SliceHeader>),
    Skipped(PathBuf, String),
}

/// The parsed file at `path`, or `None` when it is not DICOM (no `DICM` marker).
fn parse_file(path: &Path) -> Result<Option<DicomFile>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if dicm_offset(&bytes).is_none() {
        return Ok(None);
    }
    parse_dicom(path, &bytes, true).map(Some)
}

fn read_entry(path: &Path) -> Result<Entry> {
    let Some(file) = parse_file(path)? else {
        return Ok(Entry::Skipped(path.to_path_buf(), "not a DICOM file".into()));
    };
    if file.get(dicom_dictionary_std::tags::PIXEL_DATA).is_none() {
        return Ok(Entry::Skipped(path.to_path_buf(), "DICOM without pixel data".into()));
    }
    Ok(Entry::Slice(Box::new(SliceHeader::from_object(path, &file))))
}

/// Read `header.path` again and decode its pixels.
fn decode_file(header: &SliceHeader) -> Result<DecodedSlice> {
    let path = &header.path;
    let file = parse_file(path)?.ok_or_else(|| Error::format(path, "is no longer a DICOM file"))?;
    decode_slice(path, &file, header)
}

/// The error for a slice whose size differs from the first slice's.
fn size_mismatch(path: &Path, (columns, rows): (usize, usize), (lead_columns, lead_rows): (usize, usize), lead: &Path) -> Error {
    Error::format(path, format!("slice of {columns}x{rows} pixels (columns x rows) differs from {lead_columns}x{lead_rows} of {}", lead.display()))
}

/// Slices decoded at a time while the volume is filled: enough for every thread, few
/// enough that the decoded copies stay small beside the volume.
const DECODE_BATCH: usize = 32;

/// Read the series in folder `dir` (its files, not sub-folders) into a volume, the way
/// SimpleITK's `ImageSeriesReader` reads the file list of `GetGDCMSeriesFileNames`.
///
/// Non-DICOM files and DICOM files without pixel data are skipped and listed; any other
/// unreadable file, a second SeriesInstanceUID or slices of different sizes is an error
/// naming the file. Slices of different orientations or at one position are stacked as ITK
/// stacks them, with a warning and [`SeriesVolume::not_a_volume`] set.
pub fn read_series(dir: &Path) -> Result<SeriesVolume> {
    let files = files_in_directory_order(dir)?;
    let entries: Vec<Entry> = files.par_iter().map(|p| read_entry(p)).collect::<Result<_>>()?;
    let mut headers = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        match entry {
            Entry::Slice(h) => headers.push(*h),
            Entry::Skipped(path, why) => skipped.push((path, why)),
        }
    }
    skipped.sort();
    let first = headers.first().ok_or_else(|| Error::format(dir, format!("is a directory holding no DICOM image ({} other files)", skipped.len())))?;
    for h in &headers {
        if h.series_instance_uid != first.series_instance_uid {
            return Err(Error::format(
                &h.path,
                format!(
                    "SeriesInstanceUID {} differs from {} of {}: one series per folder",
                    h.series_instance_uid.as_deref().unwrap_or("(none)"),
                    first.series_instance_uid.as_deref().unwrap_or("(none)"),
                    first.path.display()
                ),
            ));
        }
    }
    let SliceGeometry { order, geometry, warnings, not_a_volume, .. } = slice_geometry(&headers)?;
    // Decode the slices in volume order, a batch at a time, and copy each batch into place.
    // As ITK: every slice must have the size of the first one in order.
    let lead_path = &headers[order[0]].path;
    let mut volume: Option<(usize, usize, Vec<f32>)> = None;
    let nz = order.len();
    for (batch_index, batch) in order.chunks(DECODE_BATCH).enumerate() {
        let decoded: Vec<DecodedSlice> = batch.par_iter().map(|&i| decode_file(&headers[i])).collect::<Result<_>>()?;
        let (nx, ny, data) = volume.get_or_insert_with(|| (decoded[0].columns, decoded[0].rows, vec![0f32; decoded[0].columns * decoded[0].rows * nz]));
        let (nx, ny) = (*nx, *ny);
        for (slice, &i) in decoded.iter().zip(batch) {
            if (slice.columns, slice.rows) != (nx, ny) {
                return Err(size_mismatch(&headers[i].path, (slice.columns, slice.rows), (nx, ny), lead_path));
            }
        }
        fill_z_range(data, [nx, ny, nz], batch_index * DECODE_BATCH, &decoded);
    }
    let (nx, ny, data) = volume.expect("a series has at least one slice");
    let data = Array3::from_shape_vec((nx, ny, nz), data).expect("length is the product of the shape");
    let slices = order.iter().map(|&i| headers[i].clone()).collect();
    Ok(SeriesVolume { volume: Volume::new(data, geometry), slices, skipped, warnings, not_a_volume })
}

/// Copy `slices` (row-major `[y][x]` images) into planes `z0..` of `data`, a standard-layout
/// `[x][y][z]` array of `shape` (z fastest). Each task fills a few x columns, writing runs
/// along z and reading each slice's row once.
fn fill_z_range(data: &mut [f32], [nx, ny, nz]: [usize; 3], z0: usize, slices: &[DecodedSlice]) {
    const X_BLOCK: usize = 16;
    if data.is_empty() {
        return;
    }
    data.par_chunks_mut(X_BLOCK * ny * nz).enumerate().for_each(|(b, block)| {
        let x0 = b * X_BLOCK;
        let width = block.len() / (ny * nz);
        for y in 0..ny {
            for dx in 0..width {
                let run = &mut block[(dx * ny + y) * nz + z0..][..slices.len()];
                for (v, slice) in run.iter_mut().zip(slices) {
                    *v = slice.values[y * nx + x0 + dx];
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, iop: [f64; 6], ipp: Vec3, number: Option<i64>) -> SliceHeader {
        SliceHeader {
            path: PathBuf::from(name),
            image_orientation: Some(iop),
            image_position: Some(ipp),
            instance_number: number,
            pixel_spacing: Some([0.5, 0.5]),
            ..Default::default()
        }
    }

    const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    const CORONAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];

    #[test]
    fn a_true_volume_is_ordered_by_position_with_its_own_spacing() {
        let s = [slice("c", AXIAL, [0.0, 0.0, 5.0], Some(1)), slice("a", AXIAL, [0.0, 0.0, 1.0], Some(3)), slice("b", AXIAL, [0.0, 0.0, 3.0], Some(2))];
        let g = slice_geometry(&s).unwrap();
        assert_eq!((g.order, g.rule), (vec![1, 2, 0], OrderRule::Position));
        assert_eq!(g.geometry.spacing, [0.5, 0.5, 2.0]);
        assert_eq!(g.geometry.origin, [0.0, 0.0, 1.0]);
        assert!(g.not_a_volume.is_none() && g.warnings.is_empty());
    }

    #[test]
    fn repeated_positions_fall_back_to_instance_number_then_file_name() {
        let s = [slice("x2", AXIAL, [0.0, 0.0, 4.0], Some(2)), slice("x1", AXIAL, [0.0, 0.0, 4.0], Some(1)), slice("x3", AXIAL, [0.0, 0.0, 0.0], Some(3))];
        let g = slice_geometry(&s).unwrap();
        assert_eq!((g.order.clone(), g.rule), (vec![1, 0, 2], OrderRule::InstanceNumber));
        assert!(g.not_a_volume.as_deref().unwrap().contains("at the same position"));
        // From x1 (z 4) to x3 (z 0): the stack runs against the slice normal, which turns round.
        assert_eq!(g.geometry.direction[2][2], -1.0);
        assert_eq!(g.geometry.spacing[2], 2.0);
        let same = [slice("b", AXIAL, [0.0; 3], Some(7)), slice("a", AXIAL, [0.0; 3], Some(7))];
        let g = slice_geometry(&same).unwrap();
        assert_eq!((g.order, g.rule, g.geometry.spacing[2]), (vec![1, 0], OrderRule::FileName, 1.0));
    }

    #[test]
    fn mixed_orientations_are_ordered_along_the_normal_of_the_first_listed_file() {
        // Normal of the coronal slice is +y: the axial slice (y = -10) comes first.
        let s = [slice("cor", CORONAL, [0.0, 20.0, 0.0], Some(1)), slice("ax", AXIAL, [0.0, -10.0, 50.0], Some(2))];
        let g = slice_geometry(&s).unwrap();
        assert_eq!((g.order.clone(), g.rule), (vec![1, 0], OrderRule::Position));
        assert!(g.not_a_volume.as_deref().unwrap().contains("do not form one volume"));
        // Geometry of the first slice in order, the axial one; the coronal slice lies below
        // it (z 0 < 50), so the normal turns round.
        assert_eq!(g.geometry.direction.map(|r| r.map(|v| v + 0.0)), [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]);
        // Listed the other way round, the axial normal (+z) orders them: coronal (z 0) first.
        let g = slice_geometry(&[s[1].clone(), s[0].clone()]).unwrap();
        assert_eq!(g.order, vec![1, 0]);
        assert_eq!(g.geometry.origin, [0.0, 20.0, 0.0]);
    }
}
