//! A bound on what one DICOM file can make the reader allocate. dicom-rs allocates the length
//! an element header states before it reads the value, so a 1 kB file whose PixelData claims
//! 4 GB would take 4 GB before failing. [`check_lengths`] walks the element headers first —
//! the file meta group, then the data set in its transfer syntax (explicit or implicit VR,
//! little or big endian, deflated), into sequences and items and over the fragments of
//! encapsulated pixel data — and refuses any defined length longer than the bytes left in
//! the file. A file that passes can make the reader allocate at most about its own size per
//! value (a deflated data set: at most its inflated size, which deflate caps at 1032× the
//! file).

use super::header::dicm_offset;
use crate::error::{Error, Result};
use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::VR;
use dicom_dictionary_std::StandardDataDictionary;
use std::io::Read;
use std::path::Path;

/// The length that marks an undefined-length sequence, item or encapsulated value.
const UNDEFINED: u32 = u32::MAX;
/// Implicit VR Little Endian.
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Big Endian (retired).
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
/// Deflated Explicit VR Little Endian.
const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";

/// How the data set's element headers are encoded.
#[derive(Clone, Copy)]
struct Encoding {
    explicit: bool,
    little: bool,
}

impl Encoding {
    fn u16(self, d: &[u8], at: usize) -> u16 {
        let b = [d[at], d[at + 1]];
        if self.little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) }
    }

    fn u32(self, d: &[u8], at: usize) -> u32 {
        let b = [d[at], d[at + 1], d[at + 2], d[at + 3]];
        if self.little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }
    }
}

/// VRs whose explicit header has a 2-byte length; every other VR, an unknown one included
/// (read as UN, as dicom-rs does), has two reserved bytes and a 4-byte length.
fn short_header(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"AE" | b"AS" | b"AT" | b"CS" | b"DA" | b"DS" | b"DT" | b"FL" | b"FD" | b"IS" | b"LO" | b"LT" | b"PN" | b"SH" | b"SL" | b"SS" | b"ST" | b"TM" | b"UI" | b"UL" | b"US"
    )
}

/// Whether the dictionary (as dicom-rs reads implicit VR) makes `tag` a sequence.
fn is_sequence(tag: Tag) -> bool {
    StandardDataDictionary.by_tag(tag).is_some_and(|e| e.vr() == VirtualVr::Exact(VR::SQ))
}

/// The VR dicom-rs reads an element's value as: the header's (unknown: UN) in explicit VR, the
/// dictionary's (OW for PixelData and overlay data, unknown: UN) in implicit VR.
fn value_vr(tag: Tag, explicit_vr: Option<[u8; 2]>) -> VR {
    match explicit_vr {
        Some(chars) => VR::from_binary(chars).unwrap_or(VR::UN),
        None if tag == Tag(0x7FE0, 0x0010) || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) => VR::OW,
        None => StandardDataDictionary.by_tag(tag).map(|e| e.vr().relaxed()).unwrap_or(VR::UN),
    }
}

/// The bytes dicom-rs consumes for a value of `len` bytes read as `vr`: binary numbers are read
/// whole (a length that is not a multiple of their size leaves the rest to be read as the next
/// element header), every other value is read to its length.
fn consumed(vr: VR, len: usize) -> usize {
    let size = match vr {
        VR::US | VR::OW | VR::SS => 2,
        VR::AT | VR::FL | VR::OF | VR::SL | VR::UL | VR::OL => 4,
        VR::FD | VR::OD | VR::SV | VR::OV | VR::UV => 8,
        _ => 1,
    };
    len - len % size
}

