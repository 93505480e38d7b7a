//! Opening a DICOM file and reading the header fields cta2mbf uses (series identity,
//! ImageType, geometry, rescale), with one clear error per unreadable file.

use crate::error::{Error, Result};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_core::value::PrimitiveValue;
use dicom_core::{Tag, VR};
use std::path::{Path, PathBuf};

/// A parsed DICOM file (file meta group and data set).
pub type DicomFile = FileDicomObject<InMemDicomObject>;

/// Where the `DICM` marker of a DICOM file is: after the 128-byte preamble (the standard
/// layout), or at the very start (preamble stripped). `None` when there is none.
pub fn dicm_offset(bytes: &[u8]) -> Option<usize> {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(128)
    } else if bytes.starts_with(b"DICM") {
        Some(0)
    } else {
        None
    }
}

/// The messages of an error and all of its sources, joined by `": "`.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Parse the DICOM file `bytes` read from `path`; without `with_pixels` the data set is
/// read only up to (not including) PixelData, which is much faster. Element lengths (up to
/// where the read stops) are checked against the file first ([`super::bounds`]), so no value
/// larger than the file is allocated.
pub fn parse_dicom(path: &Path, bytes: &[u8], with_pixels: bool) -> Result<DicomFile> {
    let offset = dicm_offset(bytes)
        .ok_or_else(|| Error::format(path, "not a DICOM file (no \"DICM\" marker after the 128-byte preamble)"))?;
    super::bounds::check_lengths(path, bytes, !with_pixels)?;
    let mut options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    if !with_pixels {
        options = options.read_until(tags::PIXEL_DATA);
    }
    options
        .from_reader(&bytes[offset..])
        .map_err(|e| Error::format(path, format!("unreadable DICOM: {}", describe(&e))))
}

/// Read and parse the whole DICOM file at `path` (pixel data included).
pub fn open_dicom(path: &Path) -> Result<DicomFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_dicom(path, &bytes, true)
}

/// The header fields of one DICOM image that sorting, extraction and conversion use.
/// Text values are trimmed of DICOM padding; a field that is absent or malformed is `None`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SliceHeader {
    /// The file it was read from.
    pub path: PathBuf,
    /// Transfer syntax UID from the file meta group.
    pub transfer_syntax: String,
    /// SOPClassUID (0008,0016).
    pub sop_class_uid: Option<String>,
    /// SOPInstanceUID (0008,0018).
    pub sop_instance_uid: Option<String>,
    /// StudyInstanceUID (0020,000D).
    pub study_instance_uid: Option<String>,
    /// SeriesInstanceUID (0020,000E), not yet validated as a UID.
    pub series_instance_uid: Option<String>,
    /// PatientID (0010,0020).
    pub patient_id: Option<String>,
    /// Modality (0008,0060), e.g. `CT`, `MR`.
    pub modality: Option<String>,
    /// SeriesDescription (0008,103E).
    pub series_description: Option<String>,
    /// SeriesNumber (0020,0011).
    pub series_number: Option<i64>,
    /// ImageType (0008,0008), one entry per value, e.g. `DERIVED`, `SECONDARY`, `AXIAL`, `BF`.
    pub image_type: Vec<String>,
    /// InstanceNumber (0020,0013).
    pub instance_number: Option<i64>,
    /// Rows (0028,0010): the number of pixels along a column (y).
    pub rows: Option<u32>,
    /// Columns (0028,0011): the number of pixels along a row (x).
    pub columns: Option<u32>,
    /// NumberOfFrames (0028,0008); 1 when absent.
    pub number_of_frames: u32,
    /// PixelSpacing (0028,0030): spacing between rows, then between columns, mm.
    pub pixel_spacing: Option<[f64; 2]>,
    /// SliceThickness (0018,0050), mm (informative only: conversion uses positions).
    pub slice_thickness: Option<f64>,
    /// SpacingBetweenSlices (0018,0088), mm.
    pub spacing_between_slices: Option<f64>,
    /// ImagePositionPatient (0020,0032): LPS position of the first transmitted pixel, mm.
    pub image_position: Option<[f64; 3]>,
    /// ImageOrientationPatient (0020,0037): row direction then column direction (LPS).
    pub image_orientation: Option<[f64; 6]>,
    /// RescaleSlope (0028,1053); 1 when absent.
    pub rescale_slope: f64,
    /// RescaleIntercept (0028,1052); 0 when absent.
    pub rescale_intercept: f64,
}

