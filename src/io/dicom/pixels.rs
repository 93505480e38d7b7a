//! Decoding the pixel data of a single-frame grey-scale DICOM image into values with the
//! modality rescale (RescaleSlope/Intercept) applied. Native and encapsulated transfer
//! syntaxes go through `dicom-pixeldata` (JPEG baseline/lossless, JPEG 2000, deflate), RLE
//! Lossless through [`super::rle`].

use super::header::{DicomFile, SliceHeader};
use super::jpeg;
use super::rle::{self, RLE_LOSSLESS};
use dicom_dictionary_std::tags;
use crate::error::{Error, Result};
use dicom_pixeldata::{PixelDecoder, PixelRepresentation};
use std::path::Path;

/// One decoded image: `values[r * columns + c]` is the rescaled value of row `r`, column `c`.
#[derive(Debug, Clone)]
pub struct DecodedSlice {
    /// Rows (pixels along a column).
    pub rows: usize,
    /// Columns (pixels along a row).
    pub columns: usize,
    /// Rescaled values, row-major.
    pub values: Vec<f32>,
}

/// Sign-extend or mask a raw sample to its `bits_stored` low bits.
fn stored_value(raw: u32, bits_stored: u32, signed: bool) -> i64 {
    if bits_stored >= 32 {
        return if signed { raw as i32 as i64 } else { raw as i64 };
    }
    let masked = raw & ((1u32 << bits_stored) - 1);
    if signed && masked & (1 << (bits_stored - 1)) != 0 {
        masked as i64 - (1i64 << bits_stored)
    } else {
        masked as i64
    }
}

/// Refuse an encapsulated JPEG or JPEG 2000 image whose own frame does not have the DICOM
/// header's size, one grey-scale component and a precision that fits BitsAllocated (see
/// [`jpeg`]).
fn check_jpeg_frame(file: &DicomFile, header: &SliceHeader) -> std::result::Result<(), String> {
    let fragments = file.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()).ok_or("JPEG pixel data holds no fragment")?;
    let stream: Vec<u8> = fragments.iter().flatten().copied().collect();
    let f = if jpeg::J2K_SYNTAXES.contains(&header.transfer_syntax.as_str()) { jpeg::j2k_frame_header(&stream)? } else { jpeg::frame_header(&stream)? };
    let bits_allocated = file.get(tags::BITS_ALLOCATED).and_then(|e| e.to_int::<u32>().ok()).unwrap_or(0);
    let (rows, columns) = (header.rows.unwrap_or(0), header.columns.unwrap_or(0));
    if (f.rows as u32, f.columns as u32) != (rows, columns) || f.components != 1 || (f.precision as u32).div_ceil(8) * 8 > bits_allocated {
        return Err(format!(
            "the encapsulated image is {}x{} pixels, {} component(s) of {} bits; the DICOM header says {columns}x{rows}, one component, {bits_allocated} bits allocated",
            f.columns, f.rows, f.components, f.precision
        ));
    }
    Ok(())
}

/// Decode the pixel data of `file` (read from `path`, header `header`): grey-scale, one
/// frame, 8, 16 or 32 bits allocated; the header's slope and intercept are applied.
pub fn decode_slice(path: &Path, file: &DicomFile, header: &SliceHeader) -> Result<DecodedSlice> {
    let bad = |message: String| Error::format(path, message);
    if file.get(tags::PIXEL_DATA).is_none() {
        return Err(bad("no pixel data (PixelData (7FE0,0010) is absent)".into()));
    }
    if header.number_of_frames != 1 {
        return Err(bad(format!("multi-frame image ({} frames) is not supported; one slice per file expected", header.number_of_frames)));
    }
    let decoded;
    let (samples, rows, columns, bits_allocated, bits_stored, signed, bytes) = if header.transfer_syntax == RLE_LOSSLESS {
        let int = |tag| file.get(tag).and_then(|e| e.to_int::<i64>().ok());
        let (rows, columns) = (header.rows.unwrap_or(0) as usize, header.columns.unwrap_or(0) as usize);
        let bits_allocated = int(tags::BITS_ALLOCATED).unwrap_or(0) as usize;
        let samples = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        if samples != 1 {
            return Err(bad(format!("{samples} samples per pixel: only grey-scale images are supported")));
        }
        if !matches!(bits_allocated, 8 | 16 | 32) {
            return Err(bad(format!("BitsAllocated {bits_allocated} is not supported (8, 16 or 32)")));
        }
        let fragment = file
            .get(tags::PIXEL_DATA)
            .and_then(|e| e.value().fragments())
            .and_then(|f| f.first())
            .ok_or_else(|| bad("RLE Lossless pixel data holds no fragment".into()))?;
        let bytes = rle::decode_frame(fragment, rows, columns, bits_allocated / 8).map_err(|e| bad(format!("cannot decode pixel data: {e}")))?;
        let bits_stored = int(tags::BITS_STORED).unwrap_or(bits_allocated as i64).clamp(1, bits_allocated as i64) as u32;
        (1, rows, columns, bits_allocated, bits_stored, int(tags::PIXEL_REPRESENTATION) == Some(1), std::borrow::Cow::Owned(bytes))
    } else {
        let syntax = header.transfer_syntax.as_str();
        if jpeg::JPEG_SYNTAXES.contains(&syntax) || jpeg::J2K_SYNTAXES.contains(&syntax) {
            check_jpeg_frame(file, header).map_err(bad)?;
        }
        decoded = file.decode_pixel_data().map_err(|e| bad(format!("cannot decode pixel data (transfer syntax {}): {e}", header.transfer_syntax)))?;
        let bits_allocated = decoded.bits_allocated() as usize;
        (
            decoded.samples_per_pixel(),
            decoded.rows() as usize,
            decoded.columns() as usize,
            bits_allocated,
            (decoded.bits_stored() as u32).clamp(1, bits_allocated.max(1) as u32),
            decoded.pixel_representation() == PixelRepresentation::Signed,
            std::borrow::Cow::Borrowed(decoded.data()),
        )
    };
    if samples != 1 {
        return Err(bad(format!("{samples} samples per pixel: only grey-scale images are supported")));
    }
    let count = rows * columns;
    let width = match bits_allocated {
        8 | 16 | 32 => bits_allocated / 8,
        other => return Err(bad(format!("BitsAllocated {other} is not supported (8, 16 or 32)"))),
    };
    if bytes.len() < count * width {
        return Err(bad(format!(
            "pixel data holds {} bytes, {rows}x{columns} pixels of {bits_allocated} bits need {}",
            bytes.len(),
            count * width
        )));
    }
    let (slope, intercept) = (header.rescale_slope, header.rescale_intercept);
    let values = bytes[..count * width]
        .chunks_exact(width)
        .map(|b| {
            let raw = match width {
                1 => b[0] as u32,
                2 => u16::from_le_bytes([b[0], b[1]]) as u32,
                _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            };
            (stored_value(raw, bits_stored, signed) as f64 * slope + intercept) as f32
        })
        .collect();
    Ok(DecodedSlice { rows, columns, values })
}

#[cfg(test)]
mod tests {
    use super::stored_value;

    #[test]
    fn stored_bits_are_masked_and_sign_extended() {
        assert_eq!(stored_value(0x0FFF, 12, false), 4095);
        assert_eq!(stored_value(0xF800, 12, true), -2048);
        assert_eq!(stored_value(0x0800, 12, true), -2048);
        assert_eq!(stored_value(0xFFFF, 16, true), -1);
        assert_eq!(stored_value(0xFFFF, 16, false), 65535);
        assert_eq!(stored_value(0xFFFF_FFFF, 32, true), -1);
    }
}
