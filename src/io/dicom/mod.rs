//! DICOM: reading headers and pixel data of single-frame images, assembling a series into
//! a [`Volume`](crate::Volume) with ITK's geometry, validating UIDs, and writing series.

pub mod bounds;
pub mod header;
pub mod jpeg;
pub mod pixels;
pub mod rle;
pub mod series;
pub mod uid;
pub mod write;

pub use header::{DicomFile, SliceHeader, dicm_offset, open_dicom, parse_dicom};
pub use pixels::{DecodedSlice, decode_slice};
pub use series::{SeriesVolume, SliceGeometry, files_in, read_series, slice_geometry};
pub use uid::is_valid_uid;
pub use write::{SeriesTags, SeriesWriter};
