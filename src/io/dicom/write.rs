//! Writing a [`Volume`] as a CT DICOM series (Explicit VR Little Endian, one file per
//! axial slice), so that [`read_series`](super::read_series) and ITK read back the same
//! values and geometry. Used by the phantom's `--dicom` dump.

use crate::error::{Error, Result};
use crate::volume::Volume;
use crate::volume::mat3::{self, Vec3};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

/// The UID of cta2mbf as the implementation that wrote a file (under the `2.25` root).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.137468312735203389211095622473216961601";

/// Identity and description shared by all slices of one series.
#[derive(Debug, Clone)]
pub struct SeriesTags {
    /// PatientID and PatientName.
    pub patient_id: String,
    /// StudyInstanceUID.
    pub study_uid: String,
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// FrameOfReferenceUID.
    pub frame_of_reference_uid: String,
    /// SeriesNumber.
    pub series_number: i32,
    /// SeriesDescription.
    pub description: String,
    /// ImageType values, e.g. `["DERIVED", "SECONDARY", "AXIAL", "CT_SOM7 VPCT", "BF"]`.
    pub image_type: Vec<String>,
    /// StudyDate / SeriesDate, `YYYYMMDD`.
    pub date: String,
    /// SeriesTime, `HHMMSS`.
    pub time: String,
    /// SliceThickness written (mm); informative, readers use positions.
    pub slice_thickness: f64,
}

/// A decimal string (DS) of at most 16 characters, as precise as fits.
pub fn decimal_string(v: f64) -> String {
    let shortest = format!("{v}");
    if shortest.len() <= 16 {
        return shortest;
    }
    for precision in (0..=15).rev() {
        let s = format!("{v:.precision$}");
        if s.len() <= 16 {
            let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
            return s;
        }
    }
    format!("{v:.6e}")
}

fn ds_values(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|&v| decimal_string(v)).collect())
}

fn element(tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value.into())
}

/// Serialise a data set as a DICOM file (preamble, `DICM`, file meta group, Explicit VR
/// Little Endian). SOPClassUID and SOPInstanceUID must be in `object`.
pub fn encode_file(object: InMemDicomObject) -> Result<Vec<u8>> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name("CTA2MBF");
    let file = object.with_meta(meta).map_err(|e| Error::invalid(format!("DICOM file meta: {e}")))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| Error::invalid(format!("DICOM encoding: {e}")))?;
    Ok(bytes)
}

/// How the integer voxel values of a volume are stored: unsigned 16-bit samples of
/// `value − intercept` (CT style, intercept −1024 when the values allow), slope 1.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PixelEncoding {
    intercept: f64,
    bits_stored: u16,
}

impl PixelEncoding {
    fn for_volume(volume: &Volume) -> Result<Self> {
        let (lo, hi, _) = volume.stats();
        if volume.data.iter().any(|v| v.fract() != 0.0) {
            return Err(Error::invalid("DICOM series writing needs integer voxel values"));
        }
        let intercept = if lo >= -1024.0 && lo < 0.0 { -1024.0 } else { lo.min(0.0) as f64 };
        let range = hi as f64 - intercept;
        if range > 65535.0 {
            return Err(Error::invalid(format!("values {lo}..{hi} do not fit 16-bit DICOM samples")));
        }
        let bits_stored = (16 - (range as u16).leading_zeros() as u16).max(12);
        Ok(PixelEncoding { intercept, bits_stored })
    }
}

/// Writes the axial slices of one volume as CT images of one series.
#[derive(Debug)]
pub struct SeriesWriter<'a> {
    volume: &'a Volume,
    tags: SeriesTags,
    encoding: PixelEncoding,
    row: Vec3,
    col: Vec3,
}

impl<'a> SeriesWriter<'a> {
    /// Prepare to write `volume` (integer values, right-handed orthonormal direction, so
    /// that slice z index `k` lies at `k · spacing` along the normal row × column).
    pub fn new(volume: &'a Volume, tags: SeriesTags) -> Result<Self> {
        let d = &volume.geometry.direction;
        let (row, col, normal) = (mat3::column(d, 0), mat3::column(d, 1), mat3::column(d, 2));
        let cross = mat3::cross(row, col);
        if mat3::dot(cross, normal) < 1.0 - 1e-6 || (mat3::norm(row) - 1.0).abs() > 1e-6 || mat3::dot(row, col).abs() > 1e-6 {
            return Err(Error::invalid("DICOM series writing needs an orthonormal right-handed direction"));
        }
        let [nx, ny, _] = volume.shape();
        if nx > u16::MAX as usize || ny > u16::MAX as usize {
            return Err(Error::invalid(format!("a {nx}x{ny} slice is too large for DICOM")));
        }
        Ok(SeriesWriter { volume, encoding: PixelEncoding::for_volume(volume)?, tags, row, col })
    }