/// The raw text of `tag`, values separated by `\\`. An element stored with VR UN (as
/// some archives rewrite unknown tags) holds the bytes of its text, which are decoded.
fn raw_text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = obj.get(tag)?;
    if element.vr() == VR::UN {
        if let Some(PrimitiveValue::U8(bytes)) = element.value().primitive() {
            return Some(String::from_utf8_lossy(bytes).into_owned());
        }
    }
    element.to_str().ok().map(|s| s.into_owned())
}

fn trim_padding(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
}

/// A trimmed, non-empty text value of `tag`.
fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = raw_text(obj, tag)?;
    let value = trim_padding(&value);
    (!value.is_empty()).then(|| value.to_string())
}

/// All values of a multi-valued text element, trimmed.
fn texts(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    raw_text(obj, tag).map(|v| trim_padding(&v).split('\\').map(|s| trim_padding(s).to_string()).collect()).unwrap_or_default()
}

/// Exactly `N` finite numbers of `tag`, or `None`.
fn numbers<const N: usize>(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; N]> {
    let values: Vec<f64> = texts(obj, tag).iter().map(|s| s.parse::<f64>()).collect::<std::result::Result<_, _>>().ok()?;
    let array: [f64; N] = values.try_into().ok()?;
    array.iter().all(|v| v.is_finite()).then_some(array)
}

/// One finite number of `tag`, or `None`.
fn number(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    numbers::<1>(obj, tag).map(|[v]| v)
}

/// One integer of `tag`, or `None`.
fn integer(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let element = obj.get(tag)?;
    match element.vr() {
        VR::IS | VR::UN => text(obj, tag)?.parse().ok(),
        _ => element.to_int::<i64>().ok(),
    }
}

impl SliceHeader {
    /// The header fields of a parsed file.
    pub fn from_object(path: &Path, file: &DicomFile) -> Self {
        let obj: &InMemDicomObject = file;
        SliceHeader {
            path: path.to_path_buf(),
            transfer_syntax: file.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string(),
            sop_class_uid: text(obj, tags::SOP_CLASS_UID),
            sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID),
            study_instance_uid: text(obj, tags::STUDY_INSTANCE_UID),
            series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID),
            patient_id: text(obj, tags::PATIENT_ID),
            modality: text(obj, tags::MODALITY),
            series_description: text(obj, tags::SERIES_DESCRIPTION),
            series_number: integer(obj, tags::SERIES_NUMBER),
            image_type: texts(obj, tags::IMAGE_TYPE),
            instance_number: integer(obj, tags::INSTANCE_NUMBER),
            rows: integer(obj, tags::ROWS).and_then(|v| u32::try_from(v).ok()),
            columns: integer(obj, tags::COLUMNS).and_then(|v| u32::try_from(v).ok()),
            number_of_frames: integer(obj, tags::NUMBER_OF_FRAMES).and_then(|v| u32::try_from(v).ok()).unwrap_or(1),
            pixel_spacing: numbers::<2>(obj, tags::PIXEL_SPACING),
            slice_thickness: number(obj, tags::SLICE_THICKNESS),
            spacing_between_slices: number(obj, tags::SPACING_BETWEEN_SLICES),
            image_position: numbers::<3>(obj, tags::IMAGE_POSITION_PATIENT),
            image_orientation: numbers::<6>(obj, tags::IMAGE_ORIENTATION_PATIENT),
            rescale_slope: number(obj, tags::RESCALE_SLOPE).unwrap_or(1.0),
            rescale_intercept: number(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
        }
    }

    /// Read the header of the DICOM file `bytes` (read from `path`), skipping pixel data.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        Ok(Self::from_object(path, &parse_dicom(path, bytes, false)?))
    }

    /// Read the header of the DICOM file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &bytes)
    }

    /// True when ImageType has a value equal to `value` (e.g. `BF`, `AXIAL`).
    pub fn has_image_type(&self, value: &str) -> bool {
        self.image_type.iter().any(|v| v == value)
    }
}
