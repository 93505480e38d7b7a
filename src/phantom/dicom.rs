//! The phantom as a hospital DICOM dump: each patient's CTA, MIP, AVG and BF as CT series
//! with realistic tags, two decoy series (a localizer and a thick-slice axial series), a
//! DICOMDIR and a text file, all shuffled into one flat folder `raw/<pid>/` under random
//! file names; and the annotation table naming each patient's four series.

use super::PhantomCase;
use crate::cohort::{self, Cohort};
use crate::error::Result;
use crate::io::atomic::write_bytes_atomically;
use crate::io::dicom::uid::uid_from_u128;
use crate::io::dicom::write::{SeriesTags, SeriesWriter, encode_file};
use crate::volume::{Geometry, Volume};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use ndarray::Array3;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// ImageType of the perfusion maps (Siemens VPCT style); the last value is the modality.
pub const PERFUSION_IMAGE_TYPE: [&str; 4] = ["DERIVED", "SECONDARY", "AXIAL", "CT_SOM7 VPCT"];

/// The series UIDs of one patient's dump, as the annotation table lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpSeries {
    /// Patient id.
    pub pid: String,
    /// SeriesInstanceUID of CTA, MIP, AVG and BF.
    pub cta: String,
    /// MIP series UID.
    pub mip: String,
    /// AVG series UID.
    pub avg: String,
    /// BF series UID.
    pub bf: String,
}

/// The annotation table's header line.
pub const ANNOTATION_HEADER: &str = "patient_id,CTA,MIP,AVG,BF";

impl DumpSeries {
    /// The annotation table line of this patient.
    pub fn annotation_line(&self) -> String {
        format!("{},{},{},{},{}", self.pid, self.cta, self.mip, self.avg, self.bf)
    }
}

/// A single-image coronal localizer through the middle of the CTA.
fn localizer(cta: &Volume) -> Volume {
    let [nx, ny, nz] = cta.shape();
    let g = &cta.geometry;
    let y = ny / 2;
    let data = Array3::from_shape_fn((nx, nz, 1), |(x, j, _)| cta.data[[x, y, nz - 1 - j]]);
    // Rows run along +x, columns down (−z); the normal row × column is +y.
    let geometry = Geometry {
        spacing: [g.spacing[0], g.spacing[2], g.spacing[1]],
        origin: g.index_to_world([0.0, y as f64, (nz - 1) as f64]),
        direction: [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]],
    };
    Volume::new(data, geometry)
}

/// Every third slice of the CTA: a thick-slice axial series with fewer slices.
fn thick_slices(cta: &Volume) -> Volume {
    let [nx, ny, nz] = cta.shape();
    let n = nz.div_ceil(3);
    let data = Array3::from_shape_fn((nx, ny, n), |(x, y, k)| cta.data[[x, y, 3 * k]]);
    let mut geometry = cta.geometry;
    geometry.spacing[2] *= 3.0;
    Volume::new(data, geometry)
}

/// A DICOMDIR-like file: DICOM, but no image and no series.
fn dicomdir(rng: &mut ChaCha8Rng) -> Result<Vec<u8>> {
    let object = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(uids::MEDIA_STORAGE_DIRECTORY_STORAGE)),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(uid_from_u128(rng.random()))),
        DataElement::new(tags::FILE_SET_ID, VR::CS, PrimitiveValue::from("PHANTOM")),
    ]);
    encode_file(object)
}

/// Write `case` as a DICOM dump into `root/raw/<pid>/`; `seed` decides UIDs, file names
/// and order (the phantom's volumes are unchanged). Returns the four series' UIDs.
pub fn write_dicom_dump(cohort: &Cohort, case: &PhantomCase, seed: u64) -> Result<DumpSeries> {
    let pid = &case.truth.pid;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xD1C0_0000 ^ pid.parse::<u64>().unwrap_or(0).wrapping_mul(0x9E37_79B9));
    let mut uid = || uid_from_u128(rng.random());
    let (study, frame_cta, frame_ctp) = (uid(), uid(), uid());
    let localizer = localizer(&case.cta);
    let thick = thick_slices(&case.cta);
    let perfusion = |m: &str| PERFUSION_IMAGE_TYPE.iter().map(|s| s.to_string()).chain([m.to_string()]).collect::<Vec<_>>();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let series: Vec<(&Volume, Vec<String>, &str, &String, i32)> = vec![
        (&localizer, strings(&["ORIGINAL", "PRIMARY", "LOCALIZER"]), "Topogram 0.6 T20s", &frame_cta, 1),
        (&thick, strings(&["ORIGINAL", "PRIMARY", "AXIAL"]), "CaScore 3.0 Qr36", &frame_cta, 2),
        (&case.cta, strings(&["ORIGINAL", "PRIMARY", "AXIAL"]), "CorCTA 0.75 Bv36 BestDiast", &frame_cta, 3),
        (&case.mip, perfusion("MIP"), "VPCT MIP Body 5.0", &frame_ctp, 10),
        (&case.avg, perfusion("AVG"), "VPCT AVG Body 5.0", &frame_ctp, 11),
        (&case.bf, perfusion("BF"), "VPCT BF Body 5.0", &frame_ctp, 12),
    ];
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut uids_of = Vec::new();
    for (volume, image_type, description, frame, number) in series {
        let tags = SeriesTags {
            patient_id: pid.clone(),
            study_uid: study.clone(),
            series_uid: uid(),
            frame_of_reference_uid: frame.clone(),
            series_number: number,
            description: description.to_string(),
            image_type,
            date: "20210517".into(),
            time: format!("{:02}{:02}00", 9 + number / 10, number),
            slice_thickness: volume.geometry.spacing[2],
        };
        uids_of.push(tags.series_uid.clone());
        let writer = SeriesWriter::new(volume, tags)?;
        for k in 0..writer.len() {
            files.push(writer.encode(k, &uid())?);
        }
    }
    let dicomdir = dicomdir(&mut rng)?;
    // Random names (like an export tool's), in a random order.
    files.shuffle(&mut rng);
    let mut taken = std::collections::HashSet::new();
    let mut named: Vec<(String, Vec<u8>)> = Vec::with_capacity(files.len() + 2);
    for bytes in files {
        let name = loop {
            let name = format!("IM{:08X}", rng.random::<u32>());
            if taken.insert(name.clone()) {
                break name;
            }
        };
        named.push((name, bytes));
    }
    named.push(("DICOMDIR".into(), dicomdir));
    named.push(("readme.txt".into(), format!("Export of patient {pid}\r\nCTP and CTA, 2021-05-17\r\n").into_bytes()));
    let dir = cohort.root.join(cohort::RAW).join(pid);
    for (name, bytes) in &named {
        write_bytes_atomically(&dir.join(name), bytes)?;
    }
    Ok(DumpSeries { pid: pid.clone(), cta: uids_of[2].clone(), mip: uids_of[3].clone(), avg: uids_of[4].clone(), bf: uids_of[5].clone() })
}

/// Write the annotation table `annotation/annotation.csv` of a cohort, sorted by patient.
pub fn write_annotation(cohort: &Cohort, rows: &[DumpSeries]) -> Result<()> {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| a.pid.cmp(&b.pid));
    let mut text = format!("{ANNOTATION_HEADER}\n");
    for r in &rows {
        text.push_str(&r.annotation_line());
        text.push('\n');
    }
    write_bytes_atomically(&cohort.annotation_table(), text.as_bytes())
}