    /// Number of slices (files) of the series.
    pub fn len(&self) -> usize {
        self.volume.shape()[2]
    }

    /// True when the volume has no slice.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of the DICOM file of slice `k`, with SOPInstanceUID `sop_uid` and
    /// InstanceNumber `k + 1`.
    pub fn encode(&self, k: usize, sop_uid: &str) -> Result<Vec<u8>> {
        let v = self.volume;
        let [nx, ny, nz] = v.shape();
        if k >= nz {
            return Err(Error::invalid(format!("slice {k} of a {nz}-slice volume")));
        }
        let g = &v.geometry;
        let position = g.index_to_world([0.0, 0.0, k as f64]);
        let t = &self.tags;
        let e = &self.encoding;
        let mut pixels = Vec::with_capacity(nx * ny);
        for y in 0..ny {
            for x in 0..nx {
                pixels.push((v.data[[x, y, k]] as f64 - e.intercept) as u16);
            }
        }
        let orientation = [self.row[0], self.row[1], self.row[2], self.col[0], self.col[1], self.col[2]];
        let slice_location = mat3::dot(position, mat3::cross(self.row, self.col));
        let s = |text: &str| PrimitiveValue::from(text.to_string());
        let object = InMemDicomObject::from_element_iter([
            element(tags::SPECIFIC_CHARACTER_SET, VR::CS, s("ISO_IR 100")),
            element(tags::IMAGE_TYPE, VR::CS, PrimitiveValue::Strs(t.image_type.iter().cloned().collect())),
            element(tags::SOP_CLASS_UID, VR::UI, s(uids::CT_IMAGE_STORAGE)),
            element(tags::SOP_INSTANCE_UID, VR::UI, s(sop_uid)),
            element(tags::STUDY_DATE, VR::DA, s(&t.date)),
            element(tags::SERIES_DATE, VR::DA, s(&t.date)),
            element(tags::STUDY_TIME, VR::TM, s(&t.time)),
            element(tags::SERIES_TIME, VR::TM, s(&t.time)),
            element(tags::MODALITY, VR::CS, s("CT")),
            element(tags::MANUFACTURER, VR::LO, s("cta2mbf phantom")),
            element(tags::SERIES_DESCRIPTION, VR::LO, s(&t.description)),
            element(tags::PATIENT_NAME, VR::PN, s(&format!("PHANTOM^{}", t.patient_id))),
            element(tags::PATIENT_ID, VR::LO, s(&t.patient_id)),
            element(tags::SLICE_THICKNESS, VR::DS, s(&decimal_string(t.slice_thickness))),
            element(tags::KVP, VR::DS, s("100")),
            element(tags::STUDY_INSTANCE_UID, VR::UI, s(&t.study_uid)),
            element(tags::SERIES_INSTANCE_UID, VR::UI, s(&t.series_uid)),
            element(tags::STUDY_ID, VR::SH, s("1")),
            element(tags::SERIES_NUMBER, VR::IS, s(&t.series_number.to_string())),
            element(tags::INSTANCE_NUMBER, VR::IS, s(&(k + 1).to_string())),
            element(tags::IMAGE_POSITION_PATIENT, VR::DS, ds_values(&position)),
            element(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds_values(&orientation)),
            element(tags::FRAME_OF_REFERENCE_UID, VR::UI, s(&t.frame_of_reference_uid)),
            element(tags::SLICE_LOCATION, VR::DS, s(&decimal_string(slice_location))),
            element(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
            element(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, s("MONOCHROME2")),
            element(tags::ROWS, VR::US, PrimitiveValue::from(ny as u16)),
            element(tags::COLUMNS, VR::US, PrimitiveValue::from(nx as u16)),
            element(tags::PIXEL_SPACING, VR::DS, ds_values(&[g.spacing[1], g.spacing[0]])),
            element(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
            element(tags::BITS_STORED, VR::US, PrimitiveValue::from(e.bits_stored)),
            element(tags::HIGH_BIT, VR::US, PrimitiveValue::from(e.bits_stored - 1)),
            element(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16)),
            element(tags::RESCALE_INTERCEPT, VR::DS, s(&decimal_string(e.intercept))),
            element(tags::RESCALE_SLOPE, VR::DS, s("1")),
            element(tags::RESCALE_TYPE, VR::LO, s("HU")),
            element(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
        ]);
        encode_file(object)
    }
}

#[cfg(test)]
mod tests {
    use super::decimal_string;

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        for v in [0.0, -1024.0, 3.125, -123.456789012345678, 1.0 / 3.0, -0.000123456789, 98765432.123456789] {
            let s = decimal_string(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= 1e-9 * v.abs().max(1.0), "{v} -> {s}");
        }
    }
}
