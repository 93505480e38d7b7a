//! A DICOM series (one folder of single-frame slices) as a [`Volume`], with the geometry
//! ITK's `ImageSeriesReader` gives for the file order of `GDCMSeriesFileNames`:
//!
//! - slices sorted by ImagePositionPatient projected on the slice normal
//!   `n = row × column` (ImageOrientationPatient), ascending;
//! - origin: the position of the first slice; direction: columns `row`, `column`, `n`;
//! - in-plane spacing from PixelSpacing (x = column spacing, y = row spacing); slice spacing
//!   `|p_last − p_first| / (slices − 1)` from the actual positions, not SliceThickness.
//!
//! A single image without position or orientation is placed at the origin, axis-aligned,
//! as ITK does. Uneven slice gaps, missing slices and sheared stacks are reported as warnings (ITK reads
//! them on the mean spacing too); slices at the same position, different sizes or
//! orientations, and files of another series are errors.

use super::header::{SliceHeader, dicm_offset, parse_dicom};
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
    /// Irregularities that did not stop the conversion (uneven spacing, missing slices).
    pub warnings: Vec<String>,
}

impl SeriesVolume {
    /// True when every value is an integer in the int16 range (write as int16).
    pub fn fits_int16(&self) -> bool {
        crate::io::nifti::lossless_dtype(&self.volume) == crate::io::nifti::NiftiDtype::I16
    }
}

/// The regular files directly inside `dir` (not hidden), sorted by name.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Where the slices of a series sit: their order along the normal and the grid geometry.
#[derive(Debug, Clone)]
pub struct SliceGeometry {
    /// `order[k]` is the index (in the input) of the slice at z index `k`.
    pub order: Vec<usize>,
    /// The grid.
    pub geometry: Geometry,
    /// Irregularities (uneven gaps, missing slices, shear).
    pub warnings: Vec<String>,
}

fn normalized(v: Vec3) -> Option<Vec3> {
    let n = mat3::norm(v);
    (n > 1e-6).then(|| mat3::scale(v, 1.0 / n))
}

/// Order and grid of slices with the given headers (all of one series, same size).
pub fn slice_geometry(headers: &[SliceHeader]) -> Result<SliceGeometry> {
    let first = headers.first().ok_or_else(|| Error::invalid("a series needs at least one slice"))?;
    let missing = |h: &SliceHeader, what: &str| Error::format(&h.path, format!("{what} is missing or malformed"));
    // A lone image without position or orientation (secondary capture) sits at the origin,
    // axis-aligned, as ITK reads it; a stack needs both.
    let lone = headers.len() == 1;
    let iop = match first.image_orientation {
        None if lone => [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        other => other.ok_or_else(|| missing(first, "ImageOrientationPatient (0020,0037)"))?,
    };
    let row = normalized([iop[0], iop[1], iop[2]]).ok_or_else(|| Error::format(&first.path, "ImageOrientationPatient has a zero row direction"))?;
    let col = normalized([iop[3], iop[4], iop[5]]).ok_or_else(|| Error::format(&first.path, "ImageOrientationPatient has a zero column direction"))?;
    let normal = normalized(mat3::cross(row, col)).ok_or_else(|| Error::format(&first.path, "ImageOrientationPatient: row and column directions are parallel"))?;
    let mut positions = Vec::with_capacity(headers.len());
    for h in headers {
        let p = match h.image_position {
            None if lone => [0.0; 3],
            other => other.ok_or_else(|| missing(h, "ImagePositionPatient (0020,0032)"))?,
        };
        let o = h.image_orientation.unwrap_or(iop);
        let (r, c) = (normalized([o[0], o[1], o[2]]), normalized([o[3], o[4], o[5]]));
        let parallel = matches!((r, c), (Some(r), Some(c)) if mat3::dot(r, row) > 1.0 - ORIENTATION_TOLERANCE && mat3::dot(c, col) > 1.0 - ORIENTATION_TOLERANCE);
        if !parallel {
            return Err(Error::format(
                &h.path,
                format!("ImageOrientationPatient {o:?} differs from {iop:?} of {}: the slices do not form one volume", first.path.display()),
            ));
        }
        positions.push(p);
    }
    let distance: Vec<f64> = positions.iter().map(|&p| mat3::dot(p, normal)).collect();
    let mut order: Vec<usize> = (0..headers.len()).collect();
    order.sort_by(|&a, &b| distance[a].total_cmp(&distance[b]));
    let ps = first.pixel_spacing.map(|[r, c]| [c, r]).unwrap_or([1.0, 1.0]);
    let mut warnings = Vec::new();
    let n = order.len();
    let z_spacing = if n == 1 {
        first.spacing_between_slices.filter(|&s| s > 0.0).unwrap_or(1.0)
    } else {
        for w in order.windows(2) {
            if (distance[w[1]] - distance[w[0]]).abs() < 1e-4 {
                return Err(Error::format(
                    &headers[w[1]].path,
                    format!("at the same position as {} (slice position {:.4} mm along the normal)", headers[w[0]].path.display(), distance[w[0]]),
                ));
            }
        }
        let span = mat3::sub(positions[order[n - 1]], positions[order[0]]);
        let spacing = mat3::norm(span) / (n - 1) as f64;
        let along = mat3::dot(span, normal) / mat3::norm(span);
        if along < 1.0 - ORIENTATION_TOLERANCE {
            warnings.push(format!(
                "slices are sheared (gantry tilt?): the stack runs {:.3}° off the slice normal; the grid ignores the shear",
                along.clamp(-1.0, 1.0).acos().to_degrees()
            ));
        }
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
        spacing
    };
    let direction = [0, 1, 2].map(|r| [row[r], col[r], normal[r]]);
    let geometry = Geometry { spacing: [ps[0], ps[1], z_spacing], origin: positions[order[0]], direction };
    Ok(SliceGeometry { order, geometry, warnings })
}

/// One file of a series folder: its header and decoded pixels, or why it is left out.
enum Entry {
    Slice(Box<SliceHeader>, DecodedSlice),
    Skipped(PathBuf, String),
}

fn read_entry(path: &Path) -> Result<Entry> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if dicm_offset(&bytes).is_none() {
        return Ok(Entry::Skipped(path.to_path_buf(), "not a DICOM file".into()));
    }
    let file = parse_dicom(path, &bytes, true)?;
    drop(bytes);
    let header = SliceHeader::from_object(path, &file);
    if file.get(dicom_dictionary_std::tags::PIXEL_DATA).is_none() {
        return Ok(Entry::Skipped(path.to_path_buf(), "DICOM without pixel data".into()));
    }
    let pixels = decode_slice(path, &file, &header)?;
    Ok(Entry::Slice(Box::new(header), pixels))
}

