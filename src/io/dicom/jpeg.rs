//! The frame header of an encapsulated JPEG (baseline, extended, lossless), checked against
//! the DICOM header before the image is decoded: dicom-rs copies the decoded JPEG into a
//! buffer sized from Rows × Columns and panics when the JPEG's own frame is larger (found
//! by the `dicom_file` fuzzer).

/// JPEG transfer syntaxes decoded by dicom-rs's JPEG adapter.
pub const JPEG_SYNTAXES: [&str; 4] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"];

/// The frame of a JPEG stream: sample precision in bits, lines, samples per line, components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegFrame {
    /// Bits per sample.
    pub precision: u8,
    /// Image height.
    pub rows: u16,
    /// Image width.
    pub columns: u16,
    /// Components (1 for grey-scale).
    pub components: u8,
}

/// The first frame header (SOF marker) of the JPEG stream `data`, or why there is none.
pub fn frame_header(data: &[u8]) -> Result<JpegFrame, String> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err("the encapsulated JPEG does not start with a JPEG SOI marker".into());
    }
    let mut pos = 2;
    loop {
        // Skip fill bytes before a marker.
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (data.get(pos), data.get(pos + 1)) else {
            return Err("the encapsulated JPEG ends before its frame header".into());
        };
        pos += 2;
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            continue; // markers without a length
        }
        let len = match data.get(pos..pos + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err("the encapsulated JPEG ends inside a marker".into()),
        };
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let f = data.get(pos + 2..pos + 8).ok_or("the JPEG frame header is cut short")?;
            return Ok(JpegFrame { precision: f[0], rows: u16::from_be_bytes([f[1], f[2]]), columns: u16::from_be_bytes([f[3], f[4]]), components: f[5] });
        }
        if marker == 0xDA || marker == 0xD9 || len < 2 {
            return Err("the encapsulated JPEG has no frame header before its scan".into());
        }
        pos += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_header_is_found_after_other_segments_and_missing_ones_are_errors() {
        let app0 = [0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB];
        let sof = [0xFF, 0xC3, 0x00, 0x0B, 12, 0x01, 0x00, 0x02, 0x00, 1, 1, 0x11, 0];
        let jpeg = [&[0xFF, 0xD8][..], &app0, &sof].concat();
        assert_eq!(frame_header(&jpeg).unwrap(), JpegFrame { precision: 12, rows: 256, columns: 512, components: 1 });
        assert!(frame_header(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]).is_err());
        assert!(frame_header(&[0x00, 0x01]).is_err());
        assert!(frame_header(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]).is_err());
    }
}