/// Check every element length of the DICOM file `bytes` (read from `path`) against the bytes
/// left after its header; the first that does not fit is an error naming the element. With
/// `until_pixel_data` the walk stops where a header-only read stops: at the first top-level
/// element whose tag is PixelData's or higher.
pub fn check_lengths(path: &Path, bytes: &[u8], until_pixel_data: bool) -> Result<()> {
    let Some(offset) = dicm_offset(bytes) else { return Ok(()) };
    let data = &bytes[offset + 4..];
    // The file meta group, explicit VR little endian, read as dicom-rs reads it: its group
    // length (0002,0000) first, then elements (whatever their tags) until that many bytes.
    let meta = Encoding { explicit: true, little: true };
    if data.len() < 12 || meta.u16(data, 0) != 0x0002 || meta.u16(data, 2) != 0x0000 {
        return Ok(()); // the reader refuses it without allocating
    }
    let group_length = meta.u32(data, 8) as usize;
    let mut pos = 12;
    let mut syntax = String::new();
    while pos - 12 < group_length && pos + 8 <= data.len() {
        let tag = Tag(meta.u16(data, pos), meta.u16(data, pos + 2));
        let (header, len) = element_header(data, pos, meta);
        let left = data.len() - pos - header;
        if len == UNDEFINED {
            return Ok(()); // refused by the reader (an undefined length in the meta group)
        }
        let len = len as usize;
        if len > left {
            return Err(too_long(path, tag, len, left));
        }
        if tag == Tag(0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(&data[pos + header..pos + header + len]).trim_end_matches(['\0', ' ']).to_string();
        }
        pos += header + len;
    }
    let pos = pos.min(data.len());
    let body = &data[pos..];
    match syntax.as_str() {
        IMPLICIT_LE => walk(path, body, Encoding { explicit: false, little: true }, until_pixel_data),
        EXPLICIT_BE => walk(path, body, Encoding { explicit: true, little: false }, until_pixel_data),
        DEFLATED_LE => {
            let cap = crate::io::gzip::inflated_capacity(body.len());
            let mut inflated = Vec::new();
            // A corrupt stream is refused here: the inflater may drop the output of the block
            // that failed, so what it returned would not bound what dicom-rs, which inflates in
            // other steps, reads before it meets the error (a 1.3 GB allocation found by the
            // dicom_file fuzzer, kept in fuzz/regressions).
            if let Err(e) = flate2::read::DeflateDecoder::new(body).take(cap as u64).read_to_end(&mut inflated) {
                return Err(Error::format(path, format!("unreadable DICOM: corrupt deflated data set ({e})")));
            }
            walk(path, &inflated, Encoding { explicit: true, little: true }, until_pixel_data)
        }
        _ => walk(path, body, Encoding { explicit: true, little: true }, until_pixel_data),
    }
}

/// The header size and the stated length of the element at `pos` (a header cut by the end of
/// the data is given the rest of it and length 0).
fn element_header(d: &[u8], pos: usize, enc: Encoding) -> (usize, u32) {
    if !enc.explicit {
        return (8, enc.u32(d, pos + 4));
    }
    if short_header(&d[pos + 4..pos + 6]) {
        return (8, enc.u16(d, pos + 6) as u32);
    }
    if pos + 12 > d.len() {
        return (d.len() - pos, 0);
    }
    (12, enc.u32(d, pos + 8))
}

fn too_long(path: &Path, tag: Tag, len: usize, left: usize) -> Error {
    Error::format(path, format!("unreadable DICOM: element ({:04X},{:04X}) claims {len} bytes, more than the {left} left in the file (truncated or corrupt)", tag.0, tag.1))
}

/// What encloses the walk's position, as dicom-rs's data set reader tracks it: a sequence
/// (item headers expected; `pixel`: the fragments of encapsulated pixel data) or an item of a
/// sequence (elements expected); `end` for defined lengths.
#[derive(Clone, Copy)]
enum Frame {
    Sequence { end: Option<usize>, pixel: bool },
    Item { end: Option<usize> },
}

impl Frame {
    fn end(self) -> Option<usize> {
        match self {
            Frame::Sequence { end, .. } | Frame::Item { end } => end,
        }
    }
}