/// Read the series in folder `dir` (its files, not sub-folders) into a volume.
///
/// Non-DICOM files and DICOM files without pixel data are skipped and listed; any other
/// unreadable file, a second SeriesInstanceUID, slices of different sizes or orientations,
/// or two slices at one position is an error naming the file.
pub fn read_series(dir: &Path) -> Result<SeriesVolume> {
    let files = files_in(dir)?;
    let entries: Vec<Entry> = files.par_iter().map(|p| read_entry(p)).collect::<Result<_>>()?;
    let mut headers = Vec::new();
    let mut pixels = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        match entry {
            Entry::Slice(h, p) => {
                headers.push(*h);
                pixels.push(p);
            }
            Entry::Skipped(path, why) => skipped.push((path, why)),
        }
    }
    let first = headers.first().ok_or_else(|| Error::format(dir, format!("is a directory holding no DICOM image ({} other files)", skipped.len())))?;
    for (h, p) in headers.iter().zip(&pixels) {
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
        if (p.rows, p.columns) != (pixels[0].rows, pixels[0].columns) {
            return Err(Error::format(
                &h.path,
                format!("slice of {}x{} pixels (columns x rows) differs from {}x{} of {}", p.columns, p.rows, pixels[0].columns, pixels[0].rows, first.path.display()),
            ));
        }
    }
    let SliceGeometry { order, geometry, warnings } = slice_geometry(&headers)?;
    let (nx, ny, nz) = (pixels[0].columns, pixels[0].rows, order.len());
    let mut data = Array3::<f32>::zeros((nx, ny, nz));
    // data is [x][y][z] with z fastest, slices are row-major [y][x]: transpose in blocks of
    // a few x columns (contiguous in `data`), in parallel.
    const BLOCK: usize = 16;
    data.axis_chunks_iter_mut(ndarray::Axis(0), BLOCK).into_par_iter().enumerate().for_each(|(b, mut block)| {
        let x0 = b * BLOCK;
        let width = block.shape()[0];
        for y in 0..ny {
            for (k, &i) in order.iter().enumerate() {
                let row = &pixels[i].values[y * nx + x0..y * nx + x0 + width];
                for (dx, &v) in row.iter().enumerate() {
                    block[[dx, y, k]] = v;
                }
            }
        }
    });
    let slices = order.iter().map(|&i| headers[i].clone()).collect();
    Ok(SeriesVolume { volume: Volume::new(data, geometry), slices, skipped, warnings })
}
