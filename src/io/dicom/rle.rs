//! RLE Lossless (DICOM PS3.5 Annex G), decoded here rather than by dicom-rs, whose decoder
//! panics on malformed segments (found by the `dicom_file` fuzzer): a 64-byte header (the
//! number of segments, up to 15, and their offsets), then one PackBits-compressed segment per
//! byte of each sample, most significant byte first. Every length and offset is checked
//! against the fragment, and the output never exceeds `rows × columns` pixels.

/// PackBits' largest expansion: a 2-byte run header and byte become 128 bytes.
const PACKBITS_MAX_RATIO: usize = 64;

/// The RLE Lossless transfer syntax.
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Decode one frame (`fragment`) of `rows × columns` pixels of `bytes_per_sample` bytes (one
/// sample per pixel) into little-endian sample bytes.
pub fn decode_frame(fragment: &[u8], rows: usize, columns: usize, bytes_per_sample: usize) -> Result<Vec<u8>, String> {
    if fragment.len() < 64 {
        return Err(format!("RLE fragment of {} bytes is shorter than its 64-byte header", fragment.len()));
    }
    let word = |i: usize| u32::from_le_bytes(fragment[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize;
    let segments = word(0);
    if segments != bytes_per_sample {
        return Err(format!("RLE header lists {segments} segments; {bytes_per_sample} expected for one sample of {} bits", 8 * bytes_per_sample));
    }
    let pixels = rows.checked_mul(columns).ok_or("rows × columns overflows")?;
    // PackBits turns 2 bytes into at most 128: a segment cannot hold more than 64× its size,
    // so a header claiming more is refused before the image is allocated.
    if pixels > PACKBITS_MAX_RATIO * fragment.len() {
        return Err(format!("{rows}x{columns} pixels cannot be held by an RLE fragment of {} bytes", fragment.len()));
    }
    let mut out = vec![0u8; pixels.checked_mul(bytes_per_sample).ok_or("image size overflows")?];
    for s in 0..segments {
        let start = word(1 + s);
        let end = if s + 1 < segments { word(2 + s) } else { fragment.len() };
        if start < 64 || start > end || end > fragment.len() {
            return Err(format!("RLE segment {s} spans bytes {start}..{end} of a {}-byte fragment", fragment.len()));
        }
        let plane = unpack_bits(&fragment[start..end], pixels).ok_or_else(|| format!("RLE segment {s} decodes to fewer than the {pixels} bytes of the image"))?;
        // Segment 0 holds the most significant bytes; the output is little-endian.
        let byte = bytes_per_sample - 1 - s;
        for (i, b) in plane.into_iter().enumerate() {
            out[i * bytes_per_sample + byte] = b;
        }
    }
    Ok(out)
}

/// PackBits: a header byte n in 0..=127 copies the next n + 1 bytes, n in −127..=−1 repeats
/// the next byte 1 − n times, −128 is skipped. Exactly `len` bytes, or `None` when the data
/// ends before them.
fn unpack_bits(mut data: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let (&n, rest) = data.split_first()?;
        let n = n as i8;
        data = rest;
        if n >= 0 {
            let count = n as usize + 1;
            let run = data.get(..count)?;
            out.extend_from_slice(run);
            data = &data[count..];
        } else if n != -128 {
            let (&b, rest) = data.split_first()?;
            data = rest;
            out.extend(std::iter::repeat_n(b, (1 - n as isize) as usize));
        }
    }
    out.truncate(len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut offset = 64;
        for (i, s) in segments.iter().enumerate() {
            header[4 + 4 * i..8 + 4 * i].copy_from_slice(&(offset as u32).to_le_bytes());
            offset += s.len();
        }
        [header, segments.concat()].concat()
    }

    #[test]
    fn sixteen_bit_segments_interleave_msb_first_into_little_endian() {
        // 2×2 pixels 0x0102, 0x0102, 0x0304, 0x0506: MSB plane [1,1,3,5], LSB plane [2,2,4,6].
        let msb = [0xFF, 1, 1, 3, 5]; // repeat 1 twice, then a literal run of 2
        let msb = [&msb[..2], &[1, 3, 5]].concat();
        let lsb = [3u8, 2, 2, 4, 6];
        let out = decode_frame(&frame(&[&msb, &lsb]), 2, 2, 2).unwrap();
        assert_eq!(out, [2, 1, 2, 1, 4, 3, 6, 5]);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(decode_frame(&[0; 10], 2, 2, 1).is_err());
        assert!(decode_frame(&frame(&[&[0x81, 7]]), 60000, 60000, 1).unwrap_err().contains("cannot be held"));
        assert!(decode_frame(&frame(&[&[0, 7]]), 2, 2, 1).unwrap_err().contains("fewer than the 4 bytes"));
        assert!(decode_frame(&frame(&[&[3, 1, 2, 3, 4]]), 2, 2, 2).unwrap_err().contains("2 expected"));
        let mut bad = frame(&[&[3, 1, 2, 3, 4]]);
        bad[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode_frame(&bad, 2, 2, 1).unwrap_err().contains("spans bytes 1000"));
    }
}