/// Walk the data set `d` as dicom-rs's reader does — sequences and items entered,
/// pixel-data fragments and every other value skipped by the bytes dicom-rs consumes
/// ([`consumed`]) — checking each defined length first.
/// In a sequence only item headers count (an item, the item and sequence delimiters); in an
/// item or at the top level every element counts, and an (FFFE,xxxx) tag there other than the
/// item delimiter is an ordinary element (its length skipped, or a sequence when undefined),
/// as dicom-rs reads it: a stray sequence delimiter inside an item does not close the
/// sequence, so a PixelData after it is still nested.
fn walk(path: &Path, d: &[u8], enc: Encoding, until_pixel_data: bool) -> Result<()> {
    let mut pos = 0;
    let mut stack: Vec<Frame> = Vec::new();
    let defined = |len: u32, pos: usize| (len != UNDEFINED).then(|| pos + len as usize);
    let check = |tag: Tag, len: u32, pos: usize| -> Result<()> {
        if len != UNDEFINED && len as usize > d.len() - pos {
            return Err(too_long(path, tag, len as usize, d.len() - pos));
        }
        Ok(())
    };
    loop {
        while stack.last().and_then(|f| f.end()).is_some_and(|end| pos >= end) {
            stack.pop();
        }
        if pos + 8 > d.len() {
            return Ok(());
        }
        let tag = Tag(enc.u16(d, pos), enc.u16(d, pos + 2));
        if let Some(&Frame::Sequence { pixel, .. }) = stack.last() {
            // Item headers only: a tag and a 4-byte length.
            let len = enc.u32(d, pos + 4);
            pos += 8;
            match (tag.0, tag.1) {
                (0xFFFE, 0xE000) => {
                    check(tag, len, pos)?;
                    if pixel {
                        if len == UNDEFINED {
                            return Ok(()); // refused by the reader (an undefined fragment length)
                        }
                        pos += len as usize;
                    } else {
                        stack.push(Frame::Item { end: defined(len, pos) });
                    }
                }
                (0xFFFE, 0xE00D) | (0xFFFE, 0xE0DD) => {
                    stack.pop();
                }
                _ => return Ok(()), // refused by the reader (not an item header)
            }
            continue;
        }
        if until_pixel_data && stack.is_empty() && tag >= Tag(0x7FE0, 0x0010) {
            // A header-only read stops at the first top-level tag from PixelData on.
            return Ok(());
        }
        if tag.0 == 0xFFFE {
            // In an item or at the top level: the item delimiter closes the item; any other
            // (FFFE,xxxx) is an element with a 4-byte length and no VR.
            let len = enc.u32(d, pos + 4);
            pos += 8;
            if tag.1 == 0xE00D {
                stack.pop();
                continue;
            }
            check(tag, len, pos)?;
            match defined(len, pos) {
                Some(end) => pos = end,
                None => stack.push(Frame::Sequence { end: None, pixel: false }),
            }
            continue;
        }
        let (header, len) = element_header(d, pos, enc);
        let vr = &d[pos + 4..pos + 6];
        pos += header;
        check(tag, len, pos)?;
        let sequence = if enc.explicit { vr == b"SQ" } else { is_sequence(tag) };
        if len == UNDEFINED {
            // Encapsulated pixel data, or (any other undefined-length element, whatever its
            // VR) a sequence.
            stack.push(Frame::Sequence { end: None, pixel: tag == Tag(0x7FE0, 0x0010) && !sequence });
        } else if sequence {
            stack.push(Frame::Sequence { end: defined(len, pos), pixel: false });
        } else if enc.explicit && vr == b"UN" && is_sequence(tag) {
            // dicom-rs reads a UN value that the dictionary calls a sequence as implicit VR.
            walk(path, &d[pos..pos + len as usize], Encoding { explicit: false, little: true }, until_pixel_data)?;
            pos += len as usize;
        } else {
            let explicit_vr = enc.explicit.then(|| [vr[0], vr[1]]);
            pos += consumed(value_vr(tag, explicit_vr), len as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal explicit-VR-little-endian file: meta group (its length, the transfer syntax),
    /// then `body`.
    fn file(body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        let ts = b"1.2.840.10008.1.2.1\0";
        f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        f.extend_from_slice(&(8 + ts.len() as u32).to_le_bytes());
        f.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        f.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        f.extend_from_slice(ts);
        f.extend_from_slice(body);
        f
    }

    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8], stated: Option<u32>) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&tag.0.to_le_bytes());
        e.extend_from_slice(&tag.1.to_le_bytes());
        e.extend_from_slice(vr);
        if !short_header(vr) {
            e.extend_from_slice(&[0, 0]);
            e.extend_from_slice(&stated.unwrap_or(value.len() as u32).to_le_bytes());
        } else {
            e.extend_from_slice(&(stated.unwrap_or(value.len() as u32) as u16).to_le_bytes());
        }
        e.extend_from_slice(value);
        e
    }

    #[test]
    fn honest_lengths_pass_and_a_4_gb_element_is_refused_before_reading() {
        let path = Path::new("x.dcm");
        let ok = file(&[element((0x0010, 0x0020), b"LO", b"PID1", None), element((0x7FE0, 0x0010), b"OW", &[0; 8], None)].concat());
        check_lengths(path, &ok, false).unwrap();
        let bomb = file(&[element((0x0010, 0x0020), b"LO", b"PID1", None), element((0x7FE0, 0x0010), b"OW", &[0; 8], Some(0xFFFF_FFF0))].concat());
        check_lengths(path, &bomb, true).unwrap();
        let err = check_lengths(path, &bomb, false).unwrap_err().to_string();
        assert!(err.contains("(7FE0,0010) claims 4294967280 bytes, more than the 8 left"), "{err}");
        // Inside a sequence item too.
        let item = [&[0xFE, 0xFF, 0x00, 0xE0][..], &0xFFFF_FFFFu32.to_le_bytes(), &element((0x0008, 0x0100), b"SH", b"X", Some(60000)), &[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]].concat();
        let nested = file(&element((0x0008, 0x1140), b"SQ", &item, Some(0xFFFF_FFFF)));
        let err = check_lengths(path, &nested, true).unwrap_err().to_string();
        assert!(err.contains("(0008,0100) claims 60000 bytes"), "{err}");
    }

    #[test]
    fn an_undefined_length_ob_that_is_not_pixel_data_is_walked_as_a_sequence() {
        // dicom-rs reads (7FE0,F910) OB with undefined length as a sequence, so the item
        // that follows holds elements, and one of them claims 4 GB.
        let path = Path::new("x.dcm");
        let item = [&[0xFE, 0xFF, 0x00, 0xE0][..], &0xFFFF_FFFFu32.to_le_bytes(), &element((0x0008, 0x0100), b"OB", b"XY", Some(0xE000_FFFE))].concat();
        let odd = file(&element((0x7FE0, 0xF910), b"OB", &item, Some(0xFFFF_FFFF)));
        // A header-only read stops at its tag (after PixelData's); a whole read enters it.
        check_lengths(path, &odd, true).unwrap();
        let err = check_lengths(path, &odd, false).unwrap_err().to_string();
        assert!(err.contains("(0008,0100) claims 3758161918 bytes"), "{err}");
    }

    #[test]
    fn a_binary_value_of_odd_length_leaves_its_rest_to_the_next_header_as_dicom_rs_reads_it() {
        // dicom-rs reads a 6-byte UL as one 4-byte value and the next header 2 bytes early:
        // there it finds (0011,0010) OB claiming 4 GB.
        let path = Path::new("x.dcm");
        let value = [1, 0, 0, 0, 0x11, 0x00];
        let next = [&[0x10, 0x00, b'O', b'B', 0, 0][..], &0xFFFF_FFF0u32.to_le_bytes()].concat();
        let odd = file(&[element((0x0009, 0x1001), b"UL", &value, None), next].concat());
        let err = check_lengths(path, &odd, true).unwrap_err().to_string();
        assert!(err.contains("(0011,0010) claims 4294967280 bytes"), "{err}");
    }

    #[test]
    fn a_header_only_walk_stops_at_the_first_top_level_tag_from_pixel_data_on() {
        // dicom-rs's read until PixelData stops at any top-level tag at or after it.
        let path = Path::new("x.dcm");
        let late = file(&[element((0x0010, 0x0020), b"LO", b"PID1", None), element((0x7FE1, 0x0010), b"OB", &[0; 4], Some(0xFFFF_FFF0))].concat());
        check_lengths(path, &late, true).unwrap();
        let err = check_lengths(path, &late, false).unwrap_err().to_string();
        assert!(err.contains("(7FE1,0010) claims 4294967280 bytes"), "{err}");
    }
}
