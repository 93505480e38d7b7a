//! Gzip compression on every core, as `pigz` does: the input is cut into blocks that are
//! deflated independently and in parallel, each ending on a byte boundary (a sync flush),
//! and the pieces, closed by an empty final block, are joined into **one** standard gzip member. Any gzip
//! reader (zlib's `gzread`, Python's `gzip`, ITK, nibabel) reads it as an ordinary file.
//!
//! Blocks do not share their 32 KiB history, so the output is a fraction of a percent larger
//! than a single-threaded stream of the same level.

use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;
use std::io::Write;

/// Bytes of input deflated per task.
const BLOCK: usize = 1 << 20;
/// Blocks deflated (in parallel) before their output is written, per thread.
const BLOCKS_PER_BATCH: usize = 4;

/// Deflate expands data at most 1032-fold: the most bytes `len` bytes of deflate (or gzip)
/// data can inflate to, plus room for headers.
pub fn inflated_capacity(len: usize) -> usize {
    len.saturating_mul(1032).saturating_add(1024)
}

/// Write `data` to `out` as one gzip member (RFC 1952) at compression `level` (0–9),
/// deflated in parallel. Output is written as batches finish, so at most a few blocks per
/// thread of compressed data are held at once.
pub fn write_gzip_parallel(mut out: impl Write, data: &[u8], level: u32) -> std::io::Result<()> {
    // ID1 ID2, CM = deflate, no flags, no mtime, XFL (2: best, 4: fastest), OS = Unix.
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
    let batch = BLOCK * BLOCKS_PER_BATCH * rayon::current_num_threads();
    let mut crc = crc32fast::Hasher::new();
    for part in data.chunks(batch) {
        let (deflated, ()) = rayon::join(
            || part.par_chunks(BLOCK).map(|block| deflate_block(block, level, FlushCompress::Sync)).collect::<Vec<_>>(),
            || crc.update(part),
        );
        deflated.iter().try_for_each(|d| out.write_all(d))?;
    }
    // An empty final block closes the deflate stream.
    out.write_all(&deflate_block(&[], level, FlushCompress::Finish))?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&(data.len() as u32).to_le_bytes())?;
    out.flush()
}

/// Raw deflate of `block`, ended by `flush`: `Sync` leaves the stream open on a byte
/// boundary so that the next block's data can follow it; `Finish` closes the stream.
fn deflate_block(block: &[u8], level: u32, flush: FlushCompress) -> Vec<u8> {
    let mut z = Compress::new(Compression::new(level.min(9)), false);
    // Deflate's worst case is a few bytes per 16 KiB stored block; start with room for it.
    let mut out = Vec::with_capacity(block.len() + block.len() / 64 + 64);
    loop {
        let consumed = z.total_in() as usize;
        let status = z.compress_vec(&block[consumed..], &mut out, flush).expect("deflate of in-memory data cannot fail");
        let all_in = z.total_in() as usize == block.len();
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            // The flush is complete when deflate stopped with output room to spare.
            _ => all_in && out.len() < out.capacity(),
        };
        if done {
            return out;
        }
        out.reserve(out.capacity().max(4096));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gzip_parallel(data: &[u8], level: u32) -> Vec<u8> {
        let mut out = Vec::new();
        write_gzip_parallel(&mut out, data, level).unwrap();
        out
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        // `GzDecoder` reads a single member only: the output must be one member.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn one_member_that_any_reader_inflates_back() {
        let mut state = 7u64;
        // Several blocks, the last one short; half compressible, half noise.
        let data: Vec<u8> = (0..BLOCK * 3 + 12345)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if (i / 4096) % 2 == 0 { (i % 251) as u8 } else { (state >> 56) as u8 }
            })
            .collect();
        for level in [0, 1, 6, 9] {
            let gz = gzip_parallel(&data, level);
            assert_eq!(gunzip(&gz), data, "level {level}");
            // The trailer holds the CRC-32 and the length of the whole input.
            let n = gz.len();
            assert_eq!(u32::from_le_bytes(gz[n - 4..].try_into().unwrap()) as usize, data.len());
            assert_eq!(u32::from_le_bytes(gz[n - 8..n - 4].try_into().unwrap()), crc32fast::hash(&data));
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        assert!(gunzip(&gzip_parallel(&[], 1)).is_empty());
        assert_eq!(gunzip(&gzip_parallel(b"x", 1)), b"x");
    }
}
