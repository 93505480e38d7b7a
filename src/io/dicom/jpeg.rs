//! The frame header of an encapsulated JPEG (baseline, extended, lossless) or JPEG 2000
//! codestream, checked against the DICOM header before the image is decoded: dicom-rs copies
//! the decoded image into a buffer sized from Rows × Columns and panics when the stream's own
//! frame is larger (both found by the `dicom_file` fuzzer).

/// JPEG transfer syntaxes decoded by dicom-rs's JPEG adapter.
pub const JPEG_SYNTAXES: [&str; 4] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"];

/// JPEG 2000 transfer syntaxes (decoded by dicom-rs through OpenJPEG).
pub const J2K_SYNTAXES: [&str; 7] = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];

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

/// The image of the first JPEG 2000 codestream in `data` (a bare codestream or one inside a
/// JP2 file), from its SIZ marker: the image size, the components and the first one's
/// precision; or why there is none.
pub fn j2k_frame_header(data: &[u8]) -> Result<JpegFrame, String> {
    let start = data.windows(4).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]).ok_or("no JPEG 2000 codestream header (SOC, SIZ) in the pixel data")?;
    let siz = data.get(start + 4..start + 4 + 41).ok_or("the JPEG 2000 SIZ marker is cut short")?;
    let u32_at = |i: usize| u32::from_be_bytes([siz[i], siz[i + 1], siz[i + 2], siz[i + 3]]);
    // Lsiz(2) Rsiz(2) Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz (4 each) Csiz(2) Ssiz(1)…
    let (width, height) = (u32_at(4).saturating_sub(u32_at(12)), u32_at(8).saturating_sub(u32_at(16)));
    let components = u16::from_be_bytes([siz[36], siz[37]]);
    let too_big = |v: u32| u16::try_from(v).map_err(|_| format!("the JPEG 2000 image is {width}x{height} pixels, larger than DICOM allows"));
    Ok(JpegFrame {
        precision: (siz[38] & 0x7F) + 1,
        rows: too_big(height)?,
        columns: too_big(width)?,
        components: u8::try_from(components).unwrap_or(u8::MAX),
    })
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

    #[test]
    fn the_j2k_size_comes_from_siz_minus_the_image_offset() {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        for v in [600u32, 300, 88, 44, 600, 300, 0, 0] {
            siz.extend_from_slice(&v.to_be_bytes());
        }
        siz.extend_from_slice(&[0x00, 0x01, 0x0B, 0x01, 0x01]);
        let wrapped = [&b"jp2 header"[..], &siz].concat();
        assert_eq!(j2k_frame_header(&wrapped).unwrap(), JpegFrame { precision: 12, rows: 256, columns: 512, components: 1 });
        assert!(j2k_frame_header(&siz[..30]).is_err());
        assert!(j2k_frame_header(b"no codestream").is_err());
    }
}
